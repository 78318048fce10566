r"""Strided windows over the 1-3 spatial axes of an array: pad, take a tap, place it back (private).

Written once, used by the convolution's matmul lowering (`jaxcnn._lowering`) and by pooling.
A window geometry (`Geometry`) is the input extent, the padding, the taps per axis ``k``, their
spacing ``d`` (the kernel dilation; 1 for a pool), the stride ``s`` and the outputs ``o``. The *tap*
``t = (t_1, ..., t_nd)`` of the padded input is the strided slice

    X_t[b, i_1, ..., i_nd, c] = x_pad[b, s_1 i_1 + d_1 t_1, ..., s_nd i_nd + d_nd t_nd, c]

(`tap`; `tap_at` for a traced ``t``), and `place` is its transpose composed with the padding crop:
``z[b, i, c]`` goes to unit ``s i + d t - lo`` of the unpadded input, zeros elsewhere (``lax.pad``
with interior padding ``s - 1``; a negative low pad crops units that fall in the padding, whose
gradients are dropped).
`gather` stacks all taps on ``nd`` new axes, separably (``k_1 + ... + k_nd`` slices rather than
``k_1 * ... * k_nd``); `scatter` is its transpose, the sum of the placed taps, separably too;
`spread` is the transpose of the window sums (each window's value given to all its units), one axis
at a time.
Every function is plain differentiable ``lax`` code.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxcnn._checks import Ints, Pads


class Geometry(NamedTuple):
    """Windows along the spatial axes (one entry per axis)."""

    size: Ints  # unpadded input extent
    pads: Pads  # (lo, hi)
    taps: Ints  # k: taps per window
    spacing: Ints  # d: distance between taps (kernel dilation)
    stride: Ints  # s
    out: Ints  # o: windows

    def dim(self, i: int) -> Geometry:
        """The windows along spatial axis `i` alone."""
        return Geometry(*(field[i:i + 1] for field in self))


def total(parts: Iterable[jax.Array]) -> jax.Array:
    """The sum of a non-empty sequence of arrays (no Python 0 to start from)."""
    return functools.reduce(operator.add, parts)


def pad(x: jax.Array, pads: Pads, value: float, first: int = 1) -> jax.Array:
    """`x` with ``(lo, hi)`` units of `value` around the spatial axes ``first, first + 1, ...``."""
    if all(p == (0, 0) for p in pads):
        return x
    config = [(0, 0, 0)] * x.ndim
    for axis, (lo, hi) in enumerate(pads, start=first):
        config[axis] = (lo, hi, 0)
    return lax.pad(x, jnp.asarray(value, x.dtype), config)


def _shift(x: jax.Array, axis: int, offset: int, stride: int, count: int) -> jax.Array:
    """``x[..., offset + stride * i, ...]`` for ``i < count`` along `axis` (one strided slice)."""
    return lax.slice_in_dim(x, offset, offset + (count - 1) * stride + 1, stride, axis)


def _unshift(z: jax.Array, axis: int, offset: int, stride: int, size: int) -> jax.Array:
    """The transpose of `_shift` into an axis of length `size`: ``z[i]`` to unit ``offset + stride * i``;
    entries that land outside ``[0, size)`` are dropped by a slice first, so that the pad is never
    negative (XLA turned a negative pad into a pad to a larger buffer and a slice of it: the
    lecun1989 per-example epoch held 90 KB of temporaries, 82 KB with the slice first)."""
    first = max(0, -(offset // stride))  # the first i with offset + stride * i >= 0
    last = min(z.shape[axis], (size - 1 - offset) // stride + 1)  # one past the last inside
    if last <= first:
        return jnp.zeros((*z.shape[:axis], size, *z.shape[axis + 1:]), z.dtype)
    z = lax.slice_in_dim(z, first, last, axis=axis)
    lo = offset + stride * first
    config = [(0, 0, 0)] * z.ndim
    config[axis] = (lo, size - 1 - lo - (last - first - 1) * stride, stride - 1)
    return lax.pad(z, jnp.zeros((), z.dtype), config)


def crop(z: jax.Array, pads: Pads, size: Ints, first: int = 1) -> jax.Array:
    """The units ``lo .. lo + n`` of each padded spatial axis ``first, first + 1, ...`` of `z` (the
    input's, its padding dropped), zeros for those past `z`'s end: `_unshift` by ``-lo``."""
    for axis, (lo, _), n in zip(range(first, first + len(size)), pads, size, strict=True):
        z = _unshift(z, axis, -lo, 1, n)
    return z


def _taps_run(z: jax.Array, at: int, start: int, s: int) -> jax.Array:
    """Taps ``start, ..., start + s - 1`` of `z`'s tap axis `at`, those past its end zeros."""
    run = lax.slice_in_dim(z, start, min(start + s, z.shape[at]), axis=at)
    return pad(run, ((0, s - run.shape[at]),), 0.0, first=at)


def tap(xp: jax.Array, g: Geometry, t: Sequence[int], axes: Sequence[int]) -> jax.Array:
    """Tap `t` of the padded array `xp` (spatial axes `axes`): shape with ``o`` on those axes."""
    start, limit, step = [0] * xp.ndim, list(xp.shape), [1] * xp.ndim
    for axis, ti, d, s, o in zip(axes, t, g.spacing, g.stride, g.out, strict=True):
        start[axis], limit[axis], step[axis] = d * ti, d * ti + (o - 1) * s + 1, s
    return lax.slice(xp, start, limit, step)


def tap_at(xp: jax.Array, g: Geometry, t: jax.Array, axes: Sequence[int]) -> jax.Array:
    """`tap` for a traced tap index `t` ``(nd,)`` (a `lax.scan` over the taps): a dynamic slice of
    the tap's extent, then the stride."""
    start = [jnp.zeros((), t.dtype)] * xp.ndim
    extent, step = list(xp.shape), [1] * xp.ndim
    for i, (axis, d, s, o) in enumerate(zip(axes, g.spacing, g.stride, g.out, strict=True)):
        start[axis], extent[axis], step[axis] = d * t[i], (o - 1) * s + 1, s
    window = lax.dynamic_slice(xp, start, extent)
    return window if all(v == 1 for v in step) else lax.slice(window, [0] * xp.ndim, extent, step)


def place(z: jax.Array, g: Geometry, t: Sequence[int], axes: Sequence[int]) -> jax.Array:
    """Tap `t`'s values put back at their units of the *unpadded* input (the transpose of
    ``tap(pad(x))``): ``z[b, i]`` -> ``x[b, s i + d t - lo]``, zeros elsewhere."""
    config = [(0, 0, 0)] * z.ndim
    dims = zip(axes, t, g.size, g.pads, g.spacing, g.stride, g.out, strict=True)
    for axis, ti, n, (lo, _), d, s, o in dims:
        first = d * ti - lo
        config[axis] = (first, n - first - (o - 1) * s - 1, s - 1)
    return lax.pad(z, jnp.zeros((), z.dtype), config)


def stack_along(z: jax.Array, g: Geometry, i: int, axis: int, at: int) -> jax.Array:
    """The ``k_i`` taps of spatial dim `i` of the padded array `z` (on its axis `axis`), stacked on a
    new axis at `at`: ``out[..., o, ..., m, ...] = z[..., d m + s o, ...]`` (the other axes as they are)."""
    taps = [_shift(z, axis, g.spacing[i] * m, g.stride[i], g.out[i]) for m in range(g.taps[i])]
    return jnp.stack(taps, axis=at)


def gather(xp: jax.Array, g: Geometry, axes: Sequence[int], at: int) -> jax.Array:
    """All taps of the padded array `xp` (spatial axes `axes`, in the array *without* the new axes)
    stacked on ``nd`` new axes ``(k_1, ..., k_nd)`` at positions ``at, ..., at + nd - 1`` of the
    result, built separably: the last spatial axis first, each stack inserted at `at`."""
    nd = len(axes)
    out = xp
    for i in reversed(range(nd)):
        axis = axes[i] + (nd - 1 - i if at <= axes[i] else 0)  # stacks already inserted before it
        out = stack_along(out, g, i, axis, at)
    return out


def scatter(z: jax.Array, g: Geometry, axes: Sequence[int], at: int) -> jax.Array:
    """The transpose of ``gather(pad(x))``: ``z`` holds per-tap values on axes ``at, ..., at + nd - 1``;
    each is placed at its units of the unpadded input and the placements are summed, one spatial
    axis at a time (`axes` as in `gather`). Overlapping windows accumulate."""
    nd = len(axes)
    out = z
    for i in range(nd):
        axis = axes[i] + (nd - 1 - i if at <= axes[i] else 0)  # tap axes left after this one
        first, k, s = -g.pads[i][0], g.taps[i], g.stride[i]
        if g.spacing[i] != 1:
            out = total(_unshift(lax.index_in_dim(out, m, at, keepdims=False), axis,
                                 first + g.spacing[i] * m, s, g.size[i]) for m in range(k))
            continue
        # adjacent taps: tap m = s q + r of output j lands on unit first + s (j + q) + r, so for each q
        # the (j, r) values are one contiguous run (the last one's missing taps zeros), placed with
        # a shift of s q: ceil(k / s) placements without interior padding instead of k with
        merged = [*out.shape[:at], *out.shape[at + 1:]]
        merged[axis] *= s
        out = total(_unshift(jnp.moveaxis(_taps_run(out, at, s * q, s), at, axis + 1).reshape(merged), axis,
                             first + s * q, 1, g.size[i]) for q in range(-(-k // s)))
    return out


def spread(v: jax.Array, g: Geometry, axes: Sequence[int]) -> jax.Array:
    """The transpose of the window sums ``sum_t tap(pad(x), t)``: each window's value in `v` added to
    every unit of the unpadded input its window covers. `scatter` of `v` given to every tap, one
    spatial axis at a time, so that no copy of `v` per tap of the whole window is ever made."""
    for i, axis in enumerate(axes):
        taps = jnp.broadcast_to(v[..., None], (*v.shape, g.taps[i]))
        v = scatter(taps, g.dim(i), (axis,), v.ndim)
    return v


def tile(xp: jax.Array, g: Geometry) -> jax.Array:
    """`gather` for windows that tile the input (stride == taps, spacing 1) on an array
    ``(N, *spatial, C)``: one reshape and transpose to ``(N, *out, C, k_1, ..., k_nd)``; units past
    the last whole window are cropped."""
    nd = len(g.taps)
    n, c = xp.shape[0], xp.shape[-1]
    cropped = xp[(slice(None), *(slice(0, o * k) for o, k in zip(g.out, g.taps, strict=True)))]
    blocks = cropped.reshape(n, *(v for o, k in zip(g.out, g.taps, strict=True) for v in (o, k)), c)
    # (N, o1, k1, o2, k2, ..., C) -> (N, o1, o2, ..., C, k1, k2, ...)
    return blocks.transpose(0, *range(1, 2 * nd, 2), 2 * nd + 1, *range(2, 2 * nd + 1, 2))


def untile(v: jax.Array, g: Geometry) -> jax.Array:
    """The transpose of ``tile(pad(x))``: ``(N, *out, C, k...)`` back to ``(N, *size, C)``, the padding
    cropped and the units no window reached given zeros."""
    nd = len(g.taps)
    n, c = v.shape[0], v.shape[nd + 1]
    # (N, o1, ..., C, k1, ...) -> (N, o1, k1, o2, k2, ..., C)
    order = [0, *(a for i in range(nd) for a in (1 + i, nd + 2 + i)), nd + 1]
    blocks = v.transpose(order).reshape(n, *(o * k for o, k in zip(g.out, g.taps, strict=True)), c)
    dims = zip(g.size, g.pads, g.out, g.taps, strict=True)
    config = [(0, 0, 0), *((-lo, size + lo - o * k, 0) for size, (lo, _), o, k in dims), (0, 0, 0)]
    return lax.pad(blocks, jnp.zeros((), v.dtype), config)


def dilate(x: jax.Array, factors: Sequence[int], first: int = 1) -> jax.Array:
    """``s - 1`` zeros inserted between neighbours along the spatial axes ``first, first + 1, ...``
    (factor ``s`` per axis): length ``n`` becomes ``(n - 1) * s + 1``.

    Written as a pad of a new axis and a reshape rather than ``lax.pad``'s interior padding: XLA's
    CPU simplifier folds an interior pad that feeds a convolution into the convolution's base
    dilation, and jax 0.10 then aborts the process compiling some of their gradients ("Window
    dimensions do not match RHS shape")."""
    for axis, s in enumerate(factors, start=first):
        n = x.shape[axis]
        if s == 1 or n == 0:
            continue
        config = [(0, 0, 0)] * (x.ndim + 1)
        config[axis + 1] = (0, s - 1, 0)
        spread = lax.pad(jnp.expand_dims(x, axis + 1), jnp.zeros((), x.dtype), config)
        spread = spread.reshape(*x.shape[:axis], n * s, *x.shape[axis + 1:])
        x = lax.slice_in_dim(spread, 0, (n - 1) * s + 1, axis=axis)
    return x
