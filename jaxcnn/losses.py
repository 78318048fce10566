r"""Losses: the article's squared error (Eq 9) and softmax cross-entropy.

Their gradients are the first deltas of backpropagation, ``dE/dy``, which the layers' rules
(Eq 10-22) carry back through the network. Both are `jax.custom_vjp` functions whose backward is
written in differentiable `jnp` ops (second-order reverse mode works), and both return a scalar
of the inputs' dtype with gradients of that dtype. Forward-mode (``jax.jvp``) is not supported by
`jax.custom_vjp`; use `jaxcnn.reference` for it.

Second order (`jaxcnn.curvature.second_order`): traced in that mode, a loss's backward seeds the
curvature pass with ``d2E/dy2`` instead of ``dE/dy``: Eq 9's ``1`` per output (``1/N`` for
``reduction="mean"``), and softmax cross-entropy's Hessian diagonal ``(p - p**2) / N`` per logit.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxcnn import curvature
from jaxcnn._specs import labels_check, reduction_check, squared_error_check

__all__ = ["squared_error", "softmax_cross_entropy"]


class _SquaredErrorResiduals(NamedTuple):
    """The prediction error ``y - t``: both gradients are (plus or minus) this."""

    error: jax.Array  # shape and dtype of y


class _CrossEntropyResiduals(NamedTuple):
    """Log-probabilities and the labels as given (integer ids are expanded in the backward)."""

    log_probs: jax.Array  # (N, K)
    labels: jax.Array  # int (N,) or float (N, K)


# -------------------------------------------------------------------------------- squared_error
def squared_error(y: jax.Array, t: jax.Array, *, reduction: str = "sum") -> jax.Array:
    r"""Squared error, Eq 9: ``E = 1/2 sum_p (t_p - y_p)^2``.

    .. math::
      E = \frac{1}{2} \sum_p (t_p - y_p)^2, \qquad
      \frac{\partial E}{\partial y_p} = y_p - t_p, \qquad
      \frac{\partial E}{\partial t_p} = t_p - y_p

    The sum runs over every element ``p`` of the batch. With ``reduction="mean"`` the loss and
    both gradients are divided by the batch size ``N = y.shape[0]`` (not by the number of
    elements). The backward rule is the formula above times the incoming cotangent.

    Args:
      y: network outputs ``(N, ...)``, floating point.
      t: targets, the same shape and dtype as ``y`` (no broadcasting).
      reduction: ``"sum"`` (Eq 9 as written) or ``"mean"`` (divided by ``N``); keyword-only.

    Returns:
      Scalar of the dtype of ``y``.

    Raises:
      TypeError: non-float ``y``/``t`` or different dtypes.
      ValueError: unknown ``reduction``, scalar ``y``, or shapes that differ.
    """
    reduction = reduction_check("squared_error", reduction)
    squared_error_check("squared_error", y, t)
    return (_squared_error_gn if curvature.active() else _squared_error)(y, t, reduction)


def _half_sum_of_squares(error: jax.Array, reduction: str) -> jax.Array:
    loss = 0.5 * jnp.sum(error * error)
    return loss / error.shape[0] if reduction == "mean" else loss


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _squared_error(y: jax.Array, t: jax.Array, reduction: str) -> jax.Array:
    return _half_sum_of_squares(t - y, reduction)


def _squared_error_fwd(
    y: jax.Array, t: jax.Array, reduction: str
) -> tuple[jax.Array, _SquaredErrorResiduals]:
    error = y - t
    return _half_sum_of_squares(error, reduction), _SquaredErrorResiduals(error)


def _squared_error_bwd(
    reduction: str, res: _SquaredErrorResiduals, g: jax.Array
) -> tuple[jax.Array, jax.Array]:
    (error,) = res
    scale = g / error.shape[0] if reduction == "mean" else g
    dy = error * scale
    return dy, -dy


_squared_error.defvjp(_squared_error_fwd, _squared_error_bwd)


def _squared_error_curvature_bwd(
    reduction: str, res: _SquaredErrorResiduals, g: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Second order (`jaxcnn.curvature`): Eq 9's ``d2E/dy_p2 = d2E/dt_p2 = 1`` (``1/N`` for the
    mean), times the incoming ``g``: the seed ``h`` of the curvature pass, shape of ``y``."""
    (error,) = res
    scale = g / error.shape[0] if reduction == "mean" else g
    h = jnp.full_like(error, 1) * scale
    return h, h


_squared_error_gn = functools.partial(jax.custom_vjp, nondiff_argnums=(2,))(_squared_error.fun)
_squared_error_gn.defvjp(_squared_error_fwd, _squared_error_curvature_bwd)


