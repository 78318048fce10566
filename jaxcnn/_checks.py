"""Argument validators shared by every public function.

All run at trace time on static shapes and dtypes, and all raise with one message format::

    `conv2d`: `w` has 3 input channels but `x` has 4 (groups=1)

ValueError for shapes and values, TypeError for dtypes and argument types. No ``assert``: it
vanishes under ``python -O``.

Sizes. Every size that a call implies (padded input, output, the window stack of a pool) is
checked against `MAX_DIM` and `MAX_ELEMENTS` before anything is traced, so that a request whose
arrays cannot exist (``padding=2**31``, a window of ``2**20``) is the library's ValueError naming
the argument, never XLA's abort ("overflow in static extent product") or its RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Pair = tuple[int, int]
Ints = tuple[int, ...]
Pads = tuple[tuple[int, int], ...]

MAX_DIM = 2**31 - 1
"""Largest extent of one axis of an array the library creates (XLA indexes with int32 in places)."""
AXES = {1: "W", 2: "HW", 3: "DHW"}
"""Names of the spatial axes in messages, per number of spatial dims (NWC, NHWC, NDHWC)."""
MAX_ELEMENTS = 2**33
"""Most elements of one array the library creates (32 GiB of float32: more than any device here)."""


class Like(jax.ShapeDtypeStruct):
    """The shape and dtype of an array the library derives from arguments it has checked (the forward
    input of `conv_input_grad`, from `x_shape`), checked in its place; a user's ShapeDtypeStruct,
    which has no values, is refused (`check_array`)."""


def fail(fn: str, message: str, exc: type[Exception] = ValueError) -> Exception:
    """Build the exception of the common format; the caller raises it."""
    return exc(f"`{fn}`: {message}")


def is_int(value: Any) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_array(fn: str, name: str, x: Any, what: str = "an array", wrap: str = "jnp.asarray(...)") -> Any:
    """`x` must be an array (JAX, NumPy, or a scalar of a NumPy/JAX dtype), never a Python container,
    a string or None (whose dtype JAX would guess, or fail to with a message naming no argument; the
    message suggests `wrap`); returns its dtype."""
    if isinstance(x, (list, tuple, dict, str, bytes)) or x is None:
        raise fail(fn, f"`{name}` must be {what}, got a {type(x).__name__}; wrap it with {wrap}", TypeError)
    if isinstance(x, jax.ShapeDtypeStruct) and not isinstance(x, Like):  # `float()` of it failed later
        raise fail(fn, f"`{name}` must be {what}, got a jax.ShapeDtypeStruct (a shape, no values); for "
                   f"shapes alone, call the function through jax.eval_shape", TypeError)
    try:
        return jnp.result_type(x)
    except TypeError:
        raise fail(fn, f"`{name}` must be {what}, got {type(x).__name__}", TypeError) from None


def check_float(fn: str, name: str, x: Any) -> None:
    """Differentiable arguments must be floating-point arrays (never int, bool, or a Python list)."""
    dtype = check_array(fn, name, x, "a floating-point array", "jnp.asarray(..., jnp.float32)")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise fail(fn, f"`{name}` must be a floating-point array, got dtype {dtype}", TypeError)


def check_int(fn: str, name: str, value: Any, minimum: int = 0, *, uint32: bool = False) -> int:
    """A Python or NumPy int (not a bool) >= `minimum`, and below 2**32 with `uint32` (a seed or a
    counter folded into a PRNG key as a uint32); otherwise the library's ValueError."""
    if not is_int(value) or value < minimum or (uint32 and value >= 2**32):
        bound = f"in [{minimum}, 2**32)" if uint32 else f">= {minimum}"
        raise fail(fn, f"`{name}` must be an int {bound}, got {value!r}")
    return int(value)


def check_neg_inf(fn: str, name: str, x: Any) -> None:
    """`x`'s dtype must hold -inf (or saturate to its lowest value): max pooling pads and starts from
    it; in float8_e4m3fn, e4m3fnuz, e5m2fnuz, e4m3b11fnuz and e8m0fnu it is NaN, which wins every window."""
    dtype = jnp.result_type(x)
    if np.isnan(np.array(-np.inf, np.float32).astype(dtype)):
        raise fail(fn, f"`{name}` has dtype {jnp.dtype(dtype).name}, in which -inf (the padding and start "
                       "of a max) is NaN; cast it to a float type with infinities (float16, bfloat16, ...)",
                   TypeError)


