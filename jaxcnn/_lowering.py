r"""The matmul lowerings of the convolution's three sums, in 1-3 spatial dims (private).

`jaxcnn.convolution` states the article's formulas and writes each as one XLA convolution; this
module holds the *matmul* form of the same sums that the CPU runs. With ``X_t`` the tap
``t = (t_1, ..., t_nd)`` of the padded input (`jaxcnn._windows.tap`),

    X_t[b, i, c] = x_pad[b, s * i + d * t, c]        (N, *out, C)

the three sums read (channels per group; ``b`` the batch, ``i`` the output position):

* Eq 7 (forward):   ``y = sum_t X_t @ w[t]``
* Eq 13 (weights):  ``dE/dw[t] = X_t^T @ delta``   (the sum over ``b, i`` is the matmul's)
* Eq 20 (inputs):   ``dE/dx = sum_t place_t(delta @ w[t]^T)``, ``place_t`` putting entry ``i`` at
  unit ``s * i + d * t - lo`` (`jaxcnn._windows.place`): the article's
  ``sum_{m,n} delta_{i'-m, j'-n} w_{m,n}``.

Lowerings (the names of the private switch, see `force`):

* ``"xla"`` — one ``lax.conv_general_dilated`` per formula, written in `jaxcnn.convolution`. On
  GPU that is cuDNN; on CPU it is slow for small channel counts (LeNet's 1 -> 6 maps), for the input
  gradient and for the weight gradient (whose "kernel" is the whole delta map).
* ``"taps"`` — the sums over ``t`` as written: one small matmul per tap, accumulated. With one
  input channel the forward taps are broadcast products that XLA fuses into a single loop.
* ``"patches"`` — im2col: all taps stacked, ``P = [X_t]_t`` ``(N, *out, k_1, ..., k_nd, C)`` (built
  separably, `jaxcnn._windows.gather`), make each sum *one* matmul: ``y = P @ W``,
  ``dE/dw = P^T @ delta`` (Eq 13's sum, exactly), ``dE/dx = col2im(delta @ W^T)``
  (`jaxcnn._windows.scatter`: Eq 20's sum over the taps). When ``P`` would exceed twice a small
  budget (2 MiB, `Plan.chunk_bytes`) the batch goes through a `lax.scan` in chunks, so that the
  patches stay in cache and the compiled temporary memory stays small.
* ``"auto"`` (default) — on CPU the measured best per formula and shape (`choose`); on every other
  platform ``"xla"``, by ``lax.platform_dependent``, so GPUs keep cuDNN.

Every lowering is differentiable ``lax``/``jnp`` code (``jax.grad`` of a backward rule works),
keeps the input dtype and accumulates bfloat16/float16 products in float32.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxcnn import _windows
from jaxcnn._specs import ConvSpec

LOWERINGS = ("auto", "xla", "taps", "patches")
POOL_LOWERINGS = ("auto", "general")
_CHUNK_BYTES = 1 << 21  # patches per scan step: 2 MiB stays in cache (measured: 1-3 MiB best)


class Plan(NamedTuple):
    """The static lowering of one conv call, traced into its custom VJP with the configuration."""

    name: str = "auto"  # one of LOWERINGS
    chunk_bytes: int = _CHUNK_BYTES  # bytes of patches per batch chunk (one `lax.scan` step)
    pool: str = "auto"  # one of POOL_LOWERINGS: "general" forces pooling's strided-slice path
    curvature: bool = False  # backward rules propagate d2E/dy2 (`jaxcnn.curvature.second_order`)


_forced = Plan()  # the private switch


@contextlib.contextmanager
def force(name: str = "auto", *, pool: str = "auto", chunk_bytes: int | None = None) -> Iterator[None]:
    """Trace convs and pools with a forced lowering: the private switch for tests and gradcheck.

    Args:
      name: conv lowering, "auto" (default: per platform and shape), "xla", "taps" or "patches";
        forced lowerings apply on every backend.
      pool: "auto" (the reshape path when stride == window) or "general" (strided slices always).
      chunk_bytes: batch-chunk budget of "taps"/"patches" (default 2 MiB); a tiny value (1) makes
        every batch of more than two examples run through the chunked `lax.scan`.

    The choice is read when a conv or pool is *traced* and baked into its static configuration
    (a `custom_vjp` nondiff argument), so its backward uses the same lowering even when traced
    later; functions traced before keep theirs (``jax.jit`` caches).
    """
    global _forced
    if name not in LOWERINGS:
        raise ValueError(f"`force`: `name` must be one of {LOWERINGS}, got {name!r}")
    if pool not in POOL_LOWERINGS:
        raise ValueError(f"`force`: `pool` must be one of {POOL_LOWERINGS}, got {pool!r}")
    if chunk_bytes is not None and (not isinstance(chunk_bytes, int) or chunk_bytes < 1):
        raise ValueError(f"`force`: `chunk_bytes` must be a positive int, got {chunk_bytes!r}")
    previous = _forced
    _forced = Plan(name, _CHUNK_BYTES if chunk_bytes is None else chunk_bytes, pool)
    try:
        yield
    finally:
        _forced = previous


def requested() -> Plan:
    """The lowering a conv or pool traced now uses (`force`'s, default "auto"), and whether its
    backward is the second-order rule (inside `jaxcnn.curvature.second_order`)."""
    from jaxcnn import curvature  # a leaf module (imports jax only); read at trace time

    return _forced._replace(curvature=True) if curvature.active() else _forced


# ------------------------------------------------------------------------------- the choice
# Measured on a 2-core AVX-512 CPU, quiet (experiments/benchmark.py's 2-D shapes, batch 128 unless
# N = 1; jax 0.10; ms, best of 15):
#
#                         forward               input grad           weight grad
#                     xla   taps  patches   xla   taps  patches   xla   taps  patches
#   C1  28x28x1->6    2.1   0.60  1.18      4.8   2.7   1.15      2.0   5.1   0.91
#   C3  14x14x6->16   0.48  2.2   0.60      1.5   1.8   0.88      0.63  1.1   0.55
#   64->64 3x3 32x32  68    43    37        40    42    37        290   64    35
#   H1 (N=1) 16x16x1  .004  .002  .003      .004  .007  .003      .002  .011  .002
#   H2 (N=1) 8x8x12   .003  .014  .003      .012  .013  .003      .011  .013  .005
#
# XLA's CPU convolution is slow for the input gradient (a convolution of the stride-dilated
# deltas) and the weight gradient (whose "kernel" is the whole delta map) at every size, and
# for a forward pass with one input channel or with many; chunked patches match or beat it there.
# A one-channel forward pass over many positions is fastest as broadcast taps that XLA fuses
# into one loop (no patch buffer); over a few positions (one example) the patches' single small
# matmul is. In the LeNet-5 step the small-channel forward pass of C3 is a little faster as XLA's.
_TINY = 2  # input channels per group up to which the forward pass may be broadcast taps
_MANY = 4096  # output positions (N * prod(out)) from which those taps pay
_WIDE = 16  # input channels per group from which the forward pass is patches rather than XLA's
_GROUPS = 4  # more groups than this stay with XLA's convolution (the matmul forms loop over them)
# Above this many taps (prod(k)) the per-tap and patches forms unroll into too many slices: a 28x28
# kernel compiled for ~15 s and ran 30x slower than XLA's convolution. Such kernels stay on "xla".
_MAX_TAPS = 64


def choose(formula: str, spec: ConvSpec, n: int, c: int, d: int) -> str:
    """The CPU lowering of `formula` ("forward", "input", "weight") for a batch of `n`, C -> D."""
    del d
    c_g = c // spec.groups
    if spec.groups > _GROUPS or math.prod(spec.kernel) > _MAX_TAPS:
        return "xla"
    if formula == "forward" and c_g <= _TINY:
        return "taps" if n * math.prod(spec.out) >= _MANY else "patches"
    if formula == "forward" and c_g < _WIDE:
        return "xla"
    return "patches"


# ------------------------------------------------------------------------------------ helpers
def _acc_dtype(dtype) -> jnp.dtype:
    """float32 accumulation for the 16-bit floats, the dtype itself otherwise."""
    dtype = jnp.dtype(dtype)
    return jnp.dtype(jnp.float32) if dtype.itemsize < 4 else dtype


def _einsum(spec_str: str, a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.einsum(spec_str, a, b, preferred_element_type=_acc_dtype(a.dtype))


def geometry(spec: ConvSpec) -> _windows.Geometry:
    """The conv's windows: its kernel taps, spaced by the dilation, strided."""
    return _windows.Geometry(spec.size, spec.pads, spec.kernel, spec.dilation, spec.stride, spec.out)


def _tap_indices(spec: ConvSpec) -> list[tuple[int, ...]]:
    return list(itertools.product(*(range(k) for k in spec.kernel)))


def _spatial(spec: ConvSpec, first: int = 1) -> tuple[int, ...]:
    return tuple(range(first, first + spec.nd))


def _by_group(fn: Callable[..., jax.Array], spec: ConvSpec, args: tuple[jax.Array, ...]) -> jax.Array:
    """A grouped conv as `groups` ungrouped ones: ``fn(spec1, *slices)`` on each group's channels
    (every arg split along its last axis), the results concatenated along the last axis. Each
    group is then computed exactly as an ungrouped conv of its channels would be."""
    g = spec.groups
    one = spec._replace(groups=1)
    if g == 1:
        return fn(one, *args)
    parts = []
    for k in range(g):
        sliced = [lax.slice_in_dim(a, k * (a.shape[-1] // g), (k + 1) * (a.shape[-1] // g), axis=a.ndim - 1)
                  for a in args]
        parts.append(fn(one, *sliced))
    return jnp.concatenate(parts, axis=-1)


# ------------------------------------------------------------------------------- batch chunks
def _chunk(n: int, per_example_bytes: int, budget: int) -> int:
    """Examples per scan step: the largest divisor of n whose patches fit `budget` bytes (but at
    least two examples: one-example steps cost more than they save)."""
    if n * per_example_bytes <= 2 * budget:
        return n  # small enough in one piece (an empty batch too); a loop would only add overhead
    limit = max(2, budget // max(per_example_bytes, 1))
    return max(c for c in range(1, min(n, limit) + 1) if n % c == 0)


def _patch_bytes(spec: ConvSpec, c: int, dtype) -> int:
    """Bytes of one example's patches ``(*out, prod(k), C)``."""
    return math.prod(spec.out) * math.prod(spec.kernel) * c * jnp.dtype(_acc_dtype(dtype)).itemsize


def _map_chunks(fn: Callable[..., jax.Array], size: int, *arrays: jax.Array) -> jax.Array:
    """``fn`` applied to batch chunks of `size` examples (a `lax.scan`), results concatenated."""
    n = arrays[0].shape[0]
    if size >= n:
        return fn(*arrays)
    split = [a.reshape(n // size, size, *a.shape[1:]) for a in arrays]
    _, out = lax.scan(lambda carry, xs: (carry, fn(*xs)), None, split)
    return out.reshape(n, *out.shape[2:])


def _sum_chunks(fn: Callable[..., jax.Array], size: int, *arrays: jax.Array) -> jax.Array:
    """``sum_chunks fn(chunk)`` over batch chunks of `size` examples (a `lax.scan` accumulating)."""
    n = arrays[0].shape[0]
    if size >= n:
        return fn(*arrays)
    split = [a.reshape(n // size, size, *a.shape[1:]) for a in arrays]
    shape = jax.eval_shape(fn, *[a[0] for a in split])
    total, _ = lax.scan(lambda acc, xs: (acc + fn(*xs), None), jnp.zeros(shape.shape, shape.dtype), split)
    return total


# -------------------------------------------------------------------------------- Eq 7: y
# Each lowering is one `jax.jit` (static configuration): called eagerly it compiles once as a
# whole rather than op by op; inside an outer jit it is inlined. Groups: one ungrouped conv per
# group (`_by_group`); `choose` sends many groups to XLA's convolution instead.
@functools.partial(jax.jit, static_argnums=(2, 3))
def forward(x: jax.Array, kernel: jax.Array, spec: ConvSpec, plan: Plan) -> jax.Array:
    """Eq 7, ``y = sum_t X_t @ kernel[t]``, by ``"taps"`` or ``"patches"``.

    `kernel` ``(*k, C/G, D)`` is the one correlated (rotated for flip=True); x ``(N, *size, C)``
    unpadded. Returns ``(N, *out, D)``.
    """
    g, axes = geometry(spec), _spatial(spec)

    def taps(spec, x, kernel):  # one matmul per tap, accumulated
        xp = _windows.pad(x, spec.pads, spec.pad_value)
        return _windows.total(_einsum("...c,cd->...d", _windows.tap(xp, g, t, axes), kernel[t])
                              for t in _tap_indices(spec))

    def patches(spec, x, kernel):  # im2col: P (N, *out, K*C) @ W (K*C, D)
        p = _windows.gather(_windows.pad(x, spec.pads, spec.pad_value), g, axes, spec.nd + 1)
        kc, d = math.prod(kernel.shape[:-1]), kernel.shape[-1]
        return _einsum("...k,kd->...d", p.reshape(*p.shape[: spec.nd + 1], kc), kernel.reshape(kc, d))

    fn = taps if plan.name == "taps" else patches
    size = _chunk(x.shape[0], _patch_bytes(spec, x.shape[-1], x.dtype), plan.chunk_bytes)
    y = _map_chunks(lambda x: _by_group(fn, spec, (x, kernel)), size, x)
    return y.astype(x.dtype)


# ------------------------------------------------------------------------------ Eq 13: dE/dw
@functools.partial(jax.jit, static_argnums=(2, 3))
def weight_grad(x: jax.Array, delta: jax.Array, spec: ConvSpec, plan: Plan) -> jax.Array:
    """Eq 13, ``dE/dkernel[t] = sum_{b,i} X_t[b,i]^T delta[b,i]``, by taps or patches.

    Returns the gradient w.r.t. the kernel that was correlated, ``(*k, C/G, D)``.
    """
    g = geometry(spec)

    def taps(spec, x, delta):  # one matmul per tap, contracting batch and positions
        xp, axes = _windows.pad(x, spec.pads, spec.pad_value), _spatial(spec)
        dk = jnp.stack([_einsum("...c,...d->cd", _windows.tap(xp, g, t, axes), delta)
                        for t in _tap_indices(spec)])
        return dk.reshape(*spec.kernel, *dk.shape[1:])

    def patches(spec, x, delta):  # im2col: dE/dW = P^T @ delta, (K*C, D)
        # P^T is built directly as (*k, C, N, *out) from the channel-major input (C, N, *size), so
        # that the matmul contracts the long axis without a transpose.
        xp = jnp.moveaxis(_windows.pad(x, spec.pads, spec.pad_value), -1, 0)
        pt = _windows.gather(xp, g, _spatial(spec, 2), 0)
        kc, d = math.prod(spec.kernel) * x.shape[-1], delta.shape[-1]
        rows = delta.shape[0] * math.prod(spec.out)
        dk = _einsum("km,md->kd", pt.reshape(kc, rows), delta.reshape(rows, d))
        return dk.reshape(*spec.kernel, x.shape[-1], d)

    fn = taps if plan.name == "taps" else patches
    size = _chunk(x.shape[0], _patch_bytes(spec, x.shape[-1], x.dtype), plan.chunk_bytes)
    dk = _sum_chunks(lambda x, delta: _by_group(fn, spec, (x, delta)), size, x, delta)
    return dk.astype(x.dtype)


# ------------------------------------------------------------------------------ Eq 20: dE/dx
@functools.partial(jax.jit, static_argnums=(2, 3))
def input_grad(delta: jax.Array, kernel: jax.Array, spec: ConvSpec, plan: Plan) -> jax.Array:
    """Eq 20, ``dE/dx = sum_t place_t(delta @ kernel[t]^T)``, by taps or patches (col2im).

    `kernel` is the one the forward pass correlated with; returns ``(N, *size, C)``.
    """
    g, axes = geometry(spec), _spatial(spec)

    def taps(spec, delta, kernel):  # per tap: delta @ kernel[t]^T, placed and accumulated
        return _windows.total(_windows.place(_einsum("...d,cd->...c", delta, kernel[t]), g, t, axes)
                              for t in _tap_indices(spec))

    def patches(spec, delta, kernel):  # col2im: Z = delta @ W^T (N, *out, *k, C), placed and summed
        kc = math.prod(kernel.shape[:-1])
        z = _einsum("...d,kd->...k", delta, kernel.reshape(kc, kernel.shape[-1]))
        return _windows.scatter(z.reshape(*z.shape[:-1], *kernel.shape[:-1]), g, axes, spec.nd + 1)

    fn = taps if plan.name == "taps" else patches
    c = kernel.shape[-2] * spec.groups
    size = _chunk(delta.shape[0], _patch_bytes(spec, c, delta.dtype), plan.chunk_bytes)
    dx = _map_chunks(lambda delta: _by_group(fn, spec, (delta, kernel)), size, delta)
    return dx.astype(delta.dtype)
