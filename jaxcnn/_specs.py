"""Validated, hashable configurations of conv and pooling calls, in 1, 2 or 3 spatial dims.

`conv_spec`, `transpose_spec` and `pool_spec` turn the user's keyword arguments into a `NamedTuple`
of plain Python ints/floats (usable as a `jax.custom_vjp` `nondiff_argnums` value), raising the
library's `ValueError`/`TypeError` at trace time. Both the custom-VJP functions and
`jaxcnn.reference` use them, so the oracle and the rules accept exactly the same inputs.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxcnn._checks import (
    AXES,
    Ints,
    Like,
    Pads,
    as_finite,
    as_ints,
    check_array,
    check_array_size,
    check_bool,
    check_float,
    check_rank,
    check_same_dtype,
    explicit_pads,
    fail,
    is_int,
    output_size,
    padding_forms,
    resolve_padding,
)

LAYOUTS = {1: ("NWC", "WIO"), 2: ("NHWC", "HWIO"), 3: ("NDHWC", "DHWIO")}
"""Activation and kernel layouts per number of spatial dims (channels last)."""


class ConvSpec(NamedTuple):
    """Static configuration of one convolution (all plain Python values, one entry per spatial dim).

    For `conv_transpose` it describes the convolution being transposed: `size` is then the
    transposed convolution's output and `out` its input.
    """

    kernel: Ints  # (k1, ..., k_nd)
    stride: Ints
    pads: Pads  # ((lo, hi), ...)
    dilation: Ints
    groups: int
    flip: bool
    pad_value: float
    size: Ints  # spatial extent of the conv's input x
    out: Ints  # spatial extent of its output y (the deltas)

    @property
    def nd(self) -> int:
        return len(self.kernel)

    @property
    def extent(self) -> Ints:
        """The dilated kernel's extent ``d * (k - 1) + 1`` per dim."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation, strict=True))

    @property
    def used(self) -> Ints:
        """Units of the padded input the windows reach, ``(out - 1) * s + extent`` per dim."""
        return tuple((o - 1) * s + e for o, s, e in zip(self.out, self.stride, self.extent, strict=True))


class PoolSpec(NamedTuple):
    """Static configuration of one pooling call."""

    window: Ints
    stride: Ints
    pads: Pads  # (lo, hi) per dim; hi includes the ceil_mode overhang
    size: Ints  # spatial extent of the input
    out: Ints
    dilation: Ints = ()  # distance between a window's taps (max_pool); () reads as 1 per dim
    overhang: Ints = ()  # units past the high padding that ceil_mode's last windows reach (padding too)

    @property
    def nd(self) -> int:
        return len(self.window)

    @property
    def spacing(self) -> Ints:
        return self.dilation or (1,) * self.nd

    @property
    def extra(self) -> Ints:
        return self.overhang or (0,) * self.nd


def spatial_dims(fn: str, name: str, array: Any, offset: int, layouts: str) -> int:
    """1, 2 or 3: the spatial dims of `array` (its rank less `offset`), else the library's error."""
    nd = jnp.ndim(array) - offset
    if nd not in (1, 2, 3):
        raise fail(fn, f"`{name}` must have 1, 2 or 3 spatial dims ({layouts}), got shape {jnp.shape(array)}")
    return nd


def _check_groups(fn: str, groups: Any) -> int:
    if not is_int(groups):
        raise fail(fn, f"`groups` must be a positive int, got {groups!r}", TypeError)
    if groups < 1:
        raise fail(fn, f"`groups` must be >= 1, got {groups!r}")
    return int(groups)


def _conv_arrays(fn: str, x: Any, w: Any, b: Any, nd: int | None) -> int:
    """dtypes and ranks of a conv's operands; returns the spatial dims (from w's rank)."""
    check_float(fn, "x", x)
    check_float(fn, "w", w)
    if nd is None:
        nd = spatial_dims(fn, "w", w, 2, ", ".join(kernel for _, kernel in LAYOUTS.values()))
        layout = f"{LAYOUTS[nd][0]}: `w` {jnp.shape(w)} has {nd} spatial dims"
    else:
        check_rank(fn, "w", w, nd + 2, LAYOUTS[nd][1])
        layout = LAYOUTS[nd][0]
    check_rank(fn, "x", x, nd + 2, layout)
    arrays, names_ = [x, w], ["x", "w"]
    if b is not None:
        check_float(fn, "b", b)
        arrays.append(b)
        names_.append("b")
    check_same_dtype(fn, names_, arrays)
    return nd