def as_real(fn: str, name: str, value: Any, what: str = "a Python number") -> float:
    """A static real number (a Python or NumPy int or float, not a bool, not an array) as a float;
    an int too large for a float is the library's ValueError, not Python's OverflowError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise fail(fn, f"`{name}` must be {what}, got {value!r} ({type(value).__name__})", TypeError)
    try:
        return float(value)
    except OverflowError:
        raise fail(fn, f"`{name}` must be a number a float can hold (|value| < 1.8e308), "
                   f"got {value!r}") from None


def as_finite(fn: str, name: str, value: Any, dtype: Any) -> float:
    """`as_real`, finite, and finite in `dtype`, the dtype of the array it is applied to (a static
    `pad_value` or slope becomes a constant of that dtype: 1e300 would be float32's inf, silently)."""
    real = as_real(fn, name, value)
    if not math.isfinite(real):
        raise fail(fn, f"`{name}` must be a finite number, got {real!r}")
    dtype = jnp.dtype(dtype)
    largest = float(jnp.finfo(dtype).max)
    if abs(real) > largest:
        raise fail(fn, f"`{name}` {real!r} overflows {dtype.name}, the dtype it is applied in "
                   f"(largest finite {largest:.4g})")
    return real


def check_rank(fn: str, name: str, x: Any, rank: int | Sequence[int], layout: str) -> None:
    """`x` must have `rank` dimensions (or one of several), described by `layout` (e.g. "NHWC")."""
    shape = jnp.shape(x)
    ranks = (rank,) if isinstance(rank, int) else tuple(rank)
    if len(shape) not in ranks:
        want = " or ".join(str(r) for r in ranks)
        raise fail(fn, f"`{name}` must have rank {want} ({layout}), got shape {shape}")


def check_plain_2d(fn: str, image: Any, kernel: Any) -> None:
    """The article's 2-D case: an image ``I (H, W)`` and a kernel ``K (k1, k2)`` of one float dtype,
    the kernel no larger than the image (valid mode), checked under these names rather than as the
    `conv2d` call they become."""
    check_float(fn, "I", image)
    check_float(fn, "K", kernel)
    check_rank(fn, "I", image, 2, "(H, W)")
    check_rank(fn, "K", kernel, 2, "(k1, k2)")
    check_same_dtype(fn, ["I", "K"], [image, kernel])
    (h, w), (k1, k2) = jnp.shape(image), jnp.shape(kernel)
    if min(k1, k2) < 1:
        raise fail(fn, f"`K` must be a non-empty kernel, got shape {(k1, k2)}")
    if k1 > h or k2 > w:
        raise fail(fn, f"`K` {(k1, k2)} is larger than `I` {(h, w)}; valid mode needs k1 <= H and k2 <= W")


def check_same_dtype(fn: str, names: Sequence[str], arrays: Sequence[Any]) -> None:
    """Arguments combined arithmetically must share one dtype (no silent promotion)."""
    dtypes = [jnp.result_type(a) for a in arrays]
    if len(set(dtypes)) > 1:
        got = ", ".join(f"`{n}` {d}" for n, d in zip(names, dtypes, strict=True))
        raise fail(fn, f"arguments must share one dtype, got {got}", TypeError)


def check_bool(fn: str, name: str, value: Any) -> bool:
    """A static flag: a Python or NumPy bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise fail(fn, f"`{name}` must be a bool, got {value!r}", TypeError)
    return bool(value)


def as_ints(fn: str, name: str, value: Any, nd: int, *, minimum: int = 1, what: str | None = None) -> Ints:
    """An int or a sequence of `nd` ints (one per spatial dim), each >= `minimum`, as a tuple."""
    what = what or ("an int" if nd == 1 else f"an int or {nd} ints (one per spatial dim)")
    if is_int(value):
        result = (int(value),) * nd
    elif isinstance(value, (tuple, list)) and all(is_int(v) for v in value):
        if len(value) != nd:
            raise fail(fn, f"`{name}` must be {what}, got {len(value)} values {tuple(value)!r}", TypeError)
        result = tuple(int(v) for v in value)
    else:
        raise fail(fn, f"`{name}` must be {what}, got {value!r}", TypeError)
    if min(result, default=minimum) < minimum:
        raise fail(fn, f"`{name}` must be >= {minimum}, got {value!r}")
    if max(result, default=0) > MAX_DIM:
        raise fail(fn, f"`{name}` must be <= {MAX_DIM} (2**31 - 1), got {value!r}")
    return result


def as_pair(fn: str, name: str, value: Any, *, minimum: int = 1) -> Pair:
    """An int or a pair of ints, each >= `minimum`, as a tuple of two Python ints."""
    return as_ints(fn, name, value, 2, minimum=minimum, what="an int or a pair of ints")  # type: ignore[return-value]


def explicit_pads(fn: str, name: str, padding: Any, nd: int) -> Pads | None:
    """``(lo, hi)`` per spatial dim from an int, ``nd`` ints, or ``nd`` ``(lo, hi)`` pairs (in 1-D also a
    bare ``(lo, hi)``); None when
    `padding` has none of these forms (the caller names what else it accepts)."""
    result: Any = None
    if is_int(padding):
        result = ((int(padding),) * 2,) * nd
    elif nd == 1 and isinstance(padding, (tuple, list)) and len(padding) == 2 and all(map(is_int, padding)):
        result = ((int(padding[0]), int(padding[1])),)  # 1-D: the (lo, hi) pair itself
    elif isinstance(padding, (tuple, list)) and len(padding) == nd:
        if all(is_int(p) for p in padding):
            result = tuple((int(p), int(p)) for p in padding)
        elif all(isinstance(p, (tuple, list)) and len(p) == 2 and all(is_int(q) for q in p) for p in padding):
            result = tuple((int(p[0]), int(p[1])) for p in padding)
    if result is None:
        return None
    if min((min(p) for p in result), default=0) < 0:
        raise fail(fn, f"`{name}` amounts must be >= 0, got {padding!r}")
    if max((max(p) for p in result), default=0) > MAX_DIM:
        raise fail(fn, f"`{name}` amounts must be <= {MAX_DIM} (2**31 - 1), got {padding!r}")
    return result


def padding_forms(nd: int) -> str:
    """The explicit padding forms, for messages."""
    if nd == 1:
        return "an int or a (lo, hi) pair"
    return f"an int, {nd} ints (one per spatial dim) or {nd} (lo, hi) pairs"


def resolve_padding(fn: str, padding: Any, size: Ints, extent: Ints, stride: Ints) -> Pads:
    """Explicit ``(lo, hi)`` padding per spatial dim from any accepted padding form.

    Args:
      padding: ``"VALID"``, ``"SAME"``, ``"FULL"`` (case-insensitive), an int, one int per
        spatial dim, or one ``(lo, hi)`` pair per spatial dim; every amount >= 0.
      size: input extent per spatial dim.
      extent: effective window extent per dim, ``d * (k - 1) + 1`` for a dilated kernel.
      stride: strides per dim.

    ``"SAME"`` gives ``ceil(n / s)`` outputs and, for an odd total, puts the extra unit at the
    high end (as ``lax.padtype_to_pads`` does). ``"FULL"`` pads ``extent - 1`` on each side.
    """
    nd = len(size)
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return ((0, 0),) * nd
        if mode == "FULL":
            return tuple((e - 1, e - 1) for e in extent)
        if mode == "SAME":
            pads = []
            for n, e, s in zip(size, extent, stride, strict=True):
                total = max((-(-n // s) - 1) * s + e - n, 0)
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
        raise fail(fn, f"`padding` must be 'VALID', 'SAME', 'FULL' or {padding_forms(nd)}, got {padding!r}")
    pads = explicit_pads(fn, "padding", padding, nd)
    if pads is None:
        raise fail(
            fn, f"`padding` must be 'VALID', 'SAME', 'FULL', {padding_forms(nd)}, got {padding!r}",
            ValueError if isinstance(padding, (tuple, list)) else TypeError,
        )
    return pads


def output_size(fn: str, size: Ints, extent: Ints, stride: Ints, pads: Pads, what: str, arg: str) -> Ints:
    """Outputs per spatial dim, ``(n + lo + hi - extent) // s + 1``; the window must fit.

    `what` names the window ("dilated kernel", "window") and `arg` the argument that sets it.
    """
    out = []
    for axis, n, e, s, (lo, hi) in zip(AXES[len(size)], size, extent, stride, pads, strict=True):
        padded = n + lo + hi
        if e > padded:
            raise fail(
                fn, f"{what} extent {e} along {axis} is larger than the padded input ({n} + {lo} + {hi} = "
                f"{padded}); a smaller `{arg}` or more `padding` fits",
            )
        out.append((padded - e) // s + 1)
    return tuple(out)


def check_array_size(fn: str, arg: str, what: str, shape: Sequence[int]) -> None:
    """An array of `shape` that the call would create must be able to exist (`MAX_DIM`,
    `MAX_ELEMENTS`); otherwise the library's ValueError naming the argument `arg` that implies it."""
    shape = tuple(int(s) for s in shape)
    count = math.prod(shape)
    if max(shape, default=0) > MAX_DIM or count > MAX_ELEMENTS:
        raise fail(
            fn,
            f"`{arg}` implies {what} of shape {shape} ({count:.3g} elements), larger than an array "
            f"may be here (each axis <= 2**31 - 1, at most 2**33 elements)",
        )
