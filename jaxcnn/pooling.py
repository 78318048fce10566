r"""Pooling layers in 1, 2 or 3 spatial dims with the article's backward rules as `jax.custom_vjp`.

"At the pooling layer, forward propagation results in an N x N pooling block being reduced to a
single value - value of the 'winning unit'. [...] To keep track of the 'winning unit' its index
[is] noted during the forward pass and used for gradient routing during backpropagation":

* max pooling: the error "is just assigned to where it comes from - the 'winning unit'";
* average pooling: the error "is multiplied by 1/(N x N) and assigned to the whole pooling block".

`max_pool`, `avg_pool` and `l2_pool` pool the spatial dims of channels-last arrays,
``(N, *size, C) -> (N, *out, C)`` with 1-3 spatial dims (NWC, NHWC, NDHWC) and
``out = (n + lo + hi - p) // s + 1`` per dim. The window ``p`` may differ per dim; the stride
defaults to the window (the article's non-overlapping blocks); overlapping windows (stride <
window) accumulate the deltas a unit receives from every window that covers it. Padding as in
`jaxcnn.conv`; max pool pads with -inf, avg and l2 with 0, and the gradient of a padded unit is
dropped.

Lowering (static, from the spec): every function views its padded input as ``P = prod(p)`` window
*taps*, tap ``t`` holding the unit at row-major offset ``t`` of each window. The forward pass of avg
and l2 pooling sums them as ``P`` strided slices ``(N, *out, C)`` elementwise (`_tap_slices`) or
reduces them stacked on a trailing axis ``(N, *out, C, P)`` (`_gather`), as measured fastest; max
pooling reduces stacked taps to the max and the first tap that reaches it, all ``P`` at once where
the windows tile, one spatial axis at a time where they do not (`_max_forward`). The backward places
the per-tap deltas back and crops the padding (`_scatter`, the transpose of `_gather`; `_spread` where
every tap gets its window's delta). All come from the shared window machinery `jaxcnn._windows`: a
reshape when the windows tile the input (stride == window, the article's case; `_windows.tile`),
strided slices otherwise (`_windows.gather`, `_windows.stack_along`; overlapping windows add up in
`_windows.scatter`, `_windows.spread`).

No variadic ``lax.reduce_window`` carrying argmax indices is used (it crashed under ``jit`` on CPU
inside a custom VJP, jax issue 9961). Every backward is written in differentiable ``lax``/``jnp``
ops, so ``jax.grad(jax.grad(...))`` works. Forward mode (``jax.jvp``) is not supported by
``jax.custom_vjp``; use `jaxcnn.reference` for it.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcnn import _lowering, _windows
from jaxcnn._checks import check_bool, check_neg_inf
from jaxcnn._specs import PoolSpec, pool_spec

__all__ = ["max_pool", "avg_pool", "l2_pool"]

Size = int | tuple[int, ...]
Padding = str | int | tuple


# --------------------------------------------------------------------------------- lowering
class _Plan(NamedTuple):
    """Static configuration of one pooling call (hashable: a `custom_vjp` nondiff argument)."""

    spec: PoolSpec
    tiled: bool  # True: the reshape lowering (windows tile the input); False: strided slices
    curvature: bool = False  # the backward propagates d2E/dy2 (`jaxcnn.curvature.second_order`)
    sliced: bool = False  # avg, l2: the forward sums per-tap slices elementwise; False: reduces `_gather`'s
    by_dim: bool = False  # max, forced: the backward one spatial dim at a time whatever the size

    @property
    def geometry(self) -> _windows.Geometry:
        s = self.spec
        return _windows.Geometry(s.size, s.pads, s.window, s.spacing, s.stride, s.out)

    @property
    def taps(self) -> int:
        return math.prod(self.spec.window)


# The max pool's forward pass (`_max_forward`) reduces the taps to the max and the winner's offset in
# one variadic reduction per stack of taps: over the reshaped window where the windows tile, one
# spatial axis at a time where they do not. Measured inside ``tanh(pool(relu(x + b)))``, value and
# both gradients, on a 2-core EPYC (ms, medians of 15 interleaved, temporaries in MiB; before:
# `lax.argmax` of all taps stacked and a gather of the max at it, or the taps' slices combined
# elementwise where that was faster, marked *; after: this): 3x3/2 windows on (32, 56, 56, 16)* 4.34 /
# 2.96 (24.9 / 20.3), on (8, 112, 112, 64)* 46.9 / 37.7 (98.9 / 81.2), on (128, 28, 28, 6) 4.36 / 1.71;
# 4x4/2 on (32, 28, 28, 64)* 7.28 / 3.40; 5x5/2 on (8, 56, 56, 32) 9.06 / 2.63 (27.3 / 17.0); 3x3/1 on
# (32, 56, 56, 64) 174.6 / 93.7 (296.6 / 202.1); 1-D 3/2 on (32, 4000, 16) 4.79 / 1.64 (16.6 / 4.9);
# 3x3x3/2 on (8, 16, 32, 32, 16) 36.3 / 31.4; the tiling 2x2 on (128, 28, 28, 6) 1.44 / 0.79, on (128,
# 28, 28, 32) 3.92 / 2.54, 2x2x2 on (8, 16, 32, 32, 16) 2.30 / 1.97 (temporaries equal); the training
# steps of wide LeNet 61.7 / 59.7 and LeNet-5 7.78 / 7.44. In other runs, one reduction over all the
# stacked taps of overlapping windows was slower than before where XLA fused their gather into it
# (5x5/2 above 11.2 against 6.4, 3x3x3/2 41.3 against 34.8), and the taps' slices combined one axis at
# a time slower still where XLA fused one axis's into the next (5x5/2 24.0).
# The sums of avg and l2 pooling, by per-tap slices (`_tap_slices`) or by the stacked taps' reduction
# (`_gather`; either way the backward spreads the deltas, `_spread`), in the same context, stacked /
# sliced (ms): avg 3x3/2 on (8, 112, 112, 64) 39.6 / 7.5, 3x3/1 on (32,
# 56, 56, 64) 124.3 / 35.1, 3x3/2 on (128, 28, 28, 6) 3.51 / 1.35, 3x3x3/2 3.91 / 1.25, 2x2 on (128, 28,
# 28, 32) 2.80 / 2.34, on (128, 10, 10, 64) 0.56 / 0.42, 1-D 2 on (32, 4000, 16) 3.13 / 2.15, 3/2 1.92 /
# 1.96, global 7x7 and 8x8 0.22 / 0.21, 0.18 / 0.17; l2 0.40-0.98 of the stacked time on eight of those
# shapes (its temporaries 1.7-9 MiB larger where the windows tile, smaller where they overlap).
_SLICED_SUM_TAPS = 64  # avg and l2 pool sliced: windows of at most this many taps (unrolled sums)
# The max pool's backward, for windows that do not tile in 2-D and 3-D, routes the deltas one spatial
# dim at a time (`_max_pool_bwd`) rather than through a one-hot of all the window's taps. In the same
# context (ms, medians of 15-31 interleaved, temporaries in MiB; one-hot / by dim, both after the
# forward pass above): 3x3/2 on (8, 112, 112, 64) 54.7 / 18.1 (81.2 / 31.6), on (32, 56, 56, 16) 5.49 / 3.96
# (20.3 / 8.1), on (32, 28, 28, 32) 1.42 / 1.24 (10.1 / 3.9); 5x5/2 on (8, 56, 56, 32) 3.84 / 1.81;
# 3x3/1 on (32, 56, 56, 64) 114.3 / 59.3 (202.1 / 85.8); 3x3x3/2 on (8, 16, 32, 32, 16) 34.8 / 6.1
# (60.0 / 12.9). Slower by dim on smaller inputs: 3x3/2 on (128, 28, 28, 6) 1.67 / 2.65, on (128, 14,
# 14, 16) 0.87 / 1.10, on (8, 56, 56, 6) 0.57 / 0.72; and on 4x4/2 (32, 28, 28, 64) 4.8 / 7.1 (in three
# of four runs).
_ROUTE_BY_DIM = 3 << 18  # input units (N * prod(size) * C) from which the backward goes by dim


def _plan(spec: PoolSpec, summed: bool = False) -> _Plan:
    """The reshape lowering applies when windows tile the padded input: stride == window (unless
    the private switch ``jaxcnn._lowering.force(pool="general")`` asks for the strided slices).
    The forward pass of an avg or l2 pool (`summed`) is sliced where that was measured faster
    (above), or always under ``force(pool="sliced")``; ``force(pool="stacked")`` never slices it.
    A max pool's is neither (`_max_forward`); ``force(pool="by_dim")`` takes the strided slices and
    routes its deltas one spatial dim at a time whatever the input's size (`_ROUTE_BY_DIM`)."""
    tiles = spec.stride == spec.window and spec.spacing == (1,) * spec.nd
    requested = _lowering.requested()
    measured = math.prod(spec.window) <= _SLICED_SUM_TAPS
    sliced = summed and (requested.pool == "sliced" or (measured and requested.pool != "stacked"))
    return _Plan(spec, tiles and requested.pool not in ("general", "by_dim"), requested.curvature, sliced,
                 requested.pool == "by_dim")