def _check_channels(fn: str, c: int, c_in: int, d: int, groups: int, x_name: str = "x") -> None:
    if c % groups:
        raise fail(fn, f"`{x_name}` has {c} channels, not divisible by `groups` (={groups})")
    if d % groups:
        raise fail(fn, f"`w` has {d} output channels, not divisible by `groups` (={groups})")
    if c_in * groups != c:
        raise fail(
            fn,
            f"`w` has {c_in} input channels but `{x_name}` has {c} (groups={groups}); "
            f"expected w.shape[-2] == {c // groups}",
        )


def _check_bias(fn: str, b: Any, out: Ints, d: int) -> None:
    if b is not None and jnp.shape(b) not in ((d,), (*out, d)):
        raise fail(
            fn,
            f"`b` has shape {jnp.shape(b)}; expected ({d},) for a tied bias or "
            f"{(*out, d)} for an untied bias",
        )


def conv_spec(
    fn: str, x: Any, w: Any, b: Any, *, stride: Any, padding: Any, dilation: Any, groups: Any,
    flip: Any, pad_value: Any, nd: int | None = None,
) -> ConvSpec:
    """Validate a convolution call: x ``(N, *spatial, C)``, w ``(*k, C/groups, D)``, b None,
    ``(D,)`` or ``(*out, D)``; `nd` (1, 2, 3) when the function fixes the spatial dims."""
    nd = _conv_arrays(fn, x, w, b, nd)
    groups = _check_groups(fn, groups)
    *_, c = jnp.shape(x)
    *kernel, c_in, d = (int(s) for s in jnp.shape(w))
    _check_channels(fn, c, c_in, d, groups)
    if min(kernel) < 1:
        raise fail(fn, f"`w` must have a non-empty kernel, got shape {jnp.shape(w)}")
    flip = check_bool(fn, "flip", flip)
    pad_value = as_finite(fn, "pad_value", pad_value, jnp.result_type(x))
    stride_ = as_ints(fn, "stride", stride, nd)
    dilation_ = as_ints(fn, "dilation", dilation, nd)
    size = tuple(int(s) for s in jnp.shape(x)[1:-1])
    extent = tuple(dl * (k - 1) + 1 for k, dl in zip(kernel, dilation_, strict=True))
    if max(extent) > 2**31 - 1:
        raise fail(fn, f"`dilation` {dilation!r} makes the kernel span {extent} units, larger than any input")
    pads = resolve_padding(fn, padding, size, extent, stride_)
    n = jnp.shape(x)[0]
    padded = (s + lo + hi for s, (lo, hi) in zip(size, pads, strict=True))
    check_array_size(fn, "padding", "a padded input", (n, *padded, c))
    out = output_size(fn, size, extent, stride_, pads, "dilated kernel", "dilation")
    check_array_size(fn, "padding", "an output", (n, *out, d))
    _check_bias(fn, b, out, d)
    return ConvSpec(tuple(kernel), stride_, pads, dilation_, groups, flip, pad_value, size, out)


PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
"""`padding_mode` values of the convolution (PyTorch's names; Equinox's upper-case ones are accepted)."""
JNP_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}
"""The same modes, other than zeros, by ``jnp.pad``'s names (the rules' border copies and the reference)."""


def padding_mode_check(fn: str, padding_mode: Any, spec: ConvSpec) -> str:
    """Validate `padding_mode` against a conv's resolved padding: its name; ``pad_value`` 0 unless
    "zeros"; "reflect" needs each pad smaller than the input, "circular" at most the input."""
    if not isinstance(padding_mode, str) or padding_mode.lower() not in PADDING_MODES:
        names = ", ".join(map(repr, PADDING_MODES))
        raise fail(fn, f"`padding_mode` must be one of {names}, got {padding_mode!r}")
    mode = padding_mode.lower()
    if mode == "zeros":
        return mode
    if spec.pad_value != 0.0:
        raise fail(fn, f"`pad_value` ({spec.pad_value}) applies to padding_mode='zeros' only; "
                   f"padding_mode={mode!r} copies input units into the border")
    for axis, n, pad in zip(AXES[spec.nd], spec.size, spec.pads, strict=True):
        if mode == "reflect" and max(pad) >= n:
            raise fail(fn, f"`padding` {pad} along {axis} must be smaller than the input ({n}) for "
                       "padding_mode='reflect'")
        if mode == "circular" and max(pad) > n:
            raise fail(fn, f"`padding` {pad} along {axis} must be at most the input ({n}) for "
                       "padding_mode='circular'")
    return mode


def _shape_arg(fn: str, name: str, shape: Any, nd: int | None, what: str) -> tuple[int, ...]:
    """A static array shape of rank ``nd + 2`` (3-5 when `nd` is None), checked to be able to exist."""
    rank = None if nd is None else nd + 2
    ok = isinstance(shape, (tuple, list)) and all(is_int(s) and s >= 0 for s in shape)
    if not ok or (rank is not None and len(shape) != rank) or len(shape) not in (3, 4, 5):
        want = f"{rank}" if rank is not None else "3, 4 or 5"
        raise fail(fn, f"`{name}` must be a tuple of {want} non-negative ints, got {shape!r}", TypeError)
    check_array_size(fn, name, what, shape)
    return tuple(int(s) for s in shape)


