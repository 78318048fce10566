"""The oracle: every jaxcnn function in plain `lax`/`jnp`, differentiated by JAX's autodiff.

Same public names, signatures, validation and conventions as the custom-VJP functions, but no
custom rules: ``jax.grad`` of these functions is what the article's formulas are checked against
(`jaxcnn.gradcheck`, the test-suite). Conventions shared with the rules so that this is a valid oracle:

* max pool is ``lax.reduce_window`` with ``lax.max``: autodiff (``select_and_scatter_add``) sends a
  tie's delta to the first maximum in row-major window order, like `jaxcnn.max_pool` — a reshape +
  ``jnp.max`` would split a tie's delta evenly and is no oracle;
* ``relu'(0) = 0`` and ``leaky_relu'(0) = negative_slope``, from the left branch of a ``jnp.where``;
* ``l2_pool`` has gradient 0 where the window's norm is 0.

Forward-mode (``jax.jvp``) works here; it does not on the `custom_vjp` functions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcnn._checks import check_float, check_plain_2d, fail
from jaxcnn._specs import (
    conv_spec,
    dense_check,
    labels_check,
    negative_slope_check,
    pool_spec,
    reduction_check,
    squared_error_check,
)

__all__ = [
    "conv2d",
    "conv2d_input_grad",
    "conv2d_weight_grad",
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

_NHWC = ("NHWC", "HWIO", "NHWC")


# --------------------------------------------------------------------------------------- conv
def conv2d(
    x: jax.Array,
    w: jax.Array,
    b: jax.Array | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: str | int | tuple = "VALID",
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    flip: bool = False,
    pad_value: float = 0.0,
) -> jax.Array:
    """Reference `jaxcnn.conv2d` (Eq 1, 4-7): ``lax.pad`` with `pad_value`, then a VALID conv.

    x ``(N, H, W, C)``, w ``(k1, k2, C/groups, D)``, b None/``(D,)``/``(H_out, W_out, D)`` ->
    ``(N, H_out, W_out, D)``.
    """
    spec = conv_spec(
        "conv2d", x, w, b, stride=stride, padding=padding, dilation=dilation,
        groups=groups, flip=flip, pad_value=pad_value,
    )
    x_pad = lax.pad(
        x,
        jnp.asarray(spec.pad_value, x.dtype),
        ((0, 0, 0), (*spec.pads[0], 0), (*spec.pads[1], 0), (0, 0, 0)),
    )
    kernel = w[::-1, ::-1] if spec.flip else w
    y = lax.conv_general_dilated(
        x_pad, kernel, window_strides=spec.stride, padding="VALID",
        rhs_dilation=spec.dilation, dimension_numbers=_NHWC,
        feature_group_count=spec.groups,
    )
    return y if b is None else y + b.reshape((1,) * (4 - b.ndim) + b.shape)


def conv2d_input_grad(
    delta: jax.Array,
    w: jax.Array,
    x_shape: tuple[int, int, int, int],
    *,
    stride: int | tuple[int, int] = 1,
    padding: str | int | tuple = "VALID",
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    flip: bool = False,
) -> jax.Array:
    """Reference `jaxcnn.conv2d_input_grad`: ``jax.vjp`` of the reference conv2d w.r.t. x."""
    x = jnp.zeros(x_shape, jnp.result_type(delta))
    _, vjp = jax.vjp(
        lambda x_: conv2d(x_, w, stride=stride, padding=padding, dilation=dilation,
                          groups=groups, flip=flip),
        x,
    )
    return vjp(delta)[0]


def conv2d_weight_grad(
    x: jax.Array,
    delta: jax.Array,
    w_shape: tuple[int, int, int, int],
    *,
    stride: int | tuple[int, int] = 1,
    padding: str | int | tuple = "VALID",
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    flip: bool = False,
    pad_value: float = 0.0,
) -> jax.Array:
    """Reference `jaxcnn.conv2d_weight_grad`: ``jax.vjp`` of the reference conv2d w.r.t. w."""
    w = jnp.zeros(w_shape, jnp.result_type(x))
    _, vjp = jax.vjp(
        lambda w_: conv2d(x, w_, stride=stride, padding=padding, dilation=dilation,
                          groups=groups, flip=flip, pad_value=pad_value),
        w,
    )
    return vjp(delta)[0]


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
    """Reference `jaxcnn.relu`: ``max(0, x)``; ``relu'(0) = 0``."""
    check_float("relu", "x", x)
    return jnp.where(x > 0, x, jnp.zeros_like(x))


def leaky_relu(x: jax.Array, negative_slope: float = 0.01) -> jax.Array:
    """Reference `jaxcnn.leaky_relu`: ``x if x > 0 else negative_slope * x``; slope at 0."""
    check_float("leaky_relu", "x", x)
    negative_slope = negative_slope_check("leaky_relu", negative_slope)
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
    return lax.reduce_window(
        x, np.asarray(init, x.dtype), op,
        (1, *spec.window, 1), (1, *spec.stride, 1),
        ((0, 0), spec.pads[0], spec.pads[1], (0, 0)),
    )


def max_pool(
    x: jax.Array,
    window: int | tuple[int, int],
    *,
    stride: int | tuple[int, int] | None = None,
    padding: str | int | tuple = "VALID",
) -> jax.Array:
    """Reference `jaxcnn.max_pool`: ``lax.reduce_window(lax.max)``, padded with -inf."""
    spec = pool_spec("max_pool", x, window, stride, padding)
    return _window(x, spec, -jnp.inf, lax.max)


def avg_pool(
    x: jax.Array,
    window: int | tuple[int, int],
    *,
    stride: int | tuple[int, int] | None = None,
    padding: str | int | tuple = "VALID",
    count_include_pad: bool = True,
) -> jax.Array:
    """Reference `jaxcnn.avg_pool`: window sum over ``p1*p2`` (or over the real units)."""
    spec = pool_spec("avg_pool", x, window, stride, padding)
    if not isinstance(count_include_pad, bool):
        raise fail("avg_pool", f"`count_include_pad` must be a bool, got {count_include_pad!r}",
                   TypeError)
    total = _window(x, spec, 0, lax.add)
    if count_include_pad:
        return total / (spec.window[0] * spec.window[1])
    count = _window(jnp.ones((1, *x.shape[1:3], 1), x.dtype), spec, 0, lax.add)
    return total / count


def l2_pool(
    x: jax.Array,
    window: int | tuple[int, int],
    *,
    stride: int | tuple[int, int] | None = None,
    padding: str | int | tuple = "VALID",
) -> jax.Array:
    """Reference `jaxcnn.l2_pool`: ``sqrt(sum x^2)``, with gradient 0 where the norm is 0."""
    spec = pool_spec("l2_pool", x, window, stride, padding)
    sq = _window(x * x, spec, 0, lax.add)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, jnp.ones_like(sq))), 0)


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
    return x.reshape(x.shape[0], -1)


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
    return -jnp.sum(target * jax.nn.log_softmax(logits)) / logits.shape[0]
