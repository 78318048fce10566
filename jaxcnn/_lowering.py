r"""How conv2d's three sums are lowered to XLA operations (private).

`jaxcnn.conv` states the article's formulas; this module holds the two *matmul lowerings* of them
that the CPU uses, beside the XLA-convolution lowering that `jaxcnn.conv` keeps for itself. With
``X_{mn}`` the *tap* ``(m, n)`` of the padded input, the strided slice

    X_{mn}[b, i, j, c] = x_pad[b, s1*i + d1*m, s2*j + d2*n, c]        (N, H_out, W_out, C),

the three sums read (channels per group ``g``; ``b`` indexes the batch):

* Eq 7 (forward):   ``y = sum_{m,n} X_{mn} @ w[m, n]``
* Eq 13 (weights):  ``dE/dw[m, n] = X_{mn}^T @ delta``   (the sum over ``b, i, j`` is the matmul's)
* Eq 20 (inputs):   ``dE/dx = sum_{m,n} place_{mn}(delta @ w[m, n]^T)``, where ``place_{mn}`` puts
  the ``(i, j)`` entry at padded unit ``(s1*i + d1*m, s2*j + d2*n)`` (``lax.pad`` with interior
  padding ``s - 1``) and crops the padding: the article's ``sum_{m,n} delta_{i'-m, j'-n} w_{m,n}``.

Lowerings (the names of the private switch, see `force`):

* ``"xla"`` — one ``lax.conv_general_dilated`` per formula, written in `jaxcnn.conv` (Eq 7, Eq 14,
  Eq 22). On GPU that is cuDNN; on CPU it is slow when a channel count is small (LeNet's 1 -> 6
  maps), for the input gradient (a convolution of the stride-dilated deltas) and for the weight
  gradient (its "kernel" is the whole delta map).
* ``"taps"`` — the sums over ``(m, n)`` above as written: one small matmul (a ``dot_general`` over
  the channels) per tap, accumulated. With one input channel the forward taps are broadcast
  products that XLA fuses into a single loop.
* ``"patches"`` — im2col: the taps stacked on two new axes, ``P = [X_{mn}]_{m,n}``
  ``(N, H_out, W_out, k1, k2, C)`` (built separably, ``k1 + k2`` slices), make each sum *one*
  matmul: ``y = P @ W``, ``dE/dw = P^T @ delta`` (Eq 13's sum, exactly), ``dE/dx =
  col2im(delta @ W^T)`` (Eq 20's sum over the taps of one product). When ``P`` would exceed twice
  a small budget (2 MiB, `Plan.chunk_bytes`) the batch goes through a `lax.scan` in chunks, so
  that the patches stay in cache and the compiled temporary memory stays small.
* ``"auto"`` (default) — on CPU the measured best per formula and shape (`choose`: patches for
  both gradients; for the forward pass taps, patches or XLA's convolution by channel count); on
  every other platform ``"xla"``, by ``lax.platform_dependent``, so GPUs keep cuDNN.

Every lowering is differentiable ``lax``/``jnp`` code (``jax.grad`` of a backward rule works),
keeps the input dtype and accumulates bfloat16/float16 products in float32.
"""

from __future__ import annotations

import contextlib
import functools
import math
import operator
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxcnn._specs import ConvSpec

LOWERINGS = ("auto", "xla", "taps", "patches")
POOL_LOWERINGS = ("auto", "general")
_CHUNK_BYTES = 1 << 21  # patches per scan step: 2 MiB stays in cache (measured: 1-3 MiB best)


class Plan(NamedTuple):
    """The static lowering of one conv call, traced into its custom VJP with the configuration."""

    name: str = "auto"  # one of LOWERINGS
    chunk_bytes: int = _CHUNK_BYTES  # bytes of patches per batch chunk (one `lax.scan` step)
    pool: str = "auto"  # one of POOL_LOWERINGS: "general" forces pooling's strided-slice path


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
    """The lowering a conv or pool traced now uses (`force`'s, default "auto")."""
    return _forced


# ------------------------------------------------------------------------------- the choice
# Measured on a 2-core AVX-512 CPU, quiet (experiments/benchmark.py's shapes, batch 128 unless
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
_MANY = 4096  # output positions (N * H_out * W_out) from which those taps pay
_WIDE = 16  # input channels per group from which the forward pass is patches rather than XLA's
_GROUPS = 4  # more groups than this stay with XLA's convolution (the matmul forms loop over them)
# Above this many taps (k1 * k2) the per-tap and patches forms unroll into too many slices: a 28x28
# kernel compiled for ~15 s and ran 30x slower than XLA's convolution. Such kernels stay on "xla".
_MAX_TAPS = 64