# ------------------------------------------------------------------------ softmax_cross_entropy
def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    r"""Batch mean of the cross-entropy between ``softmax(logits)`` and the labels.

    .. math::
      E = -\frac{1}{N} \sum_n \sum_k t_{n,k} \log \mathrm{softmax}(z_n)_k, \qquad
      \frac{\partial E}{\partial z_n} = \frac{\mathrm{softmax}(z_n) - t_n}{N}

    with ``z = logits`` and ``t`` the one-hot rows. ``log softmax`` is computed stably, as
    ``z - max(z) - log sum exp(z - max(z))``, and the gradient reuses it
    (``softmax = exp(log softmax)``).

    * Integer labels ``(N,)`` in ``[0, K)``: ``t`` is their one-hot encoding. They get no
      gradient (``jax.grad(..., argnums=1, allow_int=True)`` returns a ``float0`` zero). The
      range is checked when the labels are concrete; traced (jitted) labels out of range get an
      all-zero row, as ``jax.nn.one_hot`` gives: that example adds 0 to the loss and gets
      gradient 0.
    * Float labels ``(N, K)``: one-hot (or any target distribution). They are differentiable:
      ``dE/dt = -log softmax(z) / N``.

    The backward computes ``(softmax(z_n) sum_k t_{n,k} - t_n) / N``: the formula above for
    one-hot or probability rows, and still the exact gradient for rows that do not sum to 1.
    A logit of -inf (a masked class) with no target weight adds nothing (``0 log 0 = 0``), its
    label gradient 0: the loss stays finite, as for ``optax.softmax_cross_entropy_with_integer_labels``.

    Args:
      logits: ``(N, K)`` unnormalised scores, floating point.
      labels: integer class ids ``(N,)``, or float one-hot rows ``(N, K)`` of the logits' dtype.

    Returns:
      Scalar of the dtype of ``logits``.

    Raises:
      TypeError: non-float logits, bool labels, float labels of shape ``(N,)``, or float labels
        of another dtype.
      ValueError: wrong shapes, or concrete integer labels outside ``[0, K)``.
    """
    integer = labels_check("softmax_cross_entropy", logits, labels)
    if integer:
        labels = jnp.asarray(labels)
    return (_softmax_cross_entropy_gn if curvature.active() else _softmax_cross_entropy)(logits, labels)


def _log_softmax(logits: jax.Array) -> jax.Array:
    shifted = logits - lax.stop_gradient(jnp.max(logits, axis=1, keepdims=True))
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=1, keepdims=True))


def _targets(labels: jax.Array, num_classes: int, dtype) -> jax.Array:
    """One-hot rows for integer labels; float labels are the targets already."""
    if jnp.issubdtype(labels.dtype, jnp.integer):
        return jax.nn.one_hot(labels, num_classes, dtype=dtype)
    return labels


def _masked(log_probs: jax.Array, target: jax.Array) -> jax.Array:
    """The classes that take no part: no target weight and log-probability -inf (a logit masked
    with -inf; ``0 * -inf`` made the loss NaN)."""
    return (target == 0) & (log_probs == -jnp.inf)


def _weighted(log_probs: jax.Array, target: jax.Array) -> jax.Array:
    """`log_probs` where the target weighs them, 0 at the `_masked` classes."""
    return jnp.where(_masked(log_probs, target), 0, log_probs)


def _cross_entropy(log_probs: jax.Array, labels: jax.Array) -> jax.Array:
    n, k = log_probs.shape
    target = _targets(labels, k, log_probs.dtype)
    return -jnp.sum(target * _weighted(log_probs, target)) / n


@jax.custom_vjp
def _softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return _cross_entropy(_log_softmax(logits), labels)


def _softmax_cross_entropy_fwd(
    logits: jax.Array, labels: jax.Array
) -> tuple[jax.Array, _CrossEntropyResiduals]:
    log_probs = _log_softmax(logits)
    return _cross_entropy(log_probs, labels), _CrossEntropyResiduals(log_probs, labels)


def _softmax_cross_entropy_bwd(
    res: _CrossEntropyResiduals, g: jax.Array
) -> tuple[jax.Array, jax.Array | None]:
    log_probs, labels = res
    n, k = log_probs.shape
    scale = g / n
    target = _targets(labels, k, log_probs.dtype)
    masked = _masked(log_probs, target)
    # a masked class's weight, 0, is no input here either (its derivative, in a second-order
    # gradient through this rule, is 0 as in the reference)
    target = jnp.where(masked, 0, target)
    # (softmax - t) / N for rows summing to 1; exact for any row (an out-of-range traced label's
    # all-zero row adds 0 to the loss and gets gradient 0).
    mass = jnp.sum(target, axis=1, keepdims=True)
    dlogits = (jnp.exp(log_probs) * mass - target) * scale
    if jnp.issubdtype(labels.dtype, jnp.integer):
        # Integer inputs take no cotangent: None stands for the float0 zero custom_vjp expects.
        return dlogits, None
    return dlogits, -jnp.where(masked, 0, log_probs) * scale


_softmax_cross_entropy.defvjp(_softmax_cross_entropy_fwd, _softmax_cross_entropy_bwd)


def _softmax_cross_entropy_curvature_bwd(
    res: _CrossEntropyResiduals, g: jax.Array
) -> tuple[jax.Array, jax.Array | None]:
    """Second order (`jaxcnn.curvature`): the diagonal of the Hessian w.r.t. the logits,
    ``m_n (p - p**2) / N`` (``m_n = sum_k t_nk``, 1 for one-hot rows), times ``g``. The loss is
    linear in float labels: their curvature is 0."""
    log_probs, labels = res
    n, k = log_probs.shape
    p = jnp.exp(log_probs)
    mass = jnp.sum(_targets(labels, k, log_probs.dtype), axis=1, keepdims=True)
    h = (p - p * p) * mass * (g / n)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        return h, None
    return h, jnp.zeros_like(log_probs)


_softmax_cross_entropy_gn = jax.custom_vjp(_softmax_cross_entropy.fun)
_softmax_cross_entropy_gn.defvjp(_softmax_cross_entropy_fwd, _softmax_cross_entropy_curvature_bwd)
