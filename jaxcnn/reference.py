"""The oracle: every jaxcnn function in plain `lax`/`jnp`, differentiated by JAX's autodiff.

Same public names, signatures, validation and conventions as the custom-VJP functions, but no
custom rules: ``jax.grad`` of these functions is what the article's formulas are checked against
(`jaxcnn.gradcheck`, the test-suite). Conventions shared with the rules so that this is a valid oracle:

* max pool is ``lax.reduce_window`` with ``lax.max``: autodiff (``select_and_scatter_add``) sends a
  tie's delta to the first maximum in row-major window order, like `jaxcnn.max_pool` — a reshape +
  ``jnp.max`` would split a tie's delta evenly and is no oracle;
* ``relu'(0) = 0`` and ``leaky_relu'(0) = negative_slope``, from the left branch of a ``jnp.where``;
  ``relu`` is ``jax.nn.relu`` itself (``relu(NaN) = NaN``, derivative 0 there);
* ``l2_pool`` has gradient 0 where the window's norm is 0, and a NaN in a window makes it NaN;
* `conv_transpose` inserts the stride's zeros (a strided scatter into zeros, `_spread`: not the
  rules' `jaxcnn._windows.dilate`, so that the oracle shares no computation with them) and
  correlates with the rotated kernel — the textbook definition, written without ``lhs_dilation`` or
  interior padding (jax 0.10's CPU compiler aborts differentiating some of those).

Forward-mode (``jax.jvp``) works here; it does not on the `custom_vjp` functions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcnn._checks import check_bool, check_float, check_neg_inf, check_plain_2d, fail
from jaxcnn._specs import (
    JNP_PAD_MODES,
    LAYOUTS,
    conv_spec,
    dense_check,
    input_grad_spec,
    labels_check,
    negative_slope_check,
    padding_mode_check,
    pool_spec,
    reduction_check,
    squared_error_check,
    transpose_spec,
    weight_grad_spec,
)

__all__ = [
    "conv",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_input_grad",
    "conv_weight_grad",
    "conv2d_input_grad",
    "conv2d_weight_grad",
    "conv_transpose",
    "correlate2d",
    "convolve2d",
    "relu",
    "leaky_relu",
    "tanh",
    "scaled_tanh",
    "sigmoid",
    "max_pool",
    "avg_pool",
    "l2_pool",
    "dense",
    "flatten",
    "squared_error",
    "softmax_cross_entropy",
]

Size = int | tuple[int, ...]
Padding = str | int | tuple


# --------------------------------------------------------------------------------------- conv
def _bias(y: jax.Array, b: jax.Array | None) -> jax.Array:
    return y if b is None else y + b.reshape((1,) * (y.ndim - b.ndim) + b.shape)




def _conv(fn: str, nd: int | None, x, w, b, *, stride, padding, dilation, groups, flip, pad_value,
          padding_mode="zeros") -> jax.Array:
    """Eq 1, 4-7: ``lax.pad`` with `pad_value` (or ``jnp.pad``'s reflect/edge/wrap modes, differentiated
    by autodiff), then a VALID ``lax.conv_general_dilated``."""
    spec = conv_spec(fn, x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups,
                     flip=flip, pad_value=pad_value, nd=nd)
    mode = padding_mode_check(fn, padding_mode, spec)
    if mode == "zeros":
        x_pad = lax.pad(x, jnp.asarray(spec.pad_value, x.dtype),
                        [(0, 0, 0), *((lo, hi, 0) for lo, hi in spec.pads), (0, 0, 0)])
    else:
        x_pad = jnp.pad(x, [(0, 0), *spec.pads, (0, 0)], mode=JNP_PAD_MODES[mode])
    kernel = w[(slice(None, None, -1),) * spec.nd] if spec.flip else w
    lhs, rhs = LAYOUTS[spec.nd]
    y = lax.conv_general_dilated(x_pad, kernel, window_strides=spec.stride, padding="VALID",
                                 rhs_dilation=spec.dilation, dimension_numbers=(lhs, rhs, lhs),
                                 feature_group_count=spec.groups)
    return _bias(y, b)


def conv(x: jax.Array, w: jax.Array, b: jax.Array | None = None, *, stride: Size = 1,
         padding: Padding = "VALID", dilation: Size = 1, groups: int = 1, flip: bool = False,
         pad_value: float = 0.0, padding_mode: str = "zeros") -> jax.Array:
    """Reference `jaxcnn.conv` (Eq 1, 4-7), 1-3 spatial dims: x ``(N, *size, C)``, w ``(*k, C/groups, D)``,
    b None/``(D,)``/``(*out, D)`` -> ``(N, *out, D)``."""
    return _conv("conv", None, x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups,
                 flip=flip, pad_value=pad_value, padding_mode=padding_mode)


def conv1d(x: jax.Array, w: jax.Array, b: jax.Array | None = None, *, stride: Size = 1,
           padding: Padding = "VALID", dilation: Size = 1, groups: int = 1, flip: bool = False,
           pad_value: float = 0.0, padding_mode: str = "zeros") -> jax.Array:
    """Reference `jaxcnn.conv1d`: x ``(N, W, C)``, w ``(k, C/groups, D)``."""
    return _conv("conv1d", 1, x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups,
                 flip=flip, pad_value=pad_value, padding_mode=padding_mode)


def conv2d(x: jax.Array, w: jax.Array, b: jax.Array | None = None, *, stride: Size = 1,
           padding: Padding = "VALID", dilation: Size = 1, groups: int = 1, flip: bool = False,
           pad_value: float = 0.0, padding_mode: str = "zeros") -> jax.Array:
    """Reference `jaxcnn.conv2d`: x ``(N, H, W, C)``, w ``(k1, k2, C/groups, D)``."""
    return _conv("conv2d", 2, x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups,
                 flip=flip, pad_value=pad_value, padding_mode=padding_mode)


def conv3d(x: jax.Array, w: jax.Array, b: jax.Array | None = None, *, stride: Size = 1,
           padding: Padding = "VALID", dilation: Size = 1, groups: int = 1, flip: bool = False,
           pad_value: float = 0.0, padding_mode: str = "zeros") -> jax.Array:
    """Reference `jaxcnn.conv3d`: x ``(N, D, H, W, C)``, w ``(k1, k2, k3, C/groups, D)``."""
    return _conv("conv3d", 3, x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups,
                 flip=flip, pad_value=pad_value, padding_mode=padding_mode)


def _input_grad(fn: str, nd: int | None, delta, w, x_shape, **options) -> jax.Array:
    """``jax.vjp`` of the reference conv w.r.t. x, after the rules' own validation under `fn`'s name."""
    _, x_shape = input_grad_spec(fn, delta, w, x_shape, nd=nd, **options)
    _, vjp = jax.vjp(lambda x_: _conv(fn, nd, x_, w, None, pad_value=0.0, **options),
                     jnp.zeros(x_shape, jnp.result_type(delta)))
    return vjp(delta)[0]


def _weight_grad(fn: str, nd: int | None, x, delta, w_shape, **options) -> jax.Array:
    """``jax.vjp`` of the reference conv w.r.t. w, after the rules' own validation under `fn`'s name."""
    _, w_shape = weight_grad_spec(fn, x, delta, w_shape, nd=nd, **options)
    _, vjp = jax.vjp(lambda w_: _conv(fn, nd, x, w_, None, **options), jnp.zeros(w_shape, jnp.result_type(x)))
    return vjp(delta)[0]


def conv_input_grad(delta: jax.Array, w: jax.Array, x_shape: tuple[int, ...], *, stride: Size = 1,
                    padding: Padding = "VALID", dilation: Size = 1, groups: int = 1,
                    flip: bool = False) -> jax.Array:
    """Reference `jaxcnn.conv_input_grad`: ``jax.vjp`` of the reference conv w.r.t. x."""
    return _input_grad("conv_input_grad", None, delta, w, x_shape, stride=stride, padding=padding,
                       dilation=dilation, groups=groups, flip=flip)


def conv_weight_grad(x: jax.Array, delta: jax.Array, w_shape: tuple[int, ...], *, stride: Size = 1,
                     padding: Padding = "VALID", dilation: Size = 1, groups: int = 1, flip: bool = False,
                     pad_value: float = 0.0) -> jax.Array:
    """Reference `jaxcnn.conv_weight_grad`: ``jax.vjp`` of the reference conv w.r.t. w."""
    return _weight_grad("conv_weight_grad", None, x, delta, w_shape, stride=stride, padding=padding,
                        dilation=dilation, groups=groups, flip=flip, pad_value=pad_value)


def conv2d_input_grad(delta: jax.Array, w: jax.Array, x_shape: tuple[int, int, int, int], *,
                      stride: Size = 1, padding: Padding = "VALID", dilation: Size = 1, groups: int = 1,
                      flip: bool = False) -> jax.Array:
    """Reference `jaxcnn.conv2d_input_grad` (2-D `conv_input_grad`)."""
    return _input_grad("conv2d_input_grad", 2, delta, w, x_shape, stride=stride, padding=padding,
                       dilation=dilation, groups=groups, flip=flip)


def conv2d_weight_grad(x: jax.Array, delta: jax.Array, w_shape: tuple[int, int, int, int], *,
                       stride: Size = 1, padding: Padding = "VALID", dilation: Size = 1, groups: int = 1,
                       flip: bool = False, pad_value: float = 0.0) -> jax.Array:
    """Reference `jaxcnn.conv2d_weight_grad` (2-D `conv_weight_grad`)."""
    return _weight_grad("conv2d_weight_grad", 2, x, delta, w_shape, stride=stride, padding=padding,
                        dilation=dilation, groups=groups, flip=flip, pad_value=pad_value)


def _spread(x: jax.Array, stride: tuple[int, ...]) -> jax.Array:
    """``s - 1`` zeros between neighbours on every spatial axis of ``x (N, *n, C)``: ``x`` scattered
    into zeros of length ``(n - 1) s + 1`` at every ``s``-th place."""
    shape = (x.shape[0], *((n - 1) * s + 1 if n else 0 for n, s in zip(x.shape[1:-1], stride, strict=True)),
             x.shape[-1])
    return jnp.zeros(shape, x.dtype).at[(slice(None), *(slice(None, None, s) for s in stride))].set(x)


def conv_transpose(x: jax.Array, w: jax.Array, b: jax.Array | None = None, *, stride: Size = 1,
                   padding: int | tuple = 0, output_padding: Size = 0, dilation: Size = 1,
                   groups: int = 1) -> jax.Array:
    """Reference `jaxcnn.conv_transpose`, the textbook way: ``s - 1`` zeros inserted between the
    inputs, ``d*(k-1) - lo`` units of padding before and ``d*(k-1) - hi + output_padding`` after
    (negative amounts crop), then a stride-1 correlation with the kernel rotated on every spatial
    axis and its in/out channels swapped per group. x ``(N, *n, D)``, w ``(*k, C/groups, D)``."""
    spec = transpose_spec("conv_transpose", x, w, b, stride=stride, padding=padding,
                          output_padding=output_padding, dilation=dilation, groups=groups)
    nd, g = spec.nd, spec.groups
    config = [(0, 0, 0)]
    dims = zip(spec.out, spec.size, spec.stride, spec.pads, spec.extent, strict=True)
    for n_in, n_out, s, (lo, _), e in dims:
        dilated = (n_in - 1) * s + 1
        config.append((e - 1 - lo, n_out - dilated - (e - 1 - lo) + e - 1, 0))
    xd = lax.pad(_spread(x, spec.stride), jnp.zeros((), x.dtype), [*config, (0, 0, 0)])
    *k, c_g, d = w.shape
    kernel = w[(slice(None, None, -1),) * nd].reshape(*k, c_g, g, d // g)
    kernel = jnp.moveaxis(kernel, (nd, nd + 1, nd + 2), (nd + 2, nd + 1, nd)).reshape(*k, d // g, g * c_g)
    lhs, rhs = LAYOUTS[nd]
    y = lax.conv_general_dilated(xd, kernel, window_strides=(1,) * nd, padding="VALID",
                                 rhs_dilation=spec.dilation,
                                 dimension_numbers=(lhs, rhs, lhs), feature_group_count=g)
    return _bias(y, b)


def correlate2d(I: jax.Array, K: jax.Array) -> jax.Array:  # noqa: N803 (the article's names)
    """Reference `jaxcnn.correlate2d`, Eq 1: ``sum_mn I(i+m, j+n) K(m, n)``; valid mode."""
    check_plain_2d("correlate2d", I, K)
    return conv2d(I[None, :, :, None], K[:, :, None, None])[0, :, :, 0]


def convolve2d(I: jax.Array, K: jax.Array) -> jax.Array:  # noqa: N803
    """Reference `jaxcnn.convolve2d`, Eq 2-3: ``sum_mn I(i+m, j+n) K(-m, -n)``; valid mode."""
    check_plain_2d("convolve2d", I, K)
    return conv2d(I[None, :, :, None], K[:, :, None, None], flip=True)[0, :, :, 0]


# -------------------------------------------------------------------------------- activations
def relu(x: jax.Array) -> jax.Array:
    """Reference `jaxcnn.relu`: JAX's own ``jax.nn.relu`` (``relu'(0) = 0``; NaN propagates forward,
    the derivative at a NaN input is 0)."""
    check_float("relu", "x", x)
    return jax.nn.relu(x)


def leaky_relu(x: jax.Array, negative_slope: float = 0.01) -> jax.Array:
    """Reference `jaxcnn.leaky_relu`: ``x if x > 0 else negative_slope * x``; slope at 0."""
    check_float("leaky_relu", "x", x)
    negative_slope = negative_slope_check("leaky_relu", negative_slope, jnp.result_type(x))
    return jnp.where(x > 0, x, negative_slope * x)


def tanh(x: jax.Array) -> jax.Array:
    """Reference `jaxcnn.tanh`."""
    check_float("tanh", "x", x)
    return jnp.tanh(x)


def scaled_tanh(x: jax.Array) -> jax.Array:
    """Reference `jaxcnn.scaled_tanh`: LeCun's ``1.7159 * tanh(2x/3)``."""
    check_float("scaled_tanh", "x", x)
    return 1.7159 * jnp.tanh(x * (2.0 / 3.0))