def _gather(x: jax.Array, plan: _Plan, pad_value: float) -> jax.Array:
    """The window taps of `x` padded with `pad_value`: ``(N, *out, C, P)``, row-major in the window."""
    g, nd = plan.geometry, plan.spec.nd
    xp = _windows.pad(x, plan.spec.pads, pad_value)
    taps = _windows.tile(xp, g) if plan.tiled else _windows.gather(xp, g, tuple(range(1, nd + 1)), nd + 2)
    return taps.reshape(*taps.shape[: nd + 2], plan.taps)


def _tap_slices(x: jax.Array, plan: _Plan, pad_value: float) -> list[jax.Array]:
    """The window taps of `x` padded with `pad_value` as ``P`` strided slices ``(N, *out, C)``,
    row-major in the window: a forward pass that combines them elementwise is one loop over the
    outputs, with no stacked copy of the taps (`_gather`'s, reduced by the other forward form)."""
    xp = _windows.pad(x, plan.spec.pads, pad_value)
    axes = tuple(range(1, plan.spec.nd + 1))
    return [_windows.tap(xp, plan.geometry, t, axes) for t in np.ndindex(*plan.spec.window)]


def _sliced_sum(x: jax.Array, plan: _Plan, term=lambda t: t) -> jax.Array:
    """``sum_t term(tap_t)`` over the window's tap slices of `x` padded with zeros (avg and l2 pooling),
    16-bit inputs in float32. Through `own_loop`: YNNPACK's fusion took the sum of slices with each
    slice written out first (fwd + bwd of a 2x2 avg pool on (128, 28, 28, 32): 10.4 ms, 1.9 this way)."""
    acc = _lowering.acc_dtype(x.dtype)
    return _lowering.own_loop(_windows.total(term(t.astype(acc)) for t in _tap_slices(x, plan, 0.0)))