def choose(formula: str, spec: ConvSpec, n: int, c: int, d: int) -> str:
    """The CPU lowering of `formula` ("forward", "input", "weight") for a batch of `n`, C -> D."""
    del d
    c_g = c // spec.groups
    if spec.groups > _GROUPS or math.prod(spec.kernel) > _MAX_TAPS:
        return "xla"
    if formula == "forward" and c_g <= _TINY:
        return "taps" if n * math.prod(spec.out_hw) >= _MANY else "patches"
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


def pad_input(x: jax.Array, spec: ConvSpec) -> jax.Array:
    """The input with its border of `pad_value` (LeCun 1989 pads with -1)."""
    (top, bottom), (left, right) = spec.pads
    if (top, bottom, left, right) == (0, 0, 0, 0):
        return x
    value = jnp.asarray(spec.pad_value, x.dtype)
    return lax.pad(x, value, ((0, 0, 0), (top, bottom, 0), (left, right, 0), (0, 0, 0)))


def _tap(xp: jax.Array, m: int, n: int, spec: ConvSpec, hw: tuple[int, int] = (1, 2)) -> jax.Array:
    """``X_{mn}[b, i, j, c] = x_pad[b, s1*i + d1*m, s2*j + d2*n, c]``: (N, H_out, W_out, C).

    `hw` are the spatial axes of `xp` (the other axes are kept whole)."""
    (s1, s2), (d1, d2), (ho, wo) = spec.stride, spec.dilation, spec.out_hw
    start, limit, step = [0] * xp.ndim, list(xp.shape), [1] * xp.ndim
    for axis, off, s, out in ((hw[0], d1 * m, s1, ho), (hw[1], d2 * n, s2, wo)):
        start[axis], limit[axis], step[axis] = off, off + (out - 1) * s + 1, s
    return lax.slice(xp, start, limit, step)


def _taps(spec: ConvSpec) -> list[tuple[int, int]]:
    return [(m, n) for m in range(spec.kernel[0]) for n in range(spec.kernel[1])]


def _place(z: jax.Array, m: int, n: int, spec: ConvSpec, in_hw: tuple[int, int]) -> jax.Array:
    """Eq 20's shift: ``z[b, i, j]`` goes to unit ``(s1*i + d1*m - top, s2*j + d2*n - left)`` of the
    unpadded input, zeros elsewhere (interior padding ``s - 1``; negative pads crop the border)."""
    (s1, s2), (d1, d2), (ho, wo) = spec.stride, spec.dilation, spec.out_hw
    (top, _), (left, _) = spec.pads
    lo_h, lo_w = d1 * m - top, d2 * n - left
    hi_h = in_hw[0] - lo_h - (ho - 1) * s1 - 1
    hi_w = in_hw[1] - lo_w - (wo - 1) * s2 - 1
    zero = jnp.zeros((), z.dtype)
    return lax.pad(z, zero, ((0, 0, 0), (lo_h, hi_h, s1 - 1), (lo_w, hi_w, s2 - 1), (0, 0, 0)))


def _shift(x: jax.Array, axis: int, offset: int, stride: int, count: int) -> jax.Array:
    """``x[..., offset + stride*i, ...]`` for ``i < count`` along `axis` (one strided slice)."""
    start, limit, step = [0] * x.ndim, list(x.shape), [1] * x.ndim
    start[axis], limit[axis], step[axis] = offset, offset + (count - 1) * stride + 1, stride
    return lax.slice(x, start, limit, step)


def _unshift(z: jax.Array, axis: int, offset: int, stride: int, size: int) -> jax.Array:
    """The transpose of `_shift`: ``z[..., i, ...]`` placed at ``offset + stride*i`` of a zero axis of
    length `size` (a negative offset, or one running past `size`, crops: padded units)."""
    config = [(0, 0, 0)] * z.ndim
    config[axis] = (offset, size - offset - (z.shape[axis] - 1) * stride - 1, stride - 1)
    return lax.pad(z, jnp.zeros((), z.dtype), config)


