"""Validated, hashable configurations of conv and pooling calls.

`conv_spec` and `pool_spec` turn the user's keyword arguments into a `NamedTuple` of plain Python
ints/floats (usable as a `jax.custom_vjp` `nondiff_argnums` value), raising the library's
`ValueError`/`TypeError` at trace time. Both the custom-VJP functions and `jaxcnn.reference` use
them, so the oracle and the rules accept exactly the same inputs.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxcnn._checks import (
    Padding2D,
    Pair,
    as_pair,
    check_float,
    check_rank,
    check_same_dtype,
    fail,
    output_hw,
    resolve_padding,
)


class ConvSpec(NamedTuple):
    """Static configuration of one `conv2d` call (all plain Python values)."""

    kernel: Pair  # (k1, k2)
    stride: Pair
    pads: Padding2D  # ((top, bottom), (left, right))
    dilation: Pair
    groups: int
    flip: bool
    pad_value: float
    out_hw: Pair  # (H_out, W_out)


class PoolSpec(NamedTuple):
    """Static configuration of one pooling call."""

    window: Pair
    stride: Pair
    pads: Padding2D
    out_hw: Pair


def _check_groups(fn: str, groups: Any) -> int:
    if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, (int, np.integer)):
        raise fail(fn, f"`groups` must be a positive int, got {groups!r}", TypeError)
    if groups < 1:
        raise fail(fn, f"`groups` must be >= 1, got {groups!r}")
    return int(groups)


def conv_spec(
    fn: str,
    x: Any,
    w: Any,
    b: Any,
    *,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: Any,
    flip: Any,
    pad_value: Any,
) -> ConvSpec:
    """Validate a conv2d call.

    x NHWC, w HWIO ``(k1, k2, C/groups, D)``, b None, ``(D,)`` or ``(H_out, W_out, D)``.
    """
    check_float(fn, "x", x)
    check_float(fn, "w", w)
    check_rank(fn, "x", x, 4, "NHWC")
    check_rank(fn, "w", w, 4, "HWIO")
    arrays, names = [x, w], ["x", "w"]
    if b is not None:
        check_float(fn, "b", b)
        arrays.append(b)
        names.append("b")
    check_same_dtype(fn, names, arrays)
    groups = _check_groups(fn, groups)
    _, h, wd, c = jnp.shape(x)
    k1, k2, c_in, d = jnp.shape(w)
    if c % groups:
        raise fail(fn, f"`x` has {c} channels, not divisible by `groups` (={groups})")
    if d % groups:
        raise fail(fn, f"`w` has {d} output channels, not divisible by `groups` (={groups})")
    if c_in * groups != c:
        raise fail(
            fn,
            f"`w` has {c_in} input channels but `x` has {c} (groups={groups}); "
            f"expected w.shape[2] == {c // groups}",
        )
    if min(k1, k2) < 1:
        raise fail(fn, f"`w` must have a non-empty kernel, got shape {jnp.shape(w)}")
    if not isinstance(flip, (bool, np.bool_)):
        raise fail(fn, f"`flip` must be a bool, got {flip!r}", TypeError)
    if isinstance(pad_value, (bool, np.bool_)) or not isinstance(pad_value, numbers.Real):
        raise fail(fn, f"`pad_value` must be a Python number, got {pad_value!r}", TypeError)
    stride_ = as_pair(fn, "stride", stride)
    dilation_ = as_pair(fn, "dilation", dilation)
    extent = (dilation_[0] * (k1 - 1) + 1, dilation_[1] * (k2 - 1) + 1)
    pads = resolve_padding(fn, padding, (h, wd), extent, stride_)
    out = output_hw(fn, (h, wd), extent, stride_, pads, what="dilated kernel")
    if b is not None and jnp.shape(b) not in ((d,), (out[0], out[1], d)):
        raise fail(
            fn,
            f"`b` has shape {jnp.shape(b)}; expected ({d},) for a tied bias or "
            f"({out[0]}, {out[1]}, {d}) for an untied bias",
        )
    return ConvSpec(
        kernel=(int(k1), int(k2)),
        stride=stride_,
        pads=pads,
        dilation=dilation_,
        groups=groups,
        flip=bool(flip),
        pad_value=float(pad_value),
        out_hw=out,
    )


def pool_spec(fn: str, x: Any, window: Any, stride: Any, padding: Any) -> PoolSpec:
    """Validate a pooling call on x NHWC; stride defaults to the window (non-overlapping)."""
    check_float(fn, "x", x)
    check_rank(fn, "x", x, 4, "NHWC")
    window_ = as_pair(fn, "window", window)
    stride_ = window_ if stride is None else as_pair(fn, "stride", stride)
    _, h, wd, _ = jnp.shape(x)
    pads = resolve_padding(fn, padding, (h, wd), window_, stride_)
    for axis, win, pad in zip("HW", window_, pads, strict=True):
        if max(pad) >= win:
            raise fail(
                fn,
                f"`padding` {pad} along {axis} must be smaller than the window ({win}), "
                "so that no window covers padding only",
            )
    out = output_hw(fn, (h, wd), window_, stride_, pads, what="window")
    return PoolSpec(window=window_, stride=stride_, pads=pads, out_hw=out)


def dense_check(fn: str, x: Any, w: Any, b: Any) -> None:
    """Validate dense(x (N, F), w (F, U), b None or (U,))."""
    check_float(fn, "x", x)
    check_float(fn, "w", w)
    check_rank(fn, "x", x, 2, "(N, F)")
    check_rank(fn, "w", w, 2, "(F, U)")
    arrays, names = [x, w], ["x", "w"]
    if b is not None:
        check_float(fn, "b", b)
        arrays.append(b)
        names.append("b")
    check_same_dtype(fn, names, arrays)
    (_, f), (f_w, u) = jnp.shape(x), jnp.shape(w)
    if f != f_w:
        raise fail(
            fn,
            f"`w` has {f_w} input features but `x` has {f} "
            f"(x {jnp.shape(x)}, w {jnp.shape(w)})",
        )
    if b is not None and jnp.shape(b) != (u,):
        raise fail(
            fn, f"`b` has shape {jnp.shape(b)}; expected ({u},) to match `w` {jnp.shape(w)}"
        )


def negative_slope_check(fn: str, negative_slope: Any) -> float:
    """A leaky-ReLU slope: a real Python/NumPy number (not bool, not an array), as a float.

    It is static configuration (hashable, a `nondiff_argnums` value) and never differentiated.
    """
    if isinstance(negative_slope, (bool, np.bool_)) or not isinstance(
        negative_slope, numbers.Real
    ):
        raise fail(
            fn,
            f"`negative_slope` must be a Python number, got {negative_slope!r} "
            f"({type(negative_slope).__name__})",
            TypeError,
        )
    return float(negative_slope)


def reduction_check(fn: str, reduction: Any) -> str:
    """`reduction` is "sum" (Eq 9 as written) or "mean" (divided by the batch size)."""
    if not isinstance(reduction, str) or reduction not in ("sum", "mean"):
        raise fail(fn, f"`reduction` must be 'sum' or 'mean', got {reduction!r}")
    return reduction


def squared_error_check(fn: str, y: Any, t: Any) -> None:
    """y and t: float arrays of one shape (no broadcasting), batch first."""
    check_float(fn, "y", y)
    check_float(fn, "t", t)
    check_same_dtype(fn, ["y", "t"], [y, t])
    if jnp.ndim(y) < 1:
        raise fail(fn, f"`y` must have a batch dimension, got shape {jnp.shape(y)}")
    if jnp.shape(y) != jnp.shape(t):
        raise fail(fn, f"`t` has shape {jnp.shape(t)} but `y` has {jnp.shape(y)}; expected equal")


def labels_check(fn: str, logits: Any, labels: Any) -> bool:
    """Validate softmax_cross_entropy inputs; returns True for integer labels, False for one-hot.

    Integer labels `(N,)` in ``[0, K)``; the range is checked here when the labels are concrete
    (under `jit` they are traced: an out-of-range label then gets an all-zero target row).
    """
    check_float(fn, "logits", logits)
    check_rank(fn, "logits", logits, 2, "(N, K)")
    n, k = jnp.shape(logits)
    dtype = jnp.result_type(labels)
    if jnp.issubdtype(dtype, jnp.integer) and not jnp.issubdtype(dtype, jnp.bool_):
        if jnp.shape(labels) != (n,):
            raise fail(
                fn,
                f"integer `labels` must have shape ({n},) to match `logits` {(n, k)}, "
                f"got {jnp.shape(labels)}",
            )
        try:
            concrete = np.asarray(labels)
        except Exception:  # a tracer: values unknown at trace time
            return True
        if concrete.size and (concrete.min() < 0 or concrete.max() >= k):
            raise fail(
                fn,
                f"`labels` must lie in [0, {k}) for logits with {k} classes, "
                f"got values in [{concrete.min()}, {concrete.max()}]",
            )
        return True
    if jnp.issubdtype(dtype, jnp.floating):
        if jnp.ndim(labels) == 1:
            raise fail(
                fn,
                f"`labels` of shape {jnp.shape(labels)} must be integer class ids, got dtype "
                f"{dtype} (float labels are one-hot rows of shape {(n, k)})",
                TypeError,
            )
        check_same_dtype(fn, ["logits", "labels"], [logits, labels])
        if jnp.shape(labels) != (n, k):
            raise fail(
                fn,
                f"one-hot `labels` must have shape {(n, k)} like `logits`, "
                f"got {jnp.shape(labels)}",
            )
        return False
    raise fail(
        fn,
        f"`labels` must be integer class ids (N,) or float one-hot (N, K), got dtype {dtype}",
        TypeError,
    )