def _scatter(v: jax.Array, plan: _Plan) -> jax.Array:
    """Transpose of `_gather` followed by the padding crop: per-tap values ``(N, *out, C, P)`` summed
    into ``(N, *size, C)``."""
    g, nd = plan.geometry, plan.spec.nd
    v = v.reshape(*v.shape[:-1], *plan.spec.window)
    return _windows.untile(v, g) if plan.tiled else _windows.scatter(v, g, tuple(range(1, nd + 1)), nd + 2)


def _spread(v: jax.Array, plan: _Plan) -> jax.Array:
    """`_scatter` of per-window values ``(N, *out, C)`` given to every tap of their window (the
    backward of avg and l2 pooling): ``(N, *size, C)``, without the per-tap copy where the windows
    do not tile (`_windows.spread`, one axis at a time)."""
    if plan.tiled:
        return _scatter(jnp.broadcast_to(v[..., None], (*v.shape, plan.taps)), plan)
    return _windows.spread(v, plan.geometry, tuple(range(1, plan.spec.nd + 1)))


def _per_window(plan: _Plan, values: list[np.ndarray], combine, since: int = 0) -> np.ndarray:
    """A static ``(1, *out, 1)`` array from one numpy vector per spatial dim (outer product by
    `combine`); ``(1, 1, ..., *out[since:], 1)`` from the vectors of dims `since`, ... only."""
    result = values[since]
    for v in values[since + 1:]:
        result = combine(result[..., None], v)
    return result.reshape(1, *(1,) * since, *plan.spec.out[since:], 1)