def _patches(xp: jax.Array, spec: ConvSpec, hw: tuple[int, int], at: int) -> jax.Array:
    """All taps ``X_{mn}`` of `xp` (spatial axes `hw`) stacked as two new axes ``(k1, k2)`` at
    position `at` of the result, built separably: ``k2`` column slices, then ``k1`` row slices of
    those (``k1 + k2`` slices rather than ``k1 * k2``)."""
    (k1, k2), (s1, s2), (d1, d2), (ho, wo) = spec.kernel, spec.stride, spec.dilation, spec.out_hw
    cols = jnp.stack([_shift(xp, hw[1], d2 * n, s2, wo) for n in range(k2)], axis=at)
    row_axis = hw[0] + (at <= hw[0])  # the row axis moved if the new axis went before it
    return jnp.stack([_shift(cols, row_axis, d1 * m, s1, ho) for m in range(k1)], axis=at)


def _col2im(z: jax.Array, spec: ConvSpec, in_hw: tuple[int, int]) -> jax.Array:
    """Eq 20's sum over the taps, separably: ``z (N, H_out, W_out, k1, k2, C)`` holds the products
    ``delta @ w[m, n]^T``; each is placed at the units ``(s1*i + d1*m - top, s2*j + d2*n - left)``
    and the placements are summed — first over ``n`` along W, then over ``m`` along H."""
    (k1, k2), (s1, s2), (d1, d2) = spec.kernel, spec.stride, spec.dilation
    (top, _), (left, _) = spec.pads
    rows = _total(_unshift(z[:, :, :, :, n], 2, d2 * n - left, s2, in_hw[1]) for n in range(k2))
    return _total(_unshift(rows[:, :, :, m], 1, d1 * m - top, s1, in_hw[0]) for m in range(k1))


def _total(parts: Iterable[jax.Array]) -> jax.Array:
    """The sum of a non-empty sequence of arrays (no Python 0 to start from)."""
    return functools.reduce(operator.add, parts)