def sigmoid(x: jax.Array) -> jax.Array:
    """Reference `jaxcnn.sigmoid`: ``1 / (1 + exp(-x))``."""
    check_float("sigmoid", "x", x)
    return lax.logistic(x)


# ------------------------------------------------------------------------------------ pooling
def _window(x: jax.Array, spec, init, op) -> jax.Array:
    # A numpy (concrete) init value lets lax recognise the monoid (max/add) and use its autodiff
    # rule; a traced init would fall back to the generic reduce_window, which has none.
    return lax.reduce_window(x, np.asarray(init, x.dtype), op, (1, *spec.window, 1), (1, *spec.stride, 1),
                             ((0, 0), *spec.pads, (0, 0)))


def max_pool(x: jax.Array, window: Size, *, stride: Size | None = None, padding: Padding = "VALID",
             dilation: Size = 1, ceil_mode: bool = False) -> jax.Array:
    """Reference `jaxcnn.max_pool`, 1-3 spatial dims: ``lax.reduce_window(lax.max)``, padded with -inf.

    With `dilation` > 1 (jax 0.10's reduce_window max has no VJP for a window dilation): the window's
    taps as strided slices of the padded input, stacked, and ``take_along_axis`` at ``jnp.argmax`` —
    whose autodiff sends the delta to the first maximum (a tie's first unit; a NaN wins), like the rule.
    """
    spec = pool_spec("max_pool", x, window, stride, padding, dilation=dilation, ceil_mode=ceil_mode)
    check_neg_inf("max_pool", "x", x)
    if spec.spacing == (1,) * spec.nd:
        return _window(x, spec, -jnp.inf, lax.max)
    config = [(0, 0, 0), *((lo, hi, 0) for lo, hi in spec.pads), (0, 0, 0)]
    xp = lax.pad(x, jnp.asarray(-jnp.inf, x.dtype), config)
    taps = []
    for t in np.ndindex(*spec.window):  # row-major window order
        index = tuple(slice(d * ti, d * ti + (o - 1) * s + 1, s)
                      for ti, d, s, o in zip(t, spec.spacing, spec.stride, spec.out, strict=True))
        taps.append(xp[(slice(None), *index, slice(None))])
    stacked = jnp.stack(taps, axis=-1)
    first = jnp.argmax(stacked, axis=-1)[..., None]
    return jnp.take_along_axis(stacked, first, axis=-1)[..., 0]