def _check_delta(fn: str, delta: Any, spec: ConvSpec, n: int, d: int) -> None:
    check_rank(fn, "delta", delta, spec.nd + 2, LAYOUTS[spec.nd][0])
    expected = (n, *spec.out, d)
    if jnp.shape(delta) != expected:
        raise fail(fn, f"`delta` has shape {jnp.shape(delta)}; expected the output shape {expected}")


def input_grad_spec(fn: str, delta: Any, w: Any, x_shape: Any, *, nd: int | None = None,
                    **options: Any) -> tuple[ConvSpec, tuple[int, ...]]:
    """Validate a `conv_input_grad` call (delta ``(N, *out, D)``, w, the forward input's shape);
    returns the convolution's spec and `x_shape` as a tuple."""
    x_shape = _shape_arg(fn, "x_shape", x_shape, nd, "an input gradient")
    check_float(fn, "delta", delta)
    check_float(fn, "w", w)
    check_same_dtype(fn, ["delta", "w"], [delta, w])
    x_like = Like(x_shape, jnp.result_type(delta))
    spec = conv_spec(fn, x_like, w, None, pad_value=0.0, nd=nd, **options)
    _check_delta(fn, delta, spec, x_shape[0], jnp.shape(w)[-1])
    return spec, x_shape


def weight_grad_spec(fn: str, x: Any, delta: Any, w_shape: Any, *, nd: int | None = None,
                     **options: Any) -> tuple[ConvSpec, tuple[int, ...]]:
    """Validate a `conv_weight_grad` call (x, delta ``(N, *out, D)``, the kernel's shape); returns
    the convolution's spec and `w_shape` as a tuple."""
    w_shape = _shape_arg(fn, "w_shape", w_shape, nd, "a kernel gradient")
    check_float(fn, "x", x)
    check_float(fn, "delta", delta)
    check_same_dtype(fn, ["x", "delta"], [x, delta])
    w_like = Like(w_shape, jnp.result_type(x))
    spec = conv_spec(fn, x, w_like, None, nd=nd, **options)
    _check_delta(fn, delta, spec, jnp.shape(x)[0], w_shape[-1])
    return spec, w_shape


def transpose_spec(
    fn: str, x: Any, w: Any, b: Any, *, stride: Any, padding: Any, output_padding: Any, dilation: Any,
    groups: Any,
) -> ConvSpec:
    """Validate a `conv_transpose` call: x ``(N, *spatial, D)``, w ``(*k, C/groups, D)`` (the kernel
    of the convolution being transposed), b None, ``(C,)`` or ``(*out, C)``. Returns the spec of
    that convolution: ``size`` = the output, ``(n-1)*s - lo - hi + d*(k-1) + 1 + output_padding``."""
    nd = _conv_arrays(fn, x, w, b, None)
    groups = _check_groups(fn, groups)
    *_, d_x = jnp.shape(x)
    *kernel, c_g, d = (int(s) for s in jnp.shape(w))
    if d_x != d:
        raise fail(
            fn,
            f"`x` has {d_x} channels but `w` {jnp.shape(w)} transposes a convolution with {d} output "
            f"channels; expected x.shape[-1] == w.shape[-1] == {d}",
        )
    _check_channels(fn, c_g * groups, c_g, d, groups)
    if min(kernel) < 1:
        raise fail(fn, f"`w` must have a non-empty kernel, got shape {jnp.shape(w)}")
    stride_ = as_ints(fn, "stride", stride, nd)
    dilation_ = as_ints(fn, "dilation", dilation, nd)
    pads = explicit_pads(fn, "padding", padding, nd)
    if pads is None:
        raise fail(fn, f"`padding` must be {padding_forms(nd)} (the transposed convolution's), "
                   f"got {padding!r}",
                   TypeError if not isinstance(padding, (tuple, list)) else ValueError)
    extra = as_ints(fn, "output_padding", output_padding, nd, minimum=0)
    for axis, (e, s, dl) in enumerate(zip(extra, stride_, dilation_, strict=True)):
        if e >= max(s, dl):
            raise fail(
                fn, f"`output_padding` {output_padding!r} must be smaller than the stride ({s}) or the "
                f"dilation ({dl}) along spatial dim {axis}, got {e}",
            )
    n_in = tuple(int(s) for s in jnp.shape(x)[1:-1])
    if min(n_in) < 1:  # the convolution being transposed would have no outputs: none exists
        raise fail(
            fn, f"`x` {jnp.shape(x)} has no units along {AXES[nd][n_in.index(0)]}; a transposed "
            "convolution needs at least one input unit per spatial dim (the batch may be empty)",
        )
    size = tuple(
        (n - 1) * s - lo - hi + dl * (k - 1) + 1 + e
        for n, s, (lo, hi), dl, k, e in zip(n_in, stride_, pads, dilation_, kernel, extra, strict=True)
    )
    if min(size) < 1:
        raise fail(
            fn, f"`padding` {padding!r} crops the whole output: output size {size} from x {jnp.shape(x)}, "
            f"w {jnp.shape(w)}, stride {stride_}",
        )
    n = jnp.shape(x)[0]
    c = c_g * groups
    check_array_size(fn, "stride", "an output", (n, *size, c))
    check_array_size(fn, "stride", "a zero-inserted input", (n, *(s * m + 2 * e for s, m, e in zip(
        stride_, n_in, (dl * (k - 1) for dl, k in zip(dilation_, kernel, strict=True)), strict=True)), d))
    _check_bias(fn, b, size, c)
    return ConvSpec(tuple(kernel), stride_, pads, dilation_, groups, False, 0.0, size, n_in)


