r"""Eq 22's pieces shared by its XLA form (`jaxcnn.convolution`) and its matmul form
(`jaxcnn._lowering`) (private).

* `swap_io` — the kernel read from outputs to inputs: Eq 22 sends the deltas of layer l+1 back to
  layer l through the same weights, in/out channels swapped group by group.
* `phases`, `by_phases` — a strided Eq 22 without the zeros inserted between the deltas (the
  "sub-pixel" form): the input units ``s*q + r`` of each phase ``r`` are a stride-1 correlation of
  the undilated deltas with the kernel taps ``t`` where ``d*t = r (mod s)``. Zero insertion
  (``lhs_dilation``) is slow on CPU and GPU, and jax 0.10's CPU compiler aborts differentiating some
  of it.
* `subpixel`, `by_subpixel` — every phase at once: the strided conv is a stride-1 conv over the
  padded input's phases taken as channels (space-to-depth), so its Eq 22 is one stride-1 Eq 22 whose
  ``prod(s) * C`` channels are put back in place (depth-to-space).
* `by_groups` — a grouped Eq 22 one group at a time (the CPU's form of XLA's, `_choice.split_groups`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxcnn import _windows
from jaxcnn._specs import ConvSpec


class Phase(NamedTuple):
    """One phase of the strided Eq 22: the padded-input units ``s*q + r`` (``r`` per dim) get a
    stride-1 correlation of the deltas with the kernel taps ``t`` where ``d*t = r (mod s)``."""

    offset: tuple[int, ...]  # r
    taps: tuple[tuple[int, ...], ...]  # per dim, the taps t in that phase, reversed (the sub-kernel)
    spec: ConvSpec  # the stride-1 correlation: deltas (N, *out, D) -> (N, *q, C)


def phases(spec: ConvSpec) -> tuple[tuple[int, ...], list[Phase]]:
    """Eq 22 without inserted zeros: ``dx_pad[s*q + r] = sum_{t: d t = r mod s} delta[q - (d t - r)/s] w[t]``.

    Per dim, the taps of phase ``r`` are ``t_0 + j*s/gcd(s, d)``, their deltas are spaced by
    ``d/gcd(s, d)``: a stride-1 correlation of the deltas with the reversed sub-kernel, dilated by
    that spacing, padded so that it yields ``Q = ceil((n + lo + hi) / s)`` units. Returns ``Q`` per
    dim and the phases (those with no taps, possible when ``gcd(s, d) > 1``, are left out: zeros).
    """
    q_all = tuple(-(-(n + lo + hi) // s)
                  for n, (lo, hi), s in zip(spec.size, spec.pads, spec.stride, strict=True))
    per_dim = []
    for k, s, d, o, q in zip(spec.kernel, spec.stride, spec.dilation, spec.out, q_all, strict=True):
        options = []
        for r in range(s):
            taps = [t for t in range(k) if (d * t - r) % s == 0]
            if not taps:
                options.append(None)
                continue
            step = d // math.gcd(s, d)  # spacing of their deltas
            m0 = (d * taps[0] - r) // s
            lo = m0 + (len(taps) - 1) * step  # = -c0: the deltas' offset of the first reversed tap
            hi = q + (len(taps) - 1) * step - lo - o
            options.append((r, tuple(reversed(taps)), step, (lo, hi)))
        per_dim.append(options)
    out = []
    for combo in itertools.product(*per_dim):
        if any(c is None for c in combo):
            continue
        sub = ConvSpec(kernel=tuple(len(c[1]) for c in combo), stride=(1,) * spec.nd,
                       pads=tuple(c[3] for c in combo),
                       dilation=tuple(c[2] for c in combo), groups=spec.groups, flip=False, pad_value=0.0,
                       size=spec.out, out=q_all)
        out.append(Phase(tuple(c[0] for c in combo), tuple(c[1] for c in combo), sub))
    return q_all, out


def swap_io(kernel: jax.Array, groups: int) -> jax.Array:
    """``(*k, C/G, D)`` -> ``(*k, D/G, C)``: the kernel read from outputs to inputs, group by group
    (in/out channels swapped, as Eq 22 sends deltas from layer l+1 back to l; an involution)."""
    *k, c_g, d = kernel.shape
    nd = len(k)
    split = kernel.reshape(*k, c_g, groups, d // groups)
    return split.transpose(*range(nd), nd + 2, nd + 1, nd).reshape(*k, d // groups, groups * c_g)


def by_phases(delta: jax.Array, kernel: jax.Array, spec: ConvSpec,
              correlate: Callable[[jax.Array, jax.Array, ConvSpec], jax.Array]) -> jax.Array:
    """Eq 22 (``dE/dx``, `kernel` the one the forward pass correlated with) as ``prod(s)`` stride-1
    correlations of the undilated deltas (`phases`), ``correlate(delta, sub_kernel, sub_spec)`` each
    (an XLA convolution, or `forward`), interleaved and cropped to the input. No zeros are
    inserted between the deltas, so nothing multiplies them."""
    q_all, parts = phases(spec)
    nd, n, c = spec.nd, delta.shape[0], kernel.shape[-2] * spec.groups
    stride, found = spec.stride, {ph.offset: ph for ph in parts}
    if all(s == 1 for s in stride):  # one phase: the crop to the input folds into its padding
        (ph,) = parts
        sub = ph.spec._replace(out=spec.size, pads=tuple(
            (a - lo, b - hi) for (a, b), (lo, hi) in zip(ph.spec.pads, spec.pads, strict=True)))
        sub_kernel = kernel[tuple(_reversed_taps(t) for t in ph.taps)]
        return correlate(delta, swap_io(sub_kernel, spec.groups), sub).astype(delta.dtype)
    outputs = []
    for offset in itertools.product(*(range(s) for s in stride)):
        ph = found.get(offset)
        if ph is None:  # no tap lands on these units: their gradient is zero
            outputs.append(jnp.zeros((n, *q_all, c), delta.dtype))
            continue
        sub = kernel[tuple(_reversed_taps(t) for t in ph.taps)]
        outputs.append(correlate(delta, swap_io(sub, spec.groups), ph.spec).astype(delta.dtype))
    grid = jnp.stack(outputs).reshape(*stride, n, *q_all, c)
    # (*s, N, *Q, C) -> (N, Q_1, s_1, ..., Q_nd, s_nd, C) -> (N, *(Q*s), C), cropped to the input
    order = [nd, *(a for i in range(nd) for a in (nd + 1 + i, i)), 2 * nd + 1]
    dx = grid.transpose(order).reshape(n, *(q * s for q, s in zip(q_all, stride, strict=True)), c)
    return dx[(slice(None), *(slice(lo, lo + m) for m, (lo, _) in zip(spec.size, spec.pads, strict=True)))]


def _reversed_taps(taps: tuple[int, ...]) -> slice:
    """The static slice picking `taps` (an arithmetic progression, listed descending)."""
    step = taps[0] - taps[1] if len(taps) > 1 else 1
    stop = taps[-1] - step
    return slice(taps[0], None if stop < 0 else stop, -step)


def subpixel(spec: ConvSpec) -> ConvSpec:
    """The stride-1 conv over the padded input's phases that computes the same outputs as `spec`.

    With the dilated kernel zero-padded to ``K * s`` taps per dim (``K = ceil(extent / s)``), tap
    ``t = s*q + r`` of output ``i`` reads ``x_pad[s*(i + q) + r]``: phase ``r`` at position
    ``i + q``. So ``y[i] = sum_q X[i + q] . W[q]`` with ``X[j, (r, c)] = x_pad[s*j + r, c]`` over
    ``J = out + K - 1`` positions and ``W[q, (r, c)] = w_dilated[s*q + r, c]`` (`subpixel_kernel`);
    no padding, ``prod(s)`` times the channels (group by group: ``(G, *s, C/G)``)."""
    taps = tuple(-(-e // s) for e, s in zip(spec.extent, spec.stride, strict=True))
    return ConvSpec(kernel=taps, stride=(1,) * spec.nd, pads=((0, 0),) * spec.nd, dilation=(1,) * spec.nd,
                    groups=spec.groups, flip=False, pad_value=0.0,
                    size=tuple(o + k - 1 for o, k in zip(spec.out, taps, strict=True)), out=spec.out)


def subpixel_kernel(kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """``(*k, C/G, D)`` -> ``(*K, prod(s) * C/G, D)``: `subpixel`'s kernel ``W[q, (r, c)] =
    w_dilated[s*q + r, c]`` (the dilation's zeros and the padding to ``K * s`` taps are zero taps)."""
    nd, sub = spec.nd, subpixel(spec)
    dilated = _windows.dilate(kernel, spec.dilation, first=0)
    padded = _windows.pad(dilated, [(0, k * s - e) for k, s, e in zip(
        sub.kernel, spec.stride, spec.extent, strict=True)], 0.0, first=0)
    split = padded.reshape(*(a for k, s in zip(sub.kernel, spec.stride, strict=True) for a in (k, s)),
                           *kernel.shape[-2:])
    order = [*range(0, 2 * nd, 2), *range(1, 2 * nd, 2), 2 * nd, 2 * nd + 1]
    return split.transpose(order).reshape(*sub.kernel, -1, kernel.shape[-1])


def by_subpixel(delta: jax.Array, kernel: jax.Array, spec: ConvSpec,
                input_grad: Callable[[jax.Array, jax.Array, ConvSpec], jax.Array]) -> jax.Array:
    """Eq 22 (``dE/dx``, `kernel` the one the forward pass correlated with) as the stride-1 Eq 22 of
    `subpixel`'s conv, ``input_grad(delta, subpixel_kernel, subpixel_spec)`` (``(N, *J, G * prod(s)
    * C/G)``: every phase's units), each phase put back at its units ``s*j + r`` and cropped to the
    input (units past the windows' reach get zeros)."""
    sub, nd, g = subpixel(spec), spec.nd, spec.groups
    dxs = input_grad(delta, subpixel_kernel(kernel, spec), sub)
    n, c = delta.shape[0], dxs.shape[-1] // math.prod(spec.stride)
    split = dxs.reshape(n, *sub.size, g, *spec.stride, c // g)
    order = [0, *(a for i in range(nd) for a in (1 + i, nd + 2 + i)), nd + 1, 2 * nd + 2]
    units = (j * s for j, s in zip(sub.size, spec.stride, strict=True))
    return _windows.crop(split.transpose(order).reshape(n, *units, c), spec.pads, spec.size)


def by_groups(correlate: Callable[[jax.Array, jax.Array], jax.Array], lhs: jax.Array, rhs: jax.Array,
              groups: int) -> jax.Array:
    """``correlate(lhs, rhs)`` of `groups` feature groups as ``correlate`` of each group's channels
    (lhs ``(N, *s, G*c)``, rhs ``(*k, c, G*d)``): a `lax.scan` over the groups writing each group's
    output into the whole in place (a Python loop and a concatenation kept every group's buffers
    live at once)."""
    c, d, axis = lhs.shape[-1] // groups, rhs.shape[-1] // groups, lhs.ndim - 1

    def group(i):
        return correlate(lax.dynamic_slice_in_dim(lhs, i * c, c, axis=axis),
                         lax.dynamic_slice_in_dim(rhs, i * d, d, axis=axis))

    def step(out, i):
        return lax.dynamic_update_slice_in_dim(out, group(i), i * d, axis=axis), None

    first = group(0)
    out = lax.pad(first, jnp.zeros((), first.dtype), [(0, 0, 0)] * axis + [(0, rhs.shape[-1] - d, 0)])
    return lax.scan(step, out, jnp.arange(1, groups))[0]
