r"""Pooling layers with the article's backward rules as `jax.custom_vjp`.

"At the pooling layer, forward propagation results in an N x N pooling block being reduced to a
single value - value of the 'winning unit'. [...] To keep track of the 'winning unit' its index
[is] noted during the forward pass and used for gradient routing during backpropagation":

* max pooling: the error "is just assigned to where it comes from - the 'winning unit'";
* average pooling: the error "is multiplied by 1/(N x N) and assigned to the whole pooling block".

`max_pool`, `avg_pool` and `l2_pool` pool H and W of NHWC arrays, ``(N, H, W, C) ->
(N, H_out, W_out, C)``, with ``H_out = (H + pad_top + pad_bottom - p1) // s1 + 1`` (and likewise
for W). The window ``(p1, p2)`` may be non-square; the stride defaults to the window (the article's
non-overlapping blocks); overlapping windows (stride < window) accumulate the deltas a unit receives
from every window that covers it. Padding as in `jaxcnn.conv2d`; max pool pads with -inf, avg and
l2 with 0, and the gradient of a padded unit is dropped.

Lowering (static, chosen by `_blockwise` from the spec): every function views its padded input as
``p1*p2`` window *taps*, tap ``t = a*p2 + b`` holding the unit at row ``a``, column ``b`` of each
window, stacked on a trailing axis ``(N, H_out, W_out, C, p1*p2)`` (`_gather`); the backward places
the per-tap deltas back and crops the padding (`_scatter`, the transpose of `_gather`).

* blockwise path (stride == window, the article's case): one reshape
  ``(N, H_out, p1, W_out, p2, C)`` and a transpose; rows/columns past the last full window are
  cropped (forward) and given zero gradient (backward).
* general path (overlapping or gapped windows): each tap is a strided ``lax.slice``; backward, tap
  ``t``'s deltas are put back at its strided positions by ``lax.pad`` (interior padding ``s - 1``)
  and the ``p1*p2`` results are added, which accumulates overlapping windows.

No variadic ``lax.reduce_window`` carrying argmax indices is used (it crashed under ``jit`` on CPU
inside a custom VJP, jax issue 9961). Every backward is written in differentiable ``lax``/``jnp``
ops, so ``jax.grad(jax.grad(...))`` works. Forward mode (``jax.jvp``) is not supported by
``jax.custom_vjp``; use `jaxcnn.reference` for it.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcnn import _lowering
from jaxcnn._checks import Pair, fail
from jaxcnn._specs import PoolSpec, pool_spec

__all__ = ["max_pool", "avg_pool", "l2_pool"]


# --------------------------------------------------------------------------------- lowering
class _Plan(NamedTuple):
    """Static configuration of one pooling call (hashable: a `custom_vjp` nondiff argument)."""

    spec: PoolSpec
    in_hw: Pair  # (H, W) of the unpadded input: the backward's output shape
    blockwise: bool  # True: reshape lowering; False: strided-slice lowering


def _blockwise(spec: PoolSpec) -> bool:
    """The reshape lowering applies when windows tile the padded input: stride == window (unless
    the private switch ``jaxcnn._lowering.force(pool="general")`` asks for the strided slices)."""
    return spec.stride == spec.window and _lowering.requested().pool != "general"


def _plan(spec: PoolSpec, x: jax.Array) -> _Plan:
    return _Plan(spec, (int(x.shape[1]), int(x.shape[2])), _blockwise(spec))


def _pad(x: jax.Array, spec: PoolSpec, value: float) -> jax.Array:
    """x padded by the spec's explicit pads with `value`, in x's dtype."""
    if spec.pads == ((0, 0), (0, 0)):
        return x
    (top, bottom), (left, right) = spec.pads
    return lax.pad(
        x, jnp.asarray(value, x.dtype), ((0, 0, 0), (top, bottom, 0), (left, right, 0), (0, 0, 0))
    )


def _gather(xp: jax.Array, plan: _Plan) -> jax.Array:
    """The window taps of the padded input `xp`: ``(N, H_out, W_out, C, p1*p2)``, row-major."""
    (p1, p2), (s1, s2), (ho, wo) = plan.spec.window, plan.spec.stride, plan.spec.out_hw
    n, _, _, c = xp.shape
    if plan.blockwise:
        blocks = xp[:, : ho * p1, : wo * p2, :].reshape(n, ho, p1, wo, p2, c)
        return blocks.transpose(0, 1, 3, 5, 2, 4).reshape(n, ho, wo, c, p1 * p2)
    taps = [
        lax.slice(
            xp,
            (0, a, b, 0),
            (n, a + (ho - 1) * s1 + 1, b + (wo - 1) * s2 + 1, c),
            (1, s1, s2, 1),
        )
        for a in range(p1)
        for b in range(p2)
    ]
    return jnp.stack(taps, axis=-1)


def _scatter(v: jax.Array, plan: _Plan) -> jax.Array:
    """Transpose of `_gather` followed by the padding crop: per-tap deltas
    ``(N, H_out, W_out, C, p1*p2)`` summed into ``(N, H, W, C)``."""
    (p1, p2), (s1, s2), (ho, wo) = plan.spec.window, plan.spec.stride, plan.spec.out_hw
    (top, _), (left, _) = plan.spec.pads
    h, w = plan.in_hw
    n, c = v.shape[0], v.shape[3]
    zero = jnp.zeros((), v.dtype)
    if plan.blockwise:
        blocks = v.reshape(n, ho, wo, c, p1, p2).transpose(0, 1, 4, 2, 5, 3)
        g = blocks.reshape(n, ho * p1, wo * p2, c)
        # g's rows are input rows [-top, ho*p1 - top): drop the top padding, then crop the
        # bottom padding or zero-fill the rows no window reached (negative pads crop)
        return lax.pad(
            g, zero, ((0, 0, 0), (-top, h + top - ho * p1, 0), (-left, w + left - wo * p2, 0),
                      (0, 0, 0)),
        )
    total = None
    for a in range(p1):
        for b in range(p2):
            # tap (a, b) of window (i, j) is padded unit (a + i*s1, b + j*s2)
            part = lax.pad(
                v[..., a * p2 + b],
                zero,
                (
                    (0, 0, 0),
                    (a - top, h + top - a - (ho - 1) * s1 - 1, s1 - 1),
                    (b - left, w + left - b - (wo - 1) * s2 - 1, s2 - 1),
                    (0, 0, 0),
                ),
            )
            total = part if total is None else total + part
    return total


# ---------------------------------------------------------------------------------- max pool
def _offset_dtype(spec: PoolSpec):
    return jnp.int8 if spec.window[0] * spec.window[1] <= 127 else jnp.int32


def _first_real_tap(plan: _Plan) -> np.ndarray | None:
    """Static ``(1, H_out, W_out, 1)`` offset of each window's first real (unpadded) unit, or None
    when no window touches the padding."""
    spec = plan.spec
    if spec.pads == ((0, 0), (0, 0)):
        return None
    firsts = []
    for win, s, (lo, _), out in zip(spec.window, spec.stride, spec.pads, spec.out_hw, strict=True):
        start = np.arange(out) * s - lo
        firsts.append(np.clip(-start, 0, win - 1))  # rows of padding before the first real row
    first = firsts[0][:, None] * spec.window[1] + firsts[1][None, :]
    return first.reshape(1, *spec.out_hw, 1)


class _MaxRes(NamedTuple):
    offsets: jax.Array  # (N, H_out, W_out, C) int8/int32: the winning unit's tap a*p2 + b


def _max_forward(x: jax.Array, plan: _Plan) -> tuple[jax.Array, jax.Array]:
    taps = _gather(_pad(x, plan.spec, -np.inf), plan)
    offsets = lax.argmax(taps, taps.ndim - 1, _offset_dtype(plan.spec))  # first max; NaN wins
    y = jnp.take_along_axis(taps, offsets[..., None], axis=-1)[..., 0]
    first = _first_real_tap(plan)
    if first is not None:
        # an all -inf window would otherwise be won by a padded unit and its delta dropped
        offsets = jnp.where(y == -np.inf, jnp.asarray(first, offsets.dtype), offsets)
    return y, offsets


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool(x: jax.Array, plan: _Plan) -> jax.Array:
    return _max_forward(x, plan)[0]


def _max_pool_fwd(x: jax.Array, plan: _Plan) -> tuple[jax.Array, _MaxRes]:
    y, offsets = _max_forward(x, plan)
    return y, _MaxRes(offsets)


def _max_pool_bwd(plan: _Plan, res: _MaxRes, delta: jax.Array) -> tuple[jax.Array]:
    (offsets,) = res
    p = plan.spec.window[0] * plan.spec.window[1]
    taps = lax.broadcasted_iota(offsets.dtype, (*offsets.shape, p), offsets.ndim)
    won = offsets[..., None] == taps  # one-hot of the winning unit
    return (_scatter(jnp.where(won, delta[..., None], jnp.zeros((), delta.dtype)), plan),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool(
    x: jax.Array,
    window: int | tuple[int, int],
    *,
    stride: int | tuple[int, int] | None = None,
    padding: str | int | tuple = "VALID",
) -> jax.Array:
    r"""Max pooling whose backward routes each delta to the window's "winning unit".

    Forward, for the window :math:`W_{ij}` of output ``(i, j)`` (per example and channel), the
    forward pass notes the index of the winning unit, a small integer offset
    :math:`t = a p_2 + b` within the window (int8 when :math:`p_1 p_2 \le 127`, else int32):

    .. math::

        y_{ij} = \max_{(m, n) \in W_{ij}} x_{mn}, \qquad
        (m^*_{ij}, n^*_{ij}) = \operatorname{argmax}_{(m, n) \in W_{ij}} x_{mn}

    Backward: "the error is just assigned to where it comes from - the winning unit"; every other
    unit of the block gets zero. With overlapping windows a unit sums what it wins:

    .. math::

        \frac{\partial L}{\partial x_{mn}} = \sum_{i, j} \delta_{ij}\,
            [\,(m, n) = (m^*_{ij}, n^*_{ij})\,]

    Conventions: ties go to the first maximum in row-major window order (PyTorch's rule, and
    what autodiff of ``lax.reduce_window(lax.max)`` does); a NaN in a window wins (the first NaN)
    and propagates to the output, and the delta is routed to it. The padding is -inf and never
    wins over a real unit: a window whose real units are all -inf sends its delta to its first
    real unit (the reference's autodiff drops it there, when the window starts with padding).

    Args:
      x: ``(N, H, W, C)`` floating-point input.
      window: ``p`` or ``(p1, p2)``.
      stride: ``s`` or ``(s1, s2)``; ``None`` (default) is the window (non-overlapping blocks).
      padding: ``"VALID"`` (default), ``"SAME"``, ``"FULL"``, an int, ``(ph, pw)`` or
        ``((top, bottom), (left, right))``; each amount smaller than the window.

    Returns:
      ``(N, H_out, W_out, C)`` of x's dtype, ``H_out = (H + top + bottom - p1) // s1 + 1``,
      ``W_out = (W + left + right - p2) // s2 + 1``.
    """
    spec = pool_spec("max_pool", x, window, stride, padding)
    x = jnp.asarray(x)
    return _max_pool(x, _plan(spec, x))


# ---------------------------------------------------------------------------------- avg pool
def _avg_divisor(plan: _Plan, count_include_pad: bool, dtype) -> jax.Array:
    """``p1*p2``, or (count_include_pad=False) the static number of real units of each window,
    ``(1, H_out, W_out, 1)`` — a constant computed with numpy from the spec."""
    spec = plan.spec
    if count_include_pad or spec.pads == ((0, 0), (0, 0)):
        return jnp.asarray(spec.window[0] * spec.window[1], dtype)
    counts = []
    for size, win, s, (lo, _), out in zip(
        plan.in_hw, spec.window, spec.stride, spec.pads, spec.out_hw, strict=True
    ):
        start = np.arange(out) * s - lo
        counts.append(np.minimum(start + win, size) - np.maximum(start, 0))
    count = counts[0][:, None] * counts[1][None, :]
    return jnp.asarray(count.reshape(1, *spec.out_hw, 1), dtype)


def _avg_forward(x: jax.Array, plan: _Plan, count_include_pad: bool) -> jax.Array:
    total = jnp.sum(_gather(_pad(x, plan.spec, 0.0), plan), axis=-1)
    return total / _avg_divisor(plan, count_include_pad, x.dtype)


class _AvgRes(NamedTuple):
    """Nothing: the backward depends on the static spec only."""


@partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _avg_pool(x: jax.Array, plan: _Plan, count_include_pad: bool) -> jax.Array:
    return _avg_forward(x, plan, count_include_pad)


def _avg_pool_fwd(x: jax.Array, plan: _Plan, count_include_pad: bool):
    return _avg_forward(x, plan, count_include_pad), _AvgRes()


def _avg_pool_bwd(
    plan: _Plan, count_include_pad: bool, res: _AvgRes, delta: jax.Array
) -> tuple[jax.Array]:
    del res
    share = delta / _avg_divisor(plan, count_include_pad, delta.dtype)
    p = plan.spec.window[0] * plan.spec.window[1]
    return (_scatter(jnp.broadcast_to(share[..., None], (*share.shape, p)), plan),)


_avg_pool.defvjp(_avg_pool_fwd, _avg_pool_bwd)


def avg_pool(
    x: jax.Array,
    window: int | tuple[int, int],
    *,
    stride: int | tuple[int, int] | None = None,
    padding: str | int | tuple = "VALID",
    count_include_pad: bool = True,
) -> jax.Array:
    r"""Average pooling whose backward spreads ``delta / (p1*p2)`` over the whole block.

    Forward, with :math:`|W_{ij}|` the divisor of window ``(i, j)``:

    .. math::

        y_{ij} = \frac{1}{|W_{ij}|} \sum_{(m, n) \in W_{ij}} x_{mn}

    Backward: "the error is multiplied by 1/(N x N) and assigned to the whole pooling block (all
    units get this same value)"; with overlapping windows a unit sums its shares:

    .. math::

        \frac{\partial L}{\partial x_{mn}} = \sum_{(i, j):\, (m, n) \in W_{ij}}
            \frac{\delta_{ij}}{|W_{ij}|}

    :math:`|W_{ij}| = p_1 p_2` (the article's :math:`N \times N`), or, with padding and
    ``count_include_pad=False``, the number of real (unpadded) units of the window — a constant
    of the static configuration. Padding is 0 and its share of the delta is dropped.

    Args:
      x: ``(N, H, W, C)`` floating-point input.
      window: ``p`` or ``(p1, p2)``.
      stride: ``s`` or ``(s1, s2)``; ``None`` (default) is the window (non-overlapping blocks).
      padding: ``"VALID"`` (default), ``"SAME"``, ``"FULL"``, an int, ``(ph, pw)`` or
        ``((top, bottom), (left, right))``; each amount smaller than the window.
      count_include_pad: divide by ``p1*p2`` (True, default) or by the real units (False).

    Returns:
      ``(N, H_out, W_out, C)`` of x's dtype, ``H_out = (H + top + bottom - p1) // s1 + 1``,
      ``W_out = (W + left + right - p2) // s2 + 1``.
    """
    spec = pool_spec("avg_pool", x, window, stride, padding)
    if not isinstance(count_include_pad, bool):
        raise fail("avg_pool", f"`count_include_pad` must be a bool, got {count_include_pad!r}",
                   TypeError)
    x = jnp.asarray(x)
    return _avg_pool(x, _plan(spec, x), count_include_pad)


# ----------------------------------------------------------------------------------- l2 pool
def _l2_forward(x: jax.Array, plan: _Plan) -> jax.Array:
    taps = _gather(_pad(x, plan.spec, 0.0), plan)
    sq = jnp.sum(taps * taps, axis=-1)
    positive = sq > 0
    # double `where`: y and its autodiff (used by second-order gradients) stay finite at 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, jnp.ones_like(sq))),
                     jnp.zeros_like(sq))


class _L2Res(NamedTuple):
    x: jax.Array  # (N, H, W, C): the gradient is proportional to x itself
    y: jax.Array  # (N, H_out, W_out, C): the window norms


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def _l2_pool(x: jax.Array, plan: _Plan) -> jax.Array:
    return _l2_forward(x, plan)


def _l2_pool_fwd(x: jax.Array, plan: _Plan) -> tuple[jax.Array, _L2Res]:
    y = _l2_forward(x, plan)
    return y, _L2Res(x, y)


def _l2_pool_bwd(plan: _Plan, res: _L2Res, delta: jax.Array) -> tuple[jax.Array]:
    x, y = res
    positive = y > 0
    share = jnp.where(positive, delta / jnp.where(positive, y, jnp.ones_like(y)),
                      jnp.zeros_like(y))
    p = plan.spec.window[0] * plan.spec.window[1]
    return (x * _scatter(jnp.broadcast_to(share[..., None], (*share.shape, p)), plan),)


_l2_pool.defvjp(_l2_pool_fwd, _l2_pool_bwd)


def l2_pool(
    x: jax.Array,
    window: int | tuple[int, int],
    *,
    stride: int | tuple[int, int] | None = None,
    padding: str | int | tuple = "VALID",
) -> jax.Array:
    r"""L2-norm pooling: the Euclidean norm of each window.

    Forward and backward (a unit sums over the windows that cover it):

    .. math::

        y_{ij} = \sqrt{\sum_{(m, n) \in W_{ij}} x_{mn}^2}, \qquad
        \frac{\partial L}{\partial x_{mn}} = \sum_{(i, j):\, (m, n) \in W_{ij}}
            \delta_{ij}\, \frac{x_{mn}}{y_{ij}}

    with the term taken as 0 where :math:`y_{ij} = 0` (an all-zero window: no NaN). The residuals
    are x and y (the gradient is proportional to x, so no smaller record exists). Padding is 0.

    Args:
      x: ``(N, H, W, C)`` floating-point input.
      window: ``p`` or ``(p1, p2)``.
      stride: ``s`` or ``(s1, s2)``; ``None`` (default) is the window (non-overlapping blocks).
      padding: ``"VALID"`` (default), ``"SAME"``, ``"FULL"``, an int, ``(ph, pw)`` or
        ``((top, bottom), (left, right))``; each amount smaller than the window.

    Returns:
      ``(N, H_out, W_out, C)`` of x's dtype, ``H_out = (H + top + bottom - p1) // s1 + 1``,
      ``W_out = (W + left + right - p2) // s2 + 1``.
    """
    spec = pool_spec("l2_pool", x, window, stride, padding)
    x = jnp.asarray(x)
    return _l2_pool(x, _plan(spec, x))
