r"""One spatial dim fewer: the "fold" lowering of the convolution's formulas (private).

An N-d convolution is an (N-1)-d one whose channels are the first spatial dim's taps: with
``X3[(b, i_1), i', (t_1, c)] = x_pad[b, s_1 i_1 + d_1 t_1, i', c]`` (the first axis's windows,
`fold_input`) and the kernel read as ``W3[t', (t_1, c), d] = w[t_1, t', c, d]`` (`fold_kernel`),
Eq 7 is ``y[b, i_1] = conv_{N-1}(X3, W3)[(b, i_1)]``; Eq 14 of the N-d conv is Eq 14 of that
(N-1)-d conv read back (`unfold_kernel`), and Eq 22 is its Eq 22 with each first-axis tap placed
back at its units and summed (`unfold_input`, the transpose of `fold_input`). In 3-D this turns
XLA's slow 3-D convolutions and the 27-tap sums into 2-D convolutions over 3x the channels, and in
2-D a forward pass strided on every axis into 1-D convolutions, which YNNPACK does not take (both
measured in `jaxcnn._choice`). Groups keep their channels together: ``(G, t_1, C/G)``.
`jaxcnn.convolution` states each folded formula (its ``folded`` forms); this module holds the
reshapes between the two convolutions and the batch chunks they run in.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxcnn import _windows
from jaxcnn._lowering import Plan, acc_dtype, chunk, map_chunks, sum_chunks
from jaxcnn._specs import ConvSpec


def fold_spec(spec: ConvSpec) -> ConvSpec:
    """The (N-1)-d convolution over the trailing spatial dims (its kernel is the one correlated)."""
    return spec._replace(kernel=spec.kernel[1:], stride=spec.stride[1:], pads=spec.pads[1:],
                         dilation=spec.dilation[1:], flip=False, size=spec.size[1:], out=spec.out[1:])


def _first_axis(spec: ConvSpec) -> _windows.Geometry:
    return _windows.Geometry(spec.size[:1], spec.pads[:1], spec.kernel[:1], spec.dilation[:1],
                             spec.stride[:1], spec.out[:1])


def merge_first(a: jax.Array) -> jax.Array:
    """``(N, out_1, ...)`` -> ``(N * out_1, ...)``: the batch of a folded conv (`fold_spec`)."""
    return a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])


def fold_input(x: jax.Array, spec: ConvSpec) -> jax.Array:
    """``(N, *size, C)`` -> ``(N * out_1, *size[1:], k_1 * C)``: the first axis's windows as channels."""
    xp = _windows.pad(x, spec.pads[:1], spec.pad_value)
    taps = _windows.gather(xp, _first_axis(spec), (1,), x.ndim - 1)  # (N, out_1, *rest, k_1, C)
    n, o, *rest, k, c = taps.shape
    grouped = jnp.swapaxes(taps.reshape(n * o, *rest, k, spec.groups, c // spec.groups), -3, -2)
    return grouped.reshape(n * o, *rest, k * c)


def fold_chunks(fn: Callable[..., jax.Array], spec: ConvSpec, plan: Plan, c: int, *arrays: jax.Array,
                summed: bool = False) -> jax.Array:
    """``fn`` of a folded formula over batch chunks (a `lax.scan`) whose folded input (`fold_input`,
    ``k_1`` times the input's units, `c` channels) fits the budget: results concatenated, or summed
    (Eq 14). Eq 7 and Eq 14 only: on a 2-core EPYC the 3-D 16->32 3x3x3 8x32x32 N=4 conv's forward
    and weight gradient held 6.1 and 10.9 MiB of temporaries for the whole batch at once, 2.6 and
    5.0 MiB by one example (forward 5.4 -> 5.5 ms, weight gradient 6.2 -> 7.1 ms), its training step
    19.3 -> 10.8 MiB (XLA's 3-D convolutions: 10.8). Eq 22 in chunks fell below the batch from
    which its 2-D formula is XLA's convolution (`jaxcnn._choice`): 7.2 instead of 3.6 ms."""
    itemsize = jnp.dtype(acc_dtype(arrays[0].dtype)).itemsize
    per_example = spec.out[0] * spec.kernel[0] * math.prod(spec.size[1:]) * c * itemsize
    size = chunk(arrays[0].shape[0], per_example, plan.chunk_bytes)
    return (sum_chunks if summed else map_chunks)(fn, size, *arrays)


def unfold_input(dx3: jax.Array, spec: ConvSpec, n: int) -> jax.Array:
    """The transpose of `fold_input`: each first-axis tap placed back at its units, summed,
    the padding cropped: ``(n * out_1, *size[1:], k_1 * C)`` -> ``(n, *size, C)``."""
    *lead, kc = dx3.shape
    k, g = spec.kernel[0], spec.groups
    taps = jnp.swapaxes(dx3.reshape(*lead, g, k, kc // (g * k)), -3, -2).reshape(
        n, spec.out[0], *lead[1:], k, kc // k)
    return _windows.scatter(taps, _first_axis(spec), (1,), dx3.ndim)


def fold_kernel(kernel: jax.Array) -> jax.Array:
    """``(k_1, *k', C/G, D)`` -> ``(*k', k_1 * C/G, D)``."""
    k1, *rest, c_g, d = kernel.shape
    return jnp.moveaxis(kernel, 0, -3).reshape(*rest, k1 * c_g, d)


def unfold_kernel(dk3: jax.Array, spec: ConvSpec) -> jax.Array:
    """The inverse of `fold_kernel`: ``(*k', k_1 * C/G, D)`` -> ``(k_1, *k', C/G, D)``."""
    *rest, kc, d = dk3.shape
    return jnp.moveaxis(dk3.reshape(*rest, spec.kernel[0], kc // spec.kernel[0], d), -3, 0)