def pool_spec(fn: str, x: Any, window: Any, stride: Any, padding: Any, *, dilation: Any = 1,
              ceil_mode: Any = False) -> PoolSpec:
    """Validate a pooling call on x ``(N, *spatial, C)`` with 1-3 spatial dims; stride defaults to
    the window (non-overlapping). `dilation` spaces a window's taps; `ceil_mode` rounds the output
    size up (PyTorch's rule: ``ceil((n + lo + hi - e) / s) + 1``, less one where the last window would
    start past the input and the low padding), the overhang padded like the padding."""
    check_float(fn, "x", x)
    nd = spatial_dims(fn, "x", x, 2, "NWC, NHWC or NDHWC")
    window_ = as_ints(fn, "window", window, nd)
    stride_ = window_ if stride is None else as_ints(fn, "stride", stride, nd)
    dilation_ = as_ints(fn, "dilation", dilation, nd)
    ceil_mode = check_bool(fn, "ceil_mode", ceil_mode)
    extent = tuple(d * (k - 1) + 1 for k, d in zip(window_, dilation_, strict=True))
    size = tuple(int(s) for s in jnp.shape(x)[1:-1])
    pads = resolve_padding(fn, padding, size, extent, stride_)
    for axis, win, pad in zip(AXES[nd], window_, pads, strict=True):
        if max(pad) >= win:
            raise fail(
                fn,
                f"`padding` {pad} along {axis} must be smaller than the window ({win}), "
                "so that no window covers padding only",
            )
    n, c = jnp.shape(x)[0], jnp.shape(x)[-1]
    padded = (s + lo + hi for s, (lo, hi) in zip(size, pads, strict=True))
    check_array_size(fn, "padding", "a padded input", (n, *padded, c))
    if not ceil_mode:
        out = output_size(fn, size, extent, stride_, pads, "window", "window")
        overhang = (0,) * nd
    else:  # a window may overhang the padded input, even be wider than it (PyTorch's rule)
        out_, overhang_ = [], []
        for axis, m, e, st, (lo, hi) in zip(AXES[nd], size, extent, stride_, pads, strict=True):
            o = -(-(m + lo + hi - e) // st) + 1
            if (o - 1) * st >= m + lo:  # the last window must start inside the input or the low padding
                o -= 1
            if o < 1:
                raise fail(fn, f"window extent {e} along {axis} leaves no output of the padded input ({m} + "
                               f"{lo} + {hi} = {m + lo + hi}), even with `ceil_mode`; a smaller `window` or "
                               "more `padding` fits")
            out_.append(o)
            overhang_.append(max((o - 1) * st + e - (m + lo + hi), 0))
        out, overhang = tuple(out_), tuple(overhang_)
        pads = tuple((lo, hi + v) for (lo, hi), v in zip(pads, overhang, strict=True))
    check_array_size(fn, "window", "a stack of window taps", (n, *out, c, math.prod(window_)))
    return PoolSpec(window_, stride_, pads, size, out, dilation_, overhang)


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


def negative_slope_check(fn: str, negative_slope: Any, dtype: Any) -> float:
    """A leaky-ReLU slope: a real Python/NumPy number (not bool, not an array), finite in `dtype`
    (the input's), as a float.

    It is static configuration (hashable, a `nondiff_argnums` value) and never differentiated.
    """
    return as_finite(fn, "negative_slope", negative_slope, dtype)


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
    if k < 1:
        raise fail(fn, f"`logits` must have at least one class, got shape {(n, k)} (a softmax over no "
                   "classes is undefined)")
    dtype = check_array(fn, "labels", labels, "integer class ids (N,) or float one-hot (N, K)")
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