def _by_group(fn: Callable[..., jax.Array], spec: ConvSpec, args: list[tuple[jax.Array, int]],
              axis: int) -> jax.Array:
    """A grouped conv as `groups` ungrouped ones: ``fn(spec1, *slices)`` on each group's channels
    (each arg split along its given axis), the results concatenated along `axis`. Each group is
    then computed exactly as an ungrouped conv of its channels would be."""
    g = spec.groups
    one = spec._replace(groups=1)
    if g == 1:
        return fn(one, *(a for a, _ in args))
    parts = []
    for k in range(g):
        sliced = [lax.slice_in_dim(a, k * (a.shape[ax] // g), (k + 1) * (a.shape[ax] // g), axis=ax)
                  for a, ax in args]
        parts.append(fn(one, *sliced))
    return jnp.concatenate(parts, axis=axis)


# ------------------------------------------------------------------------------- batch chunks
def _chunk(n: int, per_example_bytes: int, budget: int) -> int:
    """Examples per scan step: the largest divisor of n whose patches fit `budget` bytes (but at
    least two examples: one-example steps cost more than they save)."""
    if n * per_example_bytes <= 2 * budget:
        return n  # small enough in one piece; a loop would only add overhead
    limit = max(2, budget // max(per_example_bytes, 1))
    return max(c for c in range(1, min(n, limit) + 1) if n % c == 0)


def _patch_bytes(spec: ConvSpec, c: int, dtype) -> int:
    """Bytes of one example's patches ``(H_out, W_out, k1*k2, C)``."""
    return math.prod(spec.out_hw) * math.prod(spec.kernel) * c * jnp.dtype(_acc_dtype(dtype)).itemsize


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
    total, _ = lax.scan(lambda acc, xs: (acc + fn(*xs), None),
                        jnp.zeros(shape.shape, shape.dtype), split)
    return total


# -------------------------------------------------------------------------------- Eq 7: y
# Each lowering is one `jax.jit` (static configuration): called eagerly it compiles once as a
# whole rather than op by op; inside an outer jit it is inlined. Groups: one ungrouped conv per
# group (`_by_group`); `choose` sends many groups to XLA's convolution instead.
@functools.partial(jax.jit, static_argnums=(2, 3))
def forward(x: jax.Array, kernel: jax.Array, spec: ConvSpec, plan: Plan) -> jax.Array:
    """Eq 7, ``y = sum_{m,n} X_{mn} @ kernel[m, n]``, by ``"taps"`` or ``"patches"``.

    `kernel` is the one correlated (``rot180(w)`` for flip=True); x ``(N, H, W, C)`` unpadded.
    """

    def taps(spec, x, kernel):  # one matmul per tap, accumulated
        xp = pad_input(x, spec)
        return _total(_einsum("bhwc,cd->bhwd", _tap(xp, m, n, spec), kernel[m, n]) for m, n in _taps(spec))

    def patches(spec, x, kernel):  # im2col: P (N, H_out, W_out, k1*k2*C) @ W (k1*k2*C, D)
        p = _patches(pad_input(x, spec), spec, (1, 2), 3)  # (N, H_out, W_out, k1, k2, C)
        return _einsum("bhwk,kd->bhwd", p.reshape(*p.shape[:3], -1), kernel.reshape(-1, kernel.shape[3]))

    fn = taps if plan.name == "taps" else patches
    size = _chunk(x.shape[0], _patch_bytes(spec, x.shape[3], x.dtype), plan.chunk_bytes)
    y = _map_chunks(lambda x: _by_group(fn, spec, [(x, 3), (kernel, 3)], 3), size, x)
    return y.astype(x.dtype)


# ------------------------------------------------------------------------------ Eq 13: dE/dw
@functools.partial(jax.jit, static_argnums=(2, 3))
def weight_grad(x: jax.Array, delta: jax.Array, spec: ConvSpec, plan: Plan) -> jax.Array:
    """Eq 13, ``dE/dkernel[m, n] = sum_{b,i,j} X_{mn}[b,i,j]^T delta[b,i,j]``, by taps or patches.

    Returns the gradient w.r.t. the kernel that was correlated, ``(k1, k2, C/G, D)``.
    """
    k1, k2 = spec.kernel

    def taps(spec, x, delta):  # one matmul per tap, contracting batch and positions
        xp = pad_input(x, spec)
        dk = jnp.stack([_einsum("bhwc,bhwd->cd", _tap(xp, m, n, spec), delta) for m, n in _taps(spec)])
        return dk.reshape(k1, k2, *dk.shape[1:])

    def patches(spec, x, delta):  # im2col: dE/dW = P^T @ delta, (k1*k2*C, D)
        # P^T is built directly as (k1, k2, C, N, H_out, W_out) from the channel-major input
        # (C, N, H, W), so that the matmul contracts the long axis without a transpose.
        pt = _patches(jnp.moveaxis(pad_input(x, spec), 3, 0), spec, (2, 3), 0)
        dk = _einsum("km,md->kd", pt.reshape(k1 * k2 * x.shape[3], -1), delta.reshape(-1, delta.shape[3]))
        return dk.reshape(k1, k2, x.shape[3], -1)

    fn = taps if plan.name == "taps" else patches
    size = _chunk(x.shape[0], _patch_bytes(spec, x.shape[3], x.dtype), plan.chunk_bytes)
    dk = _sum_chunks(lambda x, delta: _by_group(fn, spec, [(x, 3), (delta, 3)], 3), size, x, delta)
    return dk.astype(x.dtype)


# ------------------------------------------------------------------------------ Eq 20: dE/dx
@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def input_grad(
    delta: jax.Array, kernel: jax.Array, x_hw: tuple[int, int], spec: ConvSpec, plan: Plan
) -> jax.Array:
    """Eq 20, ``dE/dx = sum_{m,n} place_{mn}(delta @ kernel[m, n]^T)``, by taps or patches (col2im).

    `kernel` is the one the forward pass correlated with; the result is cropped to ``x_hw``.
    """

    def taps(spec, delta, kernel):  # per tap: delta @ kernel[m, n]^T, placed and accumulated
        return _total(_place(_einsum("bhwd,cd->bhwc", delta, kernel[m, n]), m, n, spec, x_hw)
                      for m, n in _taps(spec))

    def patches(spec, delta, kernel):  # col2im: Z = delta @ W^T (N, H_out, W_out, k1, k2, C)
        z = _einsum("bhwd,kd->bhwk", delta, kernel.reshape(-1, kernel.shape[3]))
        return _col2im(z.reshape(*z.shape[:3], *kernel.shape[:3]), spec, x_hw)  # Eq 20's sum

    fn = taps if plan.name == "taps" else patches
    c = kernel.shape[2] * spec.groups
    size = _chunk(delta.shape[0], _patch_bytes(spec, c, delta.dtype), plan.chunk_bytes)
    dx = _map_chunks(lambda delta: _by_group(fn, spec, [(delta, 3), (kernel, 3)], 3), size, delta)
    return dx.astype(delta.dtype)