def avg_pool(x: jax.Array, window: Size, *, stride: Size | None = None, padding: Padding = "VALID",
             count_include_pad: bool = True, ceil_mode: bool = False) -> jax.Array:
    """Reference `jaxcnn.avg_pool`: window sum over ``prod(p)`` (or over the real units; ceil_mode's
    overhang never counts)."""
    spec = pool_spec("avg_pool", x, window, stride, padding, ceil_mode=ceil_mode)
    count_include_pad = check_bool("avg_pool", "count_include_pad", count_include_pad)
    dtype, acc = jnp.result_type(x), _acc(x)  # 16-bit floats summed and divided in float32
    total = _window(jnp.asarray(x).astype(acc), spec, 0, lax.add)
    if count_include_pad and spec.extra == (0,) * spec.nd:
        return (total / int(np.prod(spec.window))).astype(dtype)
    if count_include_pad:  # ones over the input and its padding, zeros over the overhang
        padded = tuple(n + lo + hi - v
                       for n, (lo, hi), v in zip(x.shape[1:-1], spec.pads, spec.extra, strict=True))
        ones = jnp.ones((1, *padded, 1), acc)
        overhang = ((0, 0), *((0, v) for v in spec.extra), (0, 0))
        return (total / lax.reduce_window(ones, np.asarray(0, acc), lax.add, (1, *spec.window, 1),
                                          (1, *spec.stride, 1), overhang)).astype(dtype)
    count = _window(jnp.ones((1, *x.shape[1:-1], 1), acc), spec, 0, lax.add)
    return (total / count).astype(dtype)


