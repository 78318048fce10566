"""Argument validators shared by every public function.

All run at trace time on static shapes and dtypes, and all raise with one message format::

    `conv2d`: `w` has 3 input channels but `x` has 4 (groups=1)

ValueError for shapes and values, TypeError for dtypes and argument types. No ``assert``: it
vanishes under ``python -O``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

Pair = tuple[int, int]
Padding2D = tuple[tuple[int, int], tuple[int, int]]


def fail(fn: str, message: str, exc: type[Exception] = ValueError) -> Exception:
    """Build the exception of the common format; the caller raises it."""
    return exc(f"`{fn}`: {message}")


def check_float(fn: str, name: str, x: Any) -> None:
    """Differentiable arguments must be floating point (never int or bool)."""
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise fail(fn, f"`{name}` must be a floating-point array, got dtype {dtype}", TypeError)


def check_rank(fn: str, name: str, x: Any, rank: int, layout: str) -> None:
    """`x` must have `rank` dimensions, described by `layout` (e.g. "NHWC")."""
    shape = jnp.shape(x)
    if len(shape) != rank:
        raise fail(fn, f"`{name}` must have rank {rank} ({layout}), got shape {shape}")


def check_plain_2d(fn: str, image: Any, kernel: Any) -> None:
    """The article's 2-D case: an image ``I (H, W)`` and a kernel ``K (k1, k2)``."""
    check_rank(fn, "I", image, 2, "(H, W)")
    check_rank(fn, "K", kernel, 2, "(k1, k2)")


def check_same_dtype(fn: str, names: Sequence[str], arrays: Sequence[Any]) -> None:
    """Arguments combined arithmetically must share one dtype (no silent promotion)."""
    dtypes = [jnp.result_type(a) for a in arrays]
    if len(set(dtypes)) > 1:
        got = ", ".join(f"`{n}` {d}" for n, d in zip(names, dtypes, strict=True))
        raise fail(fn, f"arguments must share one dtype, got {got}", TypeError)


def as_pair(fn: str, name: str, value: Any, *, minimum: int = 1) -> Pair:
    """An int or a pair of ints, each >= `minimum`, as a tuple of two Python ints."""
    if isinstance(value, (bool, np.bool_)):
        raise fail(fn, f"`{name}` must be an int or a pair of ints, got {value!r}", TypeError)
    if isinstance(value, (int, np.integer)):
        pair = (int(value), int(value))
    elif (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    ):
        pair = (int(value[0]), int(value[1]))
    else:
        raise fail(fn, f"`{name}` must be an int or a pair of ints, got {value!r}", TypeError)
    if min(pair) < minimum:
        raise fail(fn, f"`{name}` must be >= {minimum}, got {value!r}")
    return pair


def resolve_padding(
    fn: str,
    padding: Any,
    in_hw: Pair,
    window_hw: Pair,
    stride: Pair,
) -> Padding2D:
    """Explicit ``((top, bottom), (left, right))`` padding from any accepted padding form.

    Args:
      padding: ``"VALID"``, ``"SAME"``, ``"FULL"`` (case-insensitive), an int, a pair
        ``(ph, pw)``, or ``((top, bottom), (left, right))``; every amount >= 0.
      in_hw: input height and width.
      window_hw: effective window extent, ``d * (k - 1) + 1`` for a dilated kernel.
      stride: strides along H and W.

    ``"SAME"`` gives ``ceil(H / s)`` outputs and, for an odd total, puts the extra row/column at
    the bottom/right (as ``lax.padtype_to_pads`` does). ``"FULL"`` pads ``window - 1`` each side.
    """
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return ((0, 0), (0, 0))
        if mode == "FULL":
            return ((window_hw[0] - 1,) * 2, (window_hw[1] - 1,) * 2)  # type: ignore[return-value]
        if mode == "SAME":
            pads = []
            for size, win, s in zip(in_hw, window_hw, stride, strict=True):
                out = -(-size // s)
                total = max((out - 1) * s + win - size, 0)
                pads.append((total // 2, total - total // 2))
            return (pads[0], pads[1])
        raise fail(
            fn, f"`padding` must be 'VALID', 'SAME', 'FULL', an int or pairs, got {padding!r}"
        )

    def is_int(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

    result: Any = None
    if is_int(padding):
        result = ((int(padding),) * 2, (int(padding),) * 2)
    elif isinstance(padding, (tuple, list)) and len(padding) == 2:
        if all(is_int(p) for p in padding):
            result = ((int(padding[0]),) * 2, (int(padding[1]),) * 2)
        elif all(
            isinstance(p, (tuple, list)) and len(p) == 2 and all(is_int(q) for q in p)
            for p in padding
        ):
            result = tuple((int(p[0]), int(p[1])) for p in padding)
    if result is None:
        raise fail(
            fn,
            "`padding` must be 'VALID', 'SAME', 'FULL', an int, a pair (ph, pw) or "
            f"((top, bottom), (left, right)), got {padding!r}",
            TypeError if not isinstance(padding, (tuple, list, int)) else ValueError,
        )
    if min(min(p) for p in result) < 0:
        raise fail(fn, f"`padding` amounts must be >= 0, got {padding!r}")
    return result


def output_hw(
    fn: str,
    in_hw: Pair,
    window_hw: Pair,
    stride: Pair,
    pads: Padding2D,
    what: str = "kernel",
) -> Pair:
    """Output height/width ``(H + pt + pb - window) // s + 1``; the window must fit."""
    out = []
    for axis, size, win, s, (lo, hi) in zip("HW", in_hw, window_hw, stride, pads, strict=True):
        padded = size + lo + hi
        if win > padded:
            raise fail(
                fn,
                f"{what} extent {win} along {axis} is larger than the padded input "
                f"({size} + {lo} + {hi} = {padded})",
            )
        out.append((padded - win) // s + 1)
    return (out[0], out[1])
