r"""The fully connected layers at the end of the network, and the flatten that feeds them.

A dense layer is the convolution of Eq 7 with a kernel that covers the whole input: with
``k1 = H`` and ``k2 = W`` the output map is ``1 x 1`` and each of the ``U`` output units sees
every input unit. The article's backward formulas then lose their sums over positions:

* Eq 10-14 (``dE/dw_{m',n'} = sum_{i,j} delta_{i,j} o_{i+m',j+n'}``) keep the single output
  position ``i = j = 0``: ``dE/dw_{m',n'} = delta o_{m',n'}``, which summed over the batch is
  ``dw = x^T delta``;
* Eq 20 (``dE/dx_{i',j'} = sum_{m,n} delta_{i'-m,j'-n} w_{m,n}``) keeps the single term
  ``m = i', n = j'``: ``dx = delta w^T`` (the ``f'(x)`` factor is the activation's rule);
* the bias gradient is the deltas summed over the batch, ``db = sum_n delta_n``.

Second order (`jaxcnn.curvature.second_order`): traced in that mode `dense` takes its diagonal
Gauss-Newton rule, the formulas above with squared factors: ``h_x = h (w*w)^T``,
``h_w = (x*x)^T h``, ``h_b = sum_n h_n``; `flatten`'s reshape has a 0/1 Jacobian and its rule
serves unchanged.

Forward-mode (``jax.jvp``) is not supported by `jax.custom_vjp`; use `jaxcnn.reference` for it.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxcnn import curvature
from jaxcnn._checks import check_float, fail
from jaxcnn._specs import dense_check

__all__ = ["dense", "flatten"]


class _DenseResiduals(NamedTuple):
    """The layer's input and weights: ``dw`` needs ``x``, ``dx`` needs ``w``."""

    x: jax.Array  # (N, F)
    w: jax.Array  # (F, U)


# ---------------------------------------------------------------------------------------- dense
def dense(x: jax.Array, w: jax.Array, b: jax.Array | None = None) -> jax.Array:
    r"""Fully connected layer ``y = x w + b``.

    .. math::
      y_{n,u} = \sum_f x_{n,f} w_{f,u} + b_u

    Backward (Eq 13 and Eq 20 with a kernel covering the whole input, see the module docstring),
    for the output deltas ``delta = dE/dy`` of shape ``(N, U)``:

    .. math::
      \frac{\partial E}{\partial x} = \delta w^T, \qquad
      \frac{\partial E}{\partial w} = x^T \delta, \qquad
      \frac{\partial E}{\partial b} = \sum_n \delta_n

    Args:
      x: inputs ``(N, F)``, floating point.
      w: weights ``(F, U)``, same dtype as ``x``.
      b: ``None`` or a bias ``(U,)``, same dtype as ``x``.

    Returns:
      ``(N, U)`` array of the dtype of ``x``.

    Raises:
      TypeError: a non-float argument, or arguments of different dtypes.
      ValueError: wrong ranks, ``w.shape[0] != x.shape[1]``, or ``b.shape != (U,)``.
    """
    dense_check("dense", x, w, b)
    second = curvature.active()
    if b is None:
        return (_dense_gn if second else _dense)(x, w)
    return (_dense_bias_gn if second else _dense_bias)(x, w, b)


def _dense_input_weight_grads(
    res: _DenseResiduals, delta: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``dx = delta w^T`` (Eq 20) and ``dw = x^T delta`` (Eq 13), shared by both variants."""
    x, w = res
    return delta @ w.T, x.T @ delta


@jax.custom_vjp
def _dense(x: jax.Array, w: jax.Array) -> jax.Array:
    return x @ w


def _dense_fwd(x: jax.Array, w: jax.Array) -> tuple[jax.Array, _DenseResiduals]:
    return x @ w, _DenseResiduals(x, w)


def _dense_bwd(res: _DenseResiduals, delta: jax.Array) -> tuple[jax.Array, jax.Array]:
    return _dense_input_weight_grads(res, delta)


_dense.defvjp(_dense_fwd, _dense_bwd)


@jax.custom_vjp
def _dense_bias(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    return x @ w + b[None, :]


def _dense_bias_fwd(
    x: jax.Array, w: jax.Array, b: jax.Array
) -> tuple[jax.Array, _DenseResiduals]:
    return x @ w + b[None, :], _DenseResiduals(x, w)


def _dense_bias_bwd(
    res: _DenseResiduals, delta: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    dx, dw = _dense_input_weight_grads(res, delta)
    return dx, dw, jnp.sum(delta, axis=0)


_dense_bias.defvjp(_dense_bias_fwd, _dense_bias_bwd)


# ------------------------------------------------------------------- second order (curvature)
def _dense_curvature_bwd(res: _DenseResiduals, h: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eq 20 and Eq 13 with squared factors: ``h_x = h (w*w)^T`` ``(N, F)``, ``h_w = (x*x)^T h``
    ``(F, U)``, for ``h = d2E/dy2`` ``(N, U)`` (`jaxcnn.curvature`)."""
    x, w = res
    return h @ (w * w).T, (x * x).T @ h


def _dense_bias_curvature_bwd(res: _DenseResiduals, h: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    hx, hw = _dense_curvature_bwd(res, h)
    return hx, hw, jnp.sum(h, axis=0)


_dense_gn = jax.custom_vjp(_dense.fun)
_dense_gn.defvjp(_dense_fwd, _dense_curvature_bwd)
_dense_bias_gn = jax.custom_vjp(_dense_bias.fun)
_dense_bias_gn.defvjp(_dense_bias_fwd, _dense_bias_curvature_bwd)


# -------------------------------------------------------------------------------------- flatten
def flatten(x: jax.Array) -> jax.Array:
    r"""Flatten every example to a vector: ``(N, d1, d2, ...) -> (N, d1*d2*...)``.

    Row-major (C) order, so an NHWC feature map ``(N, H, W, C)`` becomes ``(N, H*W*C)`` with the
    channel index fastest. Backward: the deltas reshaped back to the input's shape (no
    arithmetic; this is how the MLP's deltas reach the last feature maps).

    Args:
      x: floating-point array ``(N, ...)`` with at least one (batch) dimension.

    Returns:
      ``(N, prod(x.shape[1:]))`` array of the dtype of ``x`` (``(N, 1)`` for ``x`` of shape
      ``(N,)``).

    Raises:
      TypeError: ``x`` is not floating point.
      ValueError: ``x`` is a scalar.
    """
    check_float("flatten", "x", x)
    if jnp.ndim(x) < 1:
        raise fail("flatten", f"`x` must have a batch dimension, got shape {jnp.shape(x)}")
    return _flatten(x, tuple(int(d) for d in jnp.shape(x)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _flatten(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return jnp.reshape(x, (shape[0], math.prod(shape[1:])))


def _flatten_fwd(x: jax.Array, shape: tuple[int, ...]) -> tuple[jax.Array, None]:
    return _flatten(x, shape), None


def _flatten_bwd(shape: tuple[int, ...], res: None, delta: jax.Array) -> tuple[jax.Array]:
    del res  # the shape is static; nothing else is needed
    return (jnp.reshape(delta, shape),)


_flatten.defvjp(_flatten_fwd, _flatten_bwd)