def _acc(x: jax.Array) -> jnp.dtype:
    """float32 for the 16-bit (and 8-bit) floats, the dtype itself otherwise."""
    dtype = jnp.dtype(jnp.result_type(x))
    return jnp.dtype(jnp.float32) if dtype.itemsize < 4 else dtype


def l2_pool(x: jax.Array, window: Size, *, stride: Size | None = None, padding: Padding = "VALID",
            ceil_mode: bool = False) -> jax.Array:
    """Reference `jaxcnn.l2_pool`: ``sqrt(sum x^2)``, with gradient 0 where the norm is 0; NaN propagates."""
    spec = pool_spec("l2_pool", x, window, stride, padding, ceil_mode=ceil_mode)
    xa = jnp.asarray(x).astype(_acc(x))  # 16-bit floats squared and summed in float32
    sq = _window(xa * xa, spec, 0, lax.add)
    zero = sq == 0
    return jnp.where(zero, 0, jnp.sqrt(jnp.where(zero, 1, sq))).astype(jnp.result_type(x))


# -------------------------------------------------------------------------------------- dense
def dense(x: jax.Array, w: jax.Array, b: jax.Array | None = None) -> jax.Array:
    """Reference `jaxcnn.dense`: ``x @ w + b``; x ``(N, F)``, w ``(F, U)`` -> ``(N, U)``."""
    dense_check("dense", x, w, b)
    y = x @ w
    return y if b is None else y + b[None, :]