def _window_starts(plan: _Plan) -> list[np.ndarray]:
    """The first unit of each window per dim, in unpadded coordinates (negative: in the padding)."""
    s = plan.spec
    return [np.arange(o) * st - lo for o, st, (lo, _) in zip(s.out, s.stride, s.pads, strict=True)]


# ---------------------------------------------------------------------------------- max pool
def _offset_dtype(plan: _Plan):
    return jnp.int8 if plan.taps <= 127 else jnp.int32


def _first_real_tap(plan: _Plan, since: int = 0) -> np.ndarray | None:
    """Static ``(1, *out, 1)`` offset of each window's first real (unpadded) unit, or None when no
    window touches the padding; with `since`, its offset along dims `since`, ... only, ``(1, 1, ...,
    *out[since:], 1)`` (after `_max_forward` has reduced those dims)."""
    s = plan.spec
    if all(p == (0, 0) for p in s.pads[since:]):
        return None
    firsts = [np.clip(-(start // d), 0, win - 1)  # the first tap t with start + d*t >= 0
              for start, win, d in zip(_window_starts(plan), s.window, s.spacing, strict=True)]
    return _per_window(plan, [f * _step(plan, i) for i, f in enumerate(firsts)], np.add, since)


def _step(plan: _Plan, i: int) -> int:
    """The row-major offset of one tap along spatial dim `i` of the window."""
    return math.prod(plan.spec.window[i + 1:])


class _MaxRes(NamedTuple):
    offsets: jax.Array  # (N, *out, C) int8/int32: the winning unit's row-major offset in its window
    # windows that do not tile, 2-D and 3-D, inputs of `_ROUTE_BY_DIM` units or more (or forced):
    # after reducing dims i, i+1, ... (i >= 1) of the windows, each one's winning offset along them,
    # (N, *size[:i], *out[i:], C) (`_max_forward`), for the backward one dim at a time (`_max_pool_bwd`)
    along: tuple[jax.Array, ...] = ()


def _first_max(a: tuple[jax.Array, jax.Array], b: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """`lax.argmax`'s reduction step on (value, offset) pairs: ``lax.max`` of the values (a NaN
    over a number; +0 over -0, as the reference's ``reduce_window(lax.max)``) and the offset of the
    larger value, of equal values (two NaNs, +0 and -0 too) the smaller (the first tap in row-major
    order)."""
    (u, i), (v, j) = a, b
    u_nan, v_nan, first = u != u, v != v, i < j
    take = (u_nan & (~v_nan | first)) | (~u_nan & ~v_nan & ((u > v) | ((u == v) & first)))
    return lax.max(u, v), lax.select(take, i, j)


@jax.custom_jvp
def _max_of_taps(values: jax.Array, offsets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The max over the trailing taps axis of `values` ``(..., k)`` and the offset (from `offsets`,
    the same shape, distinct along that axis) of the first tap that reaches it, a NaN first: one
    variadic reduction, computing both (`lax.argmax` computes the max too, but returns only the
    index, and a gather at it re-read the value)."""
    init = (jnp.array(-np.inf, values.dtype), jnp.array(0, offsets.dtype))
    return lax.reduce((values, offsets), init, _first_max, (values.ndim - 1,))


@_max_of_taps.defjvp
def _max_of_taps_jvp(primals, tangents):
    """The max's tangent is its winning tap's (a second-order rule differentiates the forward pass;
    jax has no derivative of a reduction of several operands)."""
    values, offsets = primals
    y, won = _max_of_taps(values, offsets)
    tap = jnp.argmax(offsets == won[..., None], axis=-1)[..., None]  # the winner's place on the axis
    dy = jnp.take_along_axis(tangents[0], tap, axis=-1)[..., 0]
    return (y, won), (dy, np.zeros(won.shape, jax.dtypes.float0))


def _max_forward(x: jax.Array, plan: _Plan) -> tuple[jax.Array, _MaxRes]:
    """Each window's max and the row-major offset of its first winning tap. Tiling windows: one
    reduction over the reshaped taps (`_gather`, no copy). Overlapping or strided ones: separably, the
    last spatial dim first, one reduction over that dim's stacked taps at a time, each tap's offset
    ``m * prod(window[i+1:])`` plus the offset it won with along the later dims (ties and NaNs go to
    the smaller offset, so to the first tap in row-major order as in the one reduction); the offsets
    of each stage but the last are kept for the backward (`_MaxRes.along`)."""
    dtype, s = _offset_dtype(plan), plan.spec
    if plan.tiled:
        stacked = _gather(x, plan, -np.inf)
        y, offsets = _max_of_taps(stacked, lax.broadcasted_iota(dtype, stacked.shape, stacked.ndim - 1))
        return y, _MaxRes(_real_winner(y, offsets, plan, 0))
    keep = s.nd > 1 and (plan.by_dim or x.size >= _ROUTE_BY_DIM)  # the stages' winners, for the backward
    y, offsets, along = _windows.pad(x, s.pads, -np.inf), None, []
    for i in reversed(range(s.nd)):
        values = _windows.stack_along(y, plan.geometry, i, 1 + i, y.ndim)
        step = lax.broadcasted_iota(dtype, values.shape, values.ndim - 1) * jnp.asarray(_step(plan, i), dtype)
        before = 0 if offsets is None else _windows.stack_along(offsets, plan.geometry, i, 1 + i, y.ndim)
        y, offsets = _max_of_taps(values, step + before)
        if i == 0 or keep:  # an earlier stage's -inf windows lose to any finite one, or are overridden last
            offsets = _real_winner(y, offsets, plan, i)
        if i and keep:  # the padded units of dims < i are no one's winners
            along.insert(0, _windows.crop(offsets, s.pads[:i], s.size[:i]))
    return y, _MaxRes(offsets, tuple(along))


def _real_winner(y: jax.Array, offsets: jax.Array, plan: _Plan, since: int) -> jax.Array:
    """`offsets` (over dims `since`, ...) with each all -inf window's first real unit as its winner:
    it would otherwise be won by a padded unit and its delta dropped."""
    first = _first_real_tap(plan, since)
    return offsets if first is None else jnp.where(y == -np.inf, jnp.asarray(first, offsets.dtype), offsets)


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool(x: jax.Array, plan: _Plan) -> jax.Array:
    return _max_forward(x, plan)[0]


def _max_pool_fwd(x: jax.Array, plan: _Plan) -> tuple[jax.Array, _MaxRes]:
    return _max_forward(x, plan)


def _max_pool_bwd(plan: _Plan, res: _MaxRes, delta: jax.Array) -> tuple[jax.Array]:
    """Each delta to its window's winner (one-hot over the taps, placed back by `_scatter`); where the
    forward pass kept `_MaxRes.along` (see `_ROUTE_BY_DIM`), one spatial dim at a time, the first
    first: along dim i each delta goes to its window's winning tap there, then on from there with
    the winners of dims i+1, ..., so no one-hot of all ``P`` taps is made.

    Also the second-order rule (`jaxcnn.curvature`): the Jacobian is 0/1, so J**2 = J and
    h = d2E/dy2 is routed to the winner exactly as the delta is."""
    zero = jnp.zeros((), delta.dtype)
    if not res.along:  # windows that tile, 1-D ones and small inputs
        taps = lax.broadcasted_iota(res.offsets.dtype, (*res.offsets.shape, plan.taps), res.offsets.ndim)
        return (_scatter(jnp.where(res.offsets[..., None] == taps, delta[..., None], zero), plan),)
    for i, offsets in enumerate((res.offsets, *res.along)):
        # the winning tap along dim i. (The remainder is redundant: the offsets span dims i, i+1, ...
        # only. But without it XLA fused the padding's -inf test of `_real_winner` into this routing,
        # keeping the float32 maxima of the earlier stages alive: 3x3/2 windows on (8, 112, 112, 64)
        # held 50.8 MiB of temporaries and ran 40.6 ms, against 31.6 MiB and 21.0 ms with it.)
        won = offsets // _step(plan, i) % plan.spec.window[i]
        taps = lax.broadcasted_iota(won.dtype, (*won.shape, plan.spec.window[i]), won.ndim)
        routed = jnp.where(won[..., None] == taps, delta[..., None], zero)
        delta = _windows.scatter(routed, plan.geometry.dim(i), (1 + i,), won.ndim)
    return (delta,)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool(x: jax.Array, window: Size, *, stride: Size | None = None, padding: Padding = "VALID",
             dilation: Size = 1, ceil_mode: bool = False) -> jax.Array:
    r"""Max pooling whose backward routes each delta to the window's "winning unit".

    Forward, for the window :math:`W_i` of output ``i`` (per example and channel; one index per
    spatial dim), the forward pass notes the index of the winning unit, a small integer offset
    ``t`` within the window, row-major (int8 when the window has at most 127 units, else int32):

    .. math::

        y_{i} = \max_{u \in W_{i}} x_{u}, \qquad u^*_{i} = \operatorname{argmax}_{u \in W_{i}} x_{u}

    Backward: "the error is just assigned to where it comes from - the winning unit"; every other
    unit of the block gets zero. With overlapping windows a unit sums what it wins:

    .. math::

        \frac{\partial L}{\partial x_{u}} = \sum_{i} \delta_{i}\, [\,u = u^*_{i}\,]

    Conventions: ties go to the first maximum in row-major window order (PyTorch's rule, and
    what autodiff of ``lax.reduce_window(lax.max)`` does); a NaN in a window wins (the first NaN)
    and propagates to the output, and the delta is routed to it. The padding is -inf and never
    wins over a real unit: a window whose real units are all -inf sends its delta to its first
    real unit (the reference's autodiff drops it there, when the window starts with padding).

    Args:
      x: ``(N, *size, C)`` floating-point input, 1-3 spatial dims.
      window: ``p`` or one per spatial dim.
      stride: ``s`` or one per spatial dim; ``None`` (default) is the window (non-overlapping blocks).
      padding: ``"VALID"`` (default), ``"SAME"``, ``"FULL"``, an int, one int per dim or one
        ``(lo, hi)`` pair per dim; each amount smaller than the window.
      dilation: distance between a window's taps (int or one per dim): the window spans
        ``e = d*(p - 1) + 1`` units (PyTorch's ``max_pool{1,2,3}d(dilation=...)``).
      ceil_mode: round the output size up (PyTorch's rule, below); the overhang is padding, and a
        window may be wider than the padded input so long as it starts inside it.

    Returns:
      ``(N, *out, C)`` of x's dtype, ``out = (n + lo + hi - e) // s + 1`` per dim; with `ceil_mode`
      ``ceil((n + lo + hi - e) / s) + 1``, less one where the last window would start past the input
      and the low padding.
    """
    spec = pool_spec("max_pool", x, window, stride, padding, dilation=dilation, ceil_mode=ceil_mode)
    check_neg_inf("max_pool", "x", x)
    return _max_pool(jnp.asarray(x), _plan(spec))


# ---------------------------------------------------------------------------------- avg pool
def _avg_divisor(plan: _Plan, count_include_pad: bool, dtype) -> jax.Array:
    """``prod(p)``, or (count_include_pad=False) the static number of real units of each window,
    ``(1, *out, 1)`` — a constant computed with numpy from the spec."""
    s = plan.spec
    if all(p == (0, 0) for p in s.pads) or (count_include_pad and s.extra == (0,) * s.nd):
        return jnp.asarray(plan.taps, dtype)
    if count_include_pad:  # the padding counts, ceil_mode's overhang does not (PyTorch's rule)
        counts = [np.minimum(start + win, n + hi - v) - start for start, win, n, (_, hi), v in zip(
            _window_starts(plan), s.window, s.size, s.pads, s.extra, strict=True)]
    else:
        counts = [np.minimum(start + win, n) - np.maximum(start, 0)
                  for start, win, n in zip(_window_starts(plan), s.window, s.size, strict=True)]
    return jnp.asarray(_per_window(plan, counts, np.multiply), dtype)


def _avg_forward(x: jax.Array, plan: _Plan, count_include_pad: bool) -> jax.Array:
    """Summed and divided in float32 for 16-bit inputs (a float16 sum of 81 units of 1000, or a
    divisor of 65536, was inf), then cast back."""
    acc = _lowering.acc_dtype(x.dtype)
    divisor = _avg_divisor(plan, count_include_pad, acc)
    if not plan.sliced:
        total = jnp.sum(_gather(x, plan, 0.0).astype(acc), axis=-1)
    else:
        total = _sliced_sum(x, plan)
    return (total / divisor).astype(x.dtype)


class _AvgRes(NamedTuple):
    """Nothing: the backward depends on the static spec only."""


@partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _avg_pool(x: jax.Array, plan: _Plan, count_include_pad: bool) -> jax.Array:
    return _avg_forward(x, plan, count_include_pad)


def _avg_pool_fwd(x: jax.Array, plan: _Plan, count_include_pad: bool):
    return _avg_forward(x, plan, count_include_pad), _AvgRes()


def _avg_pool_bwd(plan: _Plan, count_include_pad: bool, res: _AvgRes, delta: jax.Array) -> tuple[jax.Array]:
    del res
    if plan.curvature:
        return _avg_pool_curvature_bwd(plan, count_include_pad, delta)
    acc = _lowering.acc_dtype(delta.dtype)
    share = (delta.astype(acc) / _avg_divisor(plan, count_include_pad, acc)).astype(delta.dtype)
    return (_spread(share, plan),)


def _avg_pool_curvature_bwd(plan: _Plan, count_include_pad: bool, h: jax.Array) -> tuple[jax.Array]:
    """The diagonal Gauss-Newton rule (`jaxcnn.curvature`): the article's ``1/(N x N)`` squared,
    ``h / |W|**2`` spread over the block (``h (N, *out, C)`` -> ``(N, *size, C)``)."""
    acc = _lowering.acc_dtype(h.dtype)
    divisor = _avg_divisor(plan, count_include_pad, acc)
    share = (h.astype(acc) / (divisor * divisor)).astype(h.dtype)
    return (_spread(share, plan),)


_avg_pool.defvjp(_avg_pool_fwd, _avg_pool_bwd)


def avg_pool(x: jax.Array, window: Size, *, stride: Size | None = None, padding: Padding = "VALID",
             count_include_pad: bool = True, ceil_mode: bool = False) -> jax.Array:
    r"""Average pooling whose backward spreads ``delta / prod(p)`` over the whole block.

    Forward, with :math:`|W_i|` the divisor of window ``i``:

    .. math::

        y_{i} = \frac{1}{|W_{i}|} \sum_{u \in W_{i}} x_{u}

    Backward: "the error is multiplied by 1/(N x N) and assigned to the whole pooling block (all
    units get this same value)"; with overlapping windows a unit sums its shares:

    .. math::

        \frac{\partial L}{\partial x_{u}} = \sum_{i:\, u \in W_{i}} \frac{\delta_{i}}{|W_{i}|}

    :math:`|W_i| = \prod p` (the article's :math:`N \times N`), or, with padding and
    ``count_include_pad=False``, the number of real (unpadded) units of the window — a constant
    of the static configuration. Padding is 0 and its share of the delta is dropped.

    Args:
      x: ``(N, *size, C)`` floating-point input, 1-3 spatial dims.
      window: ``p`` or one per spatial dim.
      stride: ``s`` or one per spatial dim; ``None`` (default) is the window (non-overlapping blocks).
      padding: ``"VALID"`` (default), ``"SAME"``, ``"FULL"``, an int, one int per dim or one
        ``(lo, hi)`` pair per dim; each amount smaller than the window.
      count_include_pad: divide by ``prod(p)`` (True, default) or by the real units (False).
      ceil_mode: round the output size up as `max_pool` does; the overhang past the padding is never
        counted in the divisor (PyTorch's rule).

    Returns:
      ``(N, *out, C)`` of x's dtype, ``out = (n + lo + hi - p) // s + 1`` per dim; with `ceil_mode`
      as `max_pool`'s.
    """
    spec = pool_spec("avg_pool", x, window, stride, padding, ceil_mode=ceil_mode)
    count_include_pad = check_bool("avg_pool", "count_include_pad", count_include_pad)
    return _avg_pool(jnp.asarray(x), _plan(spec, summed=True), count_include_pad)


# ----------------------------------------------------------------------------------- l2 pool
def _l2_forward(x: jax.Array, plan: _Plan) -> jax.Array:
    if plan.sliced:
        sq = _sliced_sum(x, plan, jnp.square)
    else:  # 16-bit inputs squared and summed in float32 (200**2 * 4 overflowed float16)
        taps = _gather(x, plan, 0.0).astype(_lowering.acc_dtype(x.dtype))
        sq = jnp.sum(taps * taps, axis=-1)
    zero = sq == 0
    # double `where`: y and its autodiff (used by second-order gradients) stay finite at 0; a NaN
    # in the window is no zero, so it propagates
    y = jnp.where(zero, jnp.zeros_like(sq), jnp.sqrt(jnp.where(zero, jnp.ones_like(sq), sq)))
    return y.astype(x.dtype)


class _L2Res(NamedTuple):
    x: jax.Array  # (N, *size, C): the gradient is proportional to x itself
    y: jax.Array  # (N, *out, C): the window norms


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def _l2_pool(x: jax.Array, plan: _Plan) -> jax.Array:
    return _l2_forward(x, plan)


def _l2_pool_fwd(x: jax.Array, plan: _Plan) -> tuple[jax.Array, _L2Res]:
    y = _l2_forward(x, plan)
    return y, _L2Res(x, y)


def _l2_pool_bwd(plan: _Plan, res: _L2Res, delta: jax.Array) -> tuple[jax.Array]:
    if plan.curvature:
        return _l2_pool_curvature_bwd(plan, res, delta)
    x, y = res
    zero = y == 0
    share = jnp.where(zero, jnp.zeros_like(y), delta / jnp.where(zero, jnp.ones_like(y), y))
    return (x * _spread(share, plan),)


def _l2_pool_curvature_bwd(plan: _Plan, res: _L2Res, h: jax.Array) -> tuple[jax.Array]:
    """The diagonal Gauss-Newton rule (`jaxcnn.curvature`): ``h_x = (x / y)**2 h``, summed over
    the windows covering a unit, 0 where ``y == 0``."""
    x, y = res
    zero = y == 0
    share = jnp.where(zero, jnp.zeros_like(y), h / jnp.where(zero, jnp.ones_like(y), y * y))
    return ((x * x) * _spread(share, plan),)


_l2_pool.defvjp(_l2_pool_fwd, _l2_pool_bwd)


def l2_pool(x: jax.Array, window: Size, *, stride: Size | None = None, padding: Padding = "VALID",
            ceil_mode: bool = False) -> jax.Array:
    r"""L2-norm pooling: the Euclidean norm of each window.

    Forward and backward (a unit sums over the windows that cover it):

    .. math::

        y_{i} = \sqrt{\sum_{u \in W_{i}} x_{u}^2}, \qquad
        \frac{\partial L}{\partial x_{u}} = \sum_{i:\, u \in W_{i}} \delta_{i}\, \frac{x_{u}}{y_{i}}

    with the term taken as 0 where :math:`y_{i} = 0` (an all-zero window: no NaN). A NaN in a
    window makes its norm NaN (and the gradients of its units). The residuals are x and y (the
    gradient is proportional to x, so no smaller record exists). Padding is 0.

    Args:
      x: ``(N, *size, C)`` floating-point input, 1-3 spatial dims.
      window: ``p`` or one per spatial dim.
      stride: ``s`` or one per spatial dim; ``None`` (default) is the window (non-overlapping blocks).
      padding: ``"VALID"`` (default), ``"SAME"``, ``"FULL"``, an int, one int per dim or one
        ``(lo, hi)`` pair per dim; each amount smaller than the window.
      ceil_mode: round the output size up as `max_pool` does; the overhang past the padding adds
        nothing to a window's sum of squares.

    Returns:
      ``(N, *out, C)`` of x's dtype, ``out = (n + lo + hi - p) // s + 1`` per dim; with `ceil_mode`
      as `max_pool`'s.
    """
    spec = pool_spec("l2_pool", x, window, stride, padding, ceil_mode=ceil_mode)
    return _l2_pool(jnp.asarray(x), _plan(spec, summed=True))
