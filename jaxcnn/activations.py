r"""Elementwise activations ``o = f(x)`` (Eq 8) with their derivative as the backward rule.

The article's delta recursion (Eq 20-22) ends in the factor :math:`f'(x^l_{i',j'})`::

    dE/dx^l = (delta^{l+1} * rot180{w^{l+1}}) . f'(x^l)

`jaxcnn.conv2d_input_grad` computes the bracket; the activations here supply the factor: each is a
`jax.custom_vjp` whose backward is ``delta * f'(x)`` for the incoming ``delta = dE/do``.

Residuals are small: the mask ``x > 0`` for `relu`/`leaky_relu` (one byte per unit, one bit for large
masks: `_PACK_UNITS`), the output ``y`` for `tanh`/`scaled_tanh`/`sigmoid`, whose derivatives are
functions of the output (``1 - y^2``, ``y (1 - y)``). The backward rules are plain `jnp` ops of
residuals computed from ``x``, so ``jax.grad(jax.grad(f))`` works and equals autodiff's second
derivative (`jaxcnn.reference`).
Forward-mode (``jax.jvp``) is not supported by `jax.custom_vjp`; use `jaxcnn.reference` for it.

Every function takes a floating-point array of any shape and returns one of the same shape and
dtype (bfloat16/float16 included); gradients keep the dtype too.

Second order (`jaxcnn.curvature.second_order`): traced in that mode each activation takes its
diagonal Gauss-Newton rule, ``h_x = f'(x)**2 h`` (the factor of Eq 20, squared) — for relu
``f'**2 = f'`` and the first-order rule serves.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcnn import curvature
from jaxcnn._checks import check_float
from jaxcnn._specs import negative_slope_check

__all__ = ["relu", "leaky_relu", "tanh", "scaled_tanh", "sigmoid"]

# LeCun's scaled tanh, f(x) = A tanh(S x) (LeCun et al. 1989; "Efficient BackProp", 1998).
_A = 1.7159
_S = 2.0 / 3.0


class _MaskResiduals(NamedTuple):
    """Where the unit was on the right branch (``x > 0``: f'(x) is 1 there): bool of x's shape, or
    for large masks their bits (`_pack_mask`)."""

    mask: jax.Array  # bool (shape of x), or uint8 (lead, ceil(rest / 8))


_SHIFTS = np.arange(8, dtype=np.uint8).reshape(1, 8, 1)  # bit j of byte i: unit j * m + i of its row
# Masks of at least this many units are kept as bits. Why bits: a mask XLA can recompute from ``x`` by
# one cheap compare is fused into the backward instead, keeping the float ``x`` alive from the forward
# pass to the backward; packing is a reduction, which XLA does not duplicate, so only the bits stay.
# Measured on a 2-core EPYC (training steps, medians of 21-41 interleaved, bool mask / bits): the
# benchmark's wide LeNet at batch 128 (its 1 -> 32 conv's output, 3.2M units) 75.1 / 58.5, 92.6 /
# 79.8, 84.6 / 65.7 and 100.4 / 79.7 ms (72.5 / 64.6 and 88.4 / 89.4 in a run where the bool mask's
# step faulted less), compiled temporaries 35.3 / 24.4 MiB. Above 32 MiB (the largest size it keeps
# for reuse) glibc maps XLA's temporary buffer afresh on every call unless its heap happens to have
# room, and the step page-faulted up to 37 MB each time (8,500-9,100 faults against 37-630; system
# time 28 / 4 ms a step). Below that the packing is an extra pass: at batch 96 (2.4M units; 26.6 /
# 18.4 MiB) 42.36 / 42.20 and 48.59 / 48.82 ms, at 64 (1.6M) 34.95 / 38.79, at 48 (1.2M) 23.41 /
# 26.77 and 25.52 / 25.73 (C1's taps written by a scan, `jaxcnn._lowering._REUSED_TAPS`); LeNet-5 at
# batch 32 (0.15M units, C1's taps fused into their consumers then) 4.87 / 5.23 and 5.13 / 5.29.
_PACK_UNITS = 1 << 21


def _mask_rows(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(lead, rest)``: the first axis (one row for a scalar or a vector) and the units per row."""
    return (shape[0], math.prod(shape[1:])) if len(shape) > 1 else (1, math.prod(shape))


def _pack_mask(mask: jax.Array) -> jax.Array:
    """A bool mask as bits, 8 units to a byte: ``(lead, m)`` uint8, ``m = ceil(rest / 8)``, bit ``j`` of
    byte ``i`` of row ``b`` the row-major unit ``j * m + i`` of ``mask[b]`` (`_mask_rows`; rows keep a
    batch axis whole, so a batch-sharded mask packs on each device)."""
    lead, rest = _mask_rows(mask.shape)
    m = -(-rest // 8)
    rows = jnp.pad(mask.reshape(lead, rest), ((0, 0), (0, 8 * m - rest)))
    bits = rows.reshape(lead, 8, m).astype(jnp.uint8) << _SHIFTS
    return lax.reduce(bits, np.uint8(0), lax.bitwise_or, (1,))


def _unpack_mask(bits: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """The bool mask of `shape` that `_pack_mask` packed into `bits`."""
    lead, rest = _mask_rows(shape)
    units = (bits[:, None, :] >> _SHIFTS) & np.uint8(1)  # (lead, 8, m)
    return (units.reshape(lead, 8 * bits.shape[1])[:, :rest] != 0).reshape(shape)


def _keep_mask(positive: jax.Array) -> _MaskResiduals:
    """The residual of a bool mask: its bits from `_PACK_UNITS` units on, else the mask (an array:
    of a Python number, ``x > 0`` is a Python bool)."""
    positive = jnp.asarray(positive)
    return _MaskResiduals(_pack_mask(positive) if positive.size >= _PACK_UNITS else positive)


def _kept_mask(res: _MaskResiduals, shape: tuple[int, ...]) -> jax.Array:
    """The bool mask of `shape` that `_keep_mask` kept."""
    return _unpack_mask(res.mask, shape) if res.mask.dtype == jnp.uint8 else res.mask


class _OutputResiduals(NamedTuple):
    """The activation's output; f'(x) is a function of it."""

    y: jax.Array  # shape and dtype of x


# ----------------------------------------------------------------------------------------- relu
def relu(x: jax.Array) -> jax.Array:
    r"""Rectified linear unit, with ``relu'(0) = 0``.

    .. math::
      \mathrm{relu}(x) = \max(x, 0), \qquad
      \mathrm{relu}'(x) = \begin{cases} 1 & x > 0 \\ 0 & x \le 0 \end{cases}

    Backward (the :math:`f'(x)` factor of Eq 20): ``dx = delta * relu'(x)``. At ``x = 0`` the
    derivative is taken from the left branch, 0, as in ``jax.nn.relu`` and PyTorch (see
    `Numerical influence of ReLU'(0) on backpropagation
    <https://dl.acm.org/doi/10.5555/3540261.3540297>`_). NaN propagates forward, ``relu(NaN) = NaN``
    (a NaN is no number ``<= 0``), and a NaN delta propagates backward; the derivative at a NaN
    input is taken as 0, as ``jax.nn.relu`` does (the mask ``x > 0`` is False there).

    Args:
      x: floating-point array of any shape.

    Returns:
      ``max(x, 0)``, same shape and dtype as ``x``.

    Raises:
      TypeError: ``x`` is not floating point.
    """
    check_float("relu", "x", x)
    return _relu(x)  # relu'(x)**2 = relu'(x): the same rule propagates d2E/dy2 (jaxcnn.curvature)


@jax.custom_vjp
def _relu(x: jax.Array) -> jax.Array:
    return jnp.where(x <= 0, jnp.zeros_like(x), x)


def _relu_fwd(x: jax.Array) -> tuple[jax.Array, _MaskResiduals]:
    return _relu(x), _keep_mask(x > 0)


def _relu_bwd(res: _MaskResiduals, delta: jax.Array) -> tuple[jax.Array]:
    positive = _kept_mask(res, jnp.shape(delta))
    return (jnp.where(positive, delta, jnp.zeros_like(delta)),)


_relu.defvjp(_relu_fwd, _relu_bwd)


# ----------------------------------------------------------------------------------- leaky_relu
def leaky_relu(x: jax.Array, negative_slope: float = 0.01) -> jax.Array:
    r"""Leaky rectified linear unit, with ``leaky_relu'(0) = negative_slope``.

    .. math::
      f(x) = \begin{cases} x & x > 0 \\ \alpha x & x \le 0 \end{cases}, \qquad
      f'(x) = \begin{cases} 1 & x > 0 \\ \alpha & x \le 0 \end{cases}

    with :math:`\alpha` = ``negative_slope``. Backward (the :math:`f'(x)` factor of Eq 20):
    ``dx = delta * f'(x)``. At ``x = 0`` the derivative is the slope, as in PyTorch's
    ``torch.nn.functional.leaky_relu``; ``jax.nn.leaky_relu`` tests ``x >= 0`` and so takes 1
    there instead.

    Args:
      x: floating-point array of any shape.
      negative_slope: :math:`\alpha`, a static Python number, finite in ``x``'s dtype (not
        differentiated; a new value means a new trace under ``jax.jit``).

    Returns:
      ``f(x)``, same shape and dtype as ``x``.

    Raises:
      TypeError: ``x`` is not floating point, or ``negative_slope`` is not a number.
      ValueError: ``negative_slope`` is NaN, infinite, or beyond ``x``'s dtype (1e5 in float16).
    """
    check_float("leaky_relu", "x", x)
    slope = negative_slope_check("leaky_relu", negative_slope, jnp.result_type(x))
    return (_leaky_relu_gn if curvature.active() else _leaky_relu)(x, slope)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _leaky_relu(x: jax.Array, negative_slope: float) -> jax.Array:
    return jnp.where(x > 0, x, negative_slope * x)


def _leaky_relu_fwd(x: jax.Array, negative_slope: float) -> tuple[jax.Array, _MaskResiduals]:
    positive = x > 0
    return jnp.where(positive, x, negative_slope * x), _keep_mask(positive)


def _leaky_relu_bwd(
    negative_slope: float, res: _MaskResiduals, delta: jax.Array
) -> tuple[jax.Array]:
    positive = _kept_mask(res, jnp.shape(delta))
    return (jnp.where(positive, delta, negative_slope * delta),)


_leaky_relu.defvjp(_leaky_relu_fwd, _leaky_relu_bwd)


def _leaky_relu_curvature_bwd(negative_slope: float, res: _MaskResiduals, h: jax.Array) -> tuple[jax.Array]:
    """Second order (`jaxcnn.curvature`): ``h * f'(x)**2``, 1 or ``negative_slope**2``."""
    positive = _kept_mask(res, h.shape)
    return (jnp.where(positive, h, (negative_slope * negative_slope) * h),)


_leaky_relu_gn = functools.partial(jax.custom_vjp, nondiff_argnums=(1,))(_leaky_relu.fun)
_leaky_relu_gn.defvjp(_leaky_relu_fwd, _leaky_relu_curvature_bwd)


# ----------------------------------------------------------------------------------------- tanh
def tanh(x: jax.Array) -> jax.Array:
    r"""Hyperbolic tangent, with the derivative taken from the output.

    .. math::
      y = \tanh(x), \qquad \tanh'(x) = 1 - \tanh^2(x) = 1 - y^2

    Backward (the :math:`f'(x)` factor of Eq 20): ``dx = delta * (1 - y^2)``, evaluated as
    ``(1 - y)(1 + y)`` (no cancellation where ``|y|`` is near 1); only ``y`` is kept from the
    forward pass.

    Args:
      x: floating-point array of any shape.

    Returns:
      ``tanh(x)``, same shape and dtype as ``x``.

    Raises:
      TypeError: ``x`` is not floating point.
    """
    check_float("tanh", "x", x)
    return (_tanh_gn if curvature.active() else _tanh)(x)


@jax.custom_vjp
def _tanh(x: jax.Array) -> jax.Array:
    return jnp.tanh(x)


def _tanh_fwd(x: jax.Array) -> tuple[jax.Array, _OutputResiduals]:
    y = jnp.tanh(x)
    return y, _OutputResiduals(y)


def _tanh_bwd(res: _OutputResiduals, delta: jax.Array) -> tuple[jax.Array]:
    (y,) = res
    return (delta * ((1 - y) * (1 + y)),)


_tanh.defvjp(_tanh_fwd, _tanh_bwd)


def _tanh_curvature_bwd(res: _OutputResiduals, h: jax.Array) -> tuple[jax.Array]:
    """Second order (`jaxcnn.curvature`): ``h * f'(x)**2``, the factor above squared."""
    (y,) = res
    slope = ((1 - y) * (1 + y))
    return (h * (slope * slope),)


_tanh_gn = jax.custom_vjp(_tanh.fun)
_tanh_gn.defvjp(_tanh_fwd, _tanh_curvature_bwd)


# ---------------------------------------------------------------------------------- scaled_tanh
def scaled_tanh(x: jax.Array) -> jax.Array:
    r"""LeCun's scaled hyperbolic tangent, ``1.7159 tanh(2x/3)``.

    .. math::
      y = A \tanh(S x), \qquad
      f'(x) = A S \left(1 - \tanh^2(S x)\right) = S \left(A - \frac{y^2}{A}\right)

    with :math:`A = 1.7159`, :math:`S = 2/3`, chosen so that ``f(1) = 1`` and ``f(-1) = -1``
    (the +-1 targets of LeCun et al. 1989 sit where the second derivative is largest, not in the
    saturated tails). Backward (the :math:`f'(x)` factor of Eq 20):
    ``dx = delta * S * (A - y^2 / A)``, evaluated as ``(S / A)(A - y)(A + y)``; only ``y`` is
    kept from the forward pass.

    Args:
      x: floating-point array of any shape.

    Returns:
      ``1.7159 * tanh(2x/3)``, same shape and dtype as ``x``.

    Raises:
      TypeError: ``x`` is not floating point.
    """
    check_float("scaled_tanh", "x", x)
    return (_scaled_tanh_gn if curvature.active() else _scaled_tanh)(x)


@jax.custom_vjp
def _scaled_tanh(x: jax.Array) -> jax.Array:
    return _A * jnp.tanh(x * _S)


def _scaled_tanh_fwd(x: jax.Array) -> tuple[jax.Array, _OutputResiduals]:
    y = _A * jnp.tanh(x * _S)
    return y, _OutputResiduals(y)


def _scaled_tanh_bwd(res: _OutputResiduals, delta: jax.Array) -> tuple[jax.Array]:
    (y,) = res
    return (delta * ((_S / _A) * (_A - y) * (_A + y)),)


_scaled_tanh.defvjp(_scaled_tanh_fwd, _scaled_tanh_bwd)


def _scaled_tanh_curvature_bwd(res: _OutputResiduals, h: jax.Array) -> tuple[jax.Array]:
    """Second order (`jaxcnn.curvature`): ``h * f'(x)**2``, the factor above squared."""
    (y,) = res
    slope = ((_S / _A) * (_A - y) * (_A + y))
    return (h * (slope * slope),)


_scaled_tanh_gn = jax.custom_vjp(_scaled_tanh.fun)
_scaled_tanh_gn.defvjp(_scaled_tanh_fwd, _scaled_tanh_curvature_bwd)


# -------------------------------------------------------------------------------------- sigmoid
def sigmoid(x: jax.Array) -> jax.Array:
    r"""Logistic sigmoid, with the derivative taken from the output.

    .. math::
      y = \sigma(x) = \frac{1}{1 + e^{-x}}, \qquad \sigma'(x) = \sigma(x)(1 - \sigma(x)) = y(1 - y)

    Backward (the :math:`f'(x)` factor of Eq 20): ``dx = delta * y * (1 - y)``; only ``y`` is
    kept from the forward pass.

    Args:
      x: floating-point array of any shape.

    Returns:
      ``sigmoid(x)`` (``lax.logistic``), same shape and dtype as ``x``.

    Raises:
      TypeError: ``x`` is not floating point.
    """
    check_float("sigmoid", "x", x)
    return (_sigmoid_gn if curvature.active() else _sigmoid)(x)


@jax.custom_vjp
def _sigmoid(x: jax.Array) -> jax.Array:
    return lax.logistic(x)


def _sigmoid_fwd(x: jax.Array) -> tuple[jax.Array, _OutputResiduals]:
    y = lax.logistic(x)
    return y, _OutputResiduals(y)


def _sigmoid_bwd(res: _OutputResiduals, delta: jax.Array) -> tuple[jax.Array]:
    (y,) = res
    return (delta * (y * (1 - y)),)


_sigmoid.defvjp(_sigmoid_fwd, _sigmoid_bwd)


def _sigmoid_curvature_bwd(res: _OutputResiduals, h: jax.Array) -> tuple[jax.Array]:
    """Second order (`jaxcnn.curvature`): ``h * f'(x)**2``, the factor above squared."""
    (y,) = res
    slope = (y * (1 - y))
    return (h * (slope * slope),)


_sigmoid_gn = jax.custom_vjp(_sigmoid.fun)
_sigmoid_gn.defvjp(_sigmoid_fwd, _sigmoid_curvature_bwd)