def flatten(x: jax.Array) -> jax.Array:
    """Reference `jaxcnn.flatten`: ``(N, ...) -> (N, prod(...))``."""
    check_float("flatten", "x", x)
    if x.ndim < 1:
        raise fail("flatten", f"`x` must have a batch dimension, got shape {x.shape}")
    return x.reshape(x.shape[0], int(np.prod(x.shape[1:])))


# ------------------------------------------------------------------------------------- losses
def squared_error(y: jax.Array, t: jax.Array, *, reduction: str = "sum") -> jax.Array:
    """Reference `jaxcnn.squared_error`, Eq 9: ``1/2 sum_p (t_p - y_p)^2`` (/N for "mean")."""
    reduction = reduction_check("squared_error", reduction)
    squared_error_check("squared_error", y, t)
    loss = 0.5 * jnp.sum((t - y) ** 2)
    return loss / y.shape[0] if reduction == "mean" else loss


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Reference `jaxcnn.softmax_cross_entropy`: batch mean of ``-sum_k onehot_k log softmax_k``."""
    integer = labels_check("softmax_cross_entropy", logits, labels)
    target = jax.nn.one_hot(labels, logits.shape[1], dtype=logits.dtype) if integer else labels
    log_probs = jax.nn.log_softmax(logits)
    # 0 log 0 = 0: a class masked with a -inf logit and no target weight adds nothing (a select of
    # the log-probabilities, not of the products, whose gradient would be 0 * -inf)
    log_probs = jnp.where((target == 0) & (log_probs == -jnp.inf), 0, log_probs)
    return -jnp.sum(target * log_probs) / logits.shape[0]
