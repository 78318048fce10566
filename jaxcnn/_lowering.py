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
  gradient and for the weight gradient (whose "kernel" is the whole delta map). On CPU a 2-D one may
  compute an extra output column, cropped, to stay XLA's own (`jaxcnn._choice.widen`), a 1x1 one is
  a matmul of the strided input, and a grouped Eq 22 one convolution per group (`_eq22.by_groups`).
* ``"taps"`` — the sums over ``t`` as written: one small matmul per tap, accumulated. With one
  input channel the forward taps are broadcast products that XLA fuses into a single loop (its own,
  not YNNPACK's: `own_loop`); with 16 taps or more they go through a scan of two steps or more
  (`_REUSED_TAPS`), so that a conv output read twice is not computed twice.
* ``"patches"`` — im2col: all taps stacked, ``P = [X_t]_t`` ``(N, *out, k_1, ..., k_nd, C)`` (built
  separably, `jaxcnn._windows.gather`), make each sum *one* matmul: ``y = P @ W``,
  ``dE/dw = P^T @ delta`` (Eq 13's sum, exactly), ``dE/dx = col2im(delta @ W^T)``
  (`jaxcnn._windows.scatter`: Eq 20's sum over the taps). When ``P`` would exceed twice a small
  budget (2 MiB, `Plan.chunk_bytes`) the batch goes through a `lax.scan` in chunks (of one example
  when one example's patches exceed the budget), so that the patches stay in cache and the compiled
  temporary memory stays small.
  When one example's patches alone exceed 8 budgets (`_ROWS_AFTER`), the scan runs over blocks of output
  rows of each example instead (Eq 7 and Eq 13; ``force(rows=False)`` keeps the batch chunks).
* ``"phases"`` — Eq 20 only (Eq 7 and Eq 13 as ``"patches"``): the input gradient of a stride-``s``
  conv as ``prod(s)`` stride-1 correlations of the deltas, one per phase ``r`` of the input units
  ``s*q + r`` with the kernel taps ``t`` where ``d*t = r (mod s)`` (`jaxcnn._eq22.by_phases`; the
  "sub-pixel" form): no zeros are inserted between the deltas and there is no col2im. The XLA form
  of a strided Eq 22 (`jaxcnn.convolution`) is the same decomposition with XLA convolutions.
* ``"fold"`` — the same formula of a convolution with one spatial dim fewer (`jaxcnn._fold`): the
  first axis's taps become channels, so a 3-D conv is a 2-D one over ``k_1`` times the channels,
  itself lowered by ``"auto"`` (XLA's 2-D convolution or the matmul forms); in 1-D, ``"patches"``.
* Groups: every form batches its products over the groups, with the group axis moved first
  (one einsum, no loop); depthwise convs (one channel per group) are broadcast products that XLA
  fuses with the sum over the taps.
* ``"auto"`` (default) — on CPU the measured best per formula and shape (`jaxcnn._choice.choose`);
  on every other platform ``"xla"``, by ``lax.platform_dependent``, so GPUs keep cuDNN.

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

from jaxcnn import _eq22, _windows
from jaxcnn._specs import ConvSpec

LOWERINGS = ("auto", "xla", "taps", "patches", "phases", "fold", "subpixel")
POOL_LOWERINGS = ("auto", "general", "stacked", "sliced", "by_dim")
_CHUNK_BYTES = 1 << 21  # patches per scan step: 2 MiB stays in cache (measured: 1-3 MiB best)
# A strided conv's Eq 13 takes 1 MiB of patches a step: the compiled program's temporaries halved in
# the benchmark's transposed rows (their Eq 13 is a stride-2 conv's; 2-core EPYC, forward + backward,
# 2 MiB / 1 MiB, medians of 31 interleaved, two runs): 2-D 4x4/2 64->32 on 16x16 N=8 4.66 / 4.45 and
# 5.19 / 5.10 ms, 7.97 / 4.03 MiB; 1-D k4/2 on 1000 4.49 / 4.74 and 6.66 / 5.68 ms, 7.82 / 3.91 MiB
# (the unchanged 3-D row 19.09 / 19.89 and 21.31 / 21.34: the noise); every other row of the suite
# kept its temporaries (9 interleaved each). Not for stride 1: the LeNet-5 and wide LeNet steps (batch
# 128) ran 1.05x and 1.07x slower with it, temporaries unchanged.
_STRIDED_WEIGHT_CHUNK_BYTES = 1 << 20
# Blocks of output rows only when one example's patches exceed this many budgets. On a 2-core Xeon
# (quiet, ms; rows of 2 MiB blocks / batch chunks of two examples / the budget raised to 4 MiB):
# 3x3 64->64 56x56 (7 MiB per example) forward 21.5 / 11.6 / 11.3, weight grad 21.9 / 15.6 / 15.6;
# 1-D 32->64 k9 4000 (4.6 MiB) forward 14.2 / 10.3 / 9.7, weight grad 15.0 / 13.9 / 12.7. The rows
# scan kept the temporary memory lower, batch chunks are faster; the 2 MiB budget stays (LeNet-5's
# step: 9.2 MiB of temporaries, 23.6 MiB with 4 MiB).
_ROWS_AFTER = 8


class Plan(NamedTuple):
    """The static lowering of one conv call, traced into its custom VJP with the configuration."""

    name: str = "auto"  # one of LOWERINGS
    chunk_bytes: int = _CHUNK_BYTES  # bytes of patches per batch chunk (one `lax.scan` step)
    pool: str = "auto"  # one of POOL_LOWERINGS: "general" strided slices; "stacked", "sliced" sums;
    # "by_dim": strided slices, the max pool's backward one spatial dim at a time
    rows: bool = True  # one example's patches over budget: scan over blocks of output rows too
    curvature: bool = False  # backward rules propagate d2E/dy2 (`jaxcnn.curvature.second_order`)


_forced = Plan()  # the private switch


@contextlib.contextmanager
def force(name: str = "auto", *, pool: str = "auto", chunk_bytes: int | None = None,
          rows: bool = True) -> Iterator[None]:
    """Trace convs and pools with a forced lowering: the private switch for tests and gradcheck.

    Args:
      name: conv lowering, "auto" (default: per platform and shape), "xla", "taps", "patches",
        "phases", "fold" or "subpixel" (Eq 22 only; the patches' elsewhere); forced lowerings apply
        on every backend.
      pool: "auto" (the reshape path when stride == window; avg and l2 pooling's forward pass by
        per-tap slices where measured faster, see `jaxcnn.pooling`), "general" (strided slices
        always), "stacked" (avg and l2 pooling's forward pass reduces the stacked taps), "sliced"
        (it sums per-tap slices) or "by_dim" (strided slices, and a 2-D or 3-D max pool's backward
        routes the deltas one spatial dim at a time, as "auto" does for large inputs).
      chunk_bytes: batch-chunk budget of "taps"/"patches" (default 2 MiB); a tiny value (1) makes
        every batch of more than one example run through the chunked `lax.scan`, one per step.
      rows: when one example's patches exceed 8 budgets, scan over blocks of output rows
        (of every example) instead of batch chunks (Eq 7 and Eq 13; default True). With a tiny
        `chunk_bytes` and ``rows=True`` every conv runs row by row; ``rows=False`` keeps the batch chunks.

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
    _forced = Plan(name, _CHUNK_BYTES if chunk_bytes is None else chunk_bytes, pool, bool(rows))
    try:
        yield
    finally:
        _forced = previous


def requested() -> Plan:
    """The lowering a conv or pool traced now uses (`force`'s, default "auto"), and whether its
    backward is the second-order rule (inside `jaxcnn.curvature.second_order`)."""
    from jaxcnn import curvature  # a leaf module (imports jax only); read at trace time

    return _forced._replace(curvature=True) if curvature.active() else _forced


# ------------------------------------------------------------------------------------ helpers
def acc_dtype(dtype) -> jnp.dtype:
    """float32 accumulation for the 16-bit floats, the dtype itself otherwise."""
    dtype = jnp.dtype(dtype)
    return jnp.dtype(jnp.float32) if dtype.itemsize < 4 else dtype


def _einsum(spec_str: str, a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.einsum(spec_str, a, b, preferred_element_type=acc_dtype(a.dtype))


def matmul(a: jax.Array, w: jax.Array) -> jax.Array:
    """``a (..., C) @ w (C, D)`` in `a`'s dtype (16-bit floats accumulated in float32)."""
    return _einsum("...c,cd->...d", a, w).astype(a.dtype)


def geometry(spec: ConvSpec) -> _windows.Geometry:
    """The conv's windows: its kernel taps, spaced by the dilation, strided."""
    return _windows.Geometry(spec.size, spec.pads, spec.kernel, spec.dilation, spec.stride, spec.out)


def _tap_indices(spec: ConvSpec) -> list[tuple[int, ...]]:
    return list(itertools.product(*(range(k) for k in spec.kernel)))


def _spatial(spec: ConvSpec, first: int = 1) -> tuple[int, ...]:
    return tuple(range(first, first + spec.nd))


# ------------------------------------------------------------------------------- batch chunks
def chunk(n: int, per_example_bytes: int, budget: int) -> int:
    """Examples per scan step: the largest divisor of n whose patches fit `budget` bytes, one when
    even one example's do not. Steps of one example (they once were two at least) keep the
    compiled temporaries of a training step at or below XLA's convolutions' (issue 11's target),
    sometimes at a price. experiments/benchmark.py's rows on a quiet 2-core EPYC, forward and
    backward, ms and MiB of temporaries, one example per step / two (jax.grad's temporaries):
    3x3 64->64 56x56 (7 MiB of patches per example) 19.6 / 21.0 ms, 10.0 / 20.1 MiB (13.3);
    128->128 28x28 18.3 / 18.1 ms, 5.1 / 10.1 MiB (7.6); 256->256 14x14 (1.8 MiB) 16.9 / 15.7 ms,
    5.7 / 7.6 MiB (6.2); the 3-D conv's folded formulas (`_fold.fold_chunks`) 15.1 / 14.3 ms, 10.8 / 13.9
    MiB (10.8); grouped 3x3 128->128 28x28 11.0 / 10.4 ms, 8.2 / 13.2 MiB (7.2)."""
    if n * per_example_bytes <= 2 * budget:
        return n  # small enough in one piece (an empty batch too); a loop would only add overhead
    return _divisor_up_to(n, budget // max(per_example_bytes, 1))


def _divisor_up_to(n: int, limit: int) -> int:
    """The largest divisor of `n` no larger than `limit` (1 at least): the steps of an even scan."""
    return max(c for c in range(1, min(n, max(limit, 1)) + 1) if n % c == 0)


# The forward taps of a conv with one or two input channels are broadcast products that XLA fuses into
# the loop of whatever consumes them: a conv output read by a max pool's forward pass and by the
# activation's mask in the backward computed all its taps in each, inside their window loops. With
# this many taps or more, a batch small enough for one piece goes through a scan of two steps or
# more, whose output is written once. Measured (2-core EPYC, medians of 21-31 interleaved, whole
# batch fused / two steps, ms): training steps of LeNet-5 (C1 1 -> 6, 5x5) at batch 8 4.35 / 3.13, 16
# 2.83 / 1.88, 32 6.43 / 4.31, 5.41 / 3.44, 4.95 / 3.22 and 5.75 / 4.71, of the benchmark's wide LeNet
# (C1 1 -> 32, 5x5) at 16 12.04 / 8.97, at 48 31.24 / 20.67, 47.36 / 30.82 and 46.82 / 32.79;
# temporaries 1.9 -> 2.1, 3.9 -> 4.1, 7.7 -> 8.2, 5.6 -> 7.2 MiB (LeNet-5's step under `jax.grad` at
# batch 128: 24.2 MiB); conv -> relu -> 2x2 max pool alone, 5x5 1 -> 32 at batch 32, 2.74 / 2.65, 5x5
# 1 -> 6 at 16 with tanh 0.77 / 0.79. With 9 taps the scan did not pay: the benchmark's audio row (k9/4,
# 1 -> 32, N=8, the conv alone) 1.42 / 1.55 and with a relu 2.56 / 3.30, a 3x3 1 -> 16 conv -> relu ->
# pool at batch 64 3.12 / 3.29 (3x3 1 -> 32 at 32: 1.71 / 1.44). Larger batches go in chunks anyway
# (LeNet-5 at 128: 8 steps 10.45, 2 steps 9.85).
_REUSED_TAPS = 16


def _input_chunk(x: jax.Array, spec: ConvSpec, plan: Plan) -> int:
    """Examples per scan step of a form without patches (depthwise): their input within the budget."""
    per_example = math.prod(spec.size) * x.shape[-1] * jnp.dtype(acc_dtype(x.dtype)).itemsize
    return chunk(x.shape[0], per_example, plan.chunk_bytes)


def patch_bytes(spec: ConvSpec, c: int, dtype) -> int:
    """Bytes of one example's patches ``(*out, prod(k), C)``."""
    return math.prod(spec.out) * math.prod(spec.kernel) * c * jnp.dtype(acc_dtype(dtype)).itemsize


def _split_chunks(fn: Callable[..., jax.Array], size: int, arrays) -> tuple[list[jax.Array], Callable]:
    """The arrays split into `lax.scan`'s steps of `size` examples, and `fn` of one step's slices.
    One example per step is scanned over the batch axis itself, `fn` getting it as a batch of one:
    a unit chunk axis made XLA copy both whole arrays into another layout first (12 MiB for the 3x3
    64->64 56x56 weight gradient)."""
    if size == 1:
        return list(arrays), lambda *xs: fn(*(a[None] for a in xs))
    return [a.reshape(a.shape[0] // size, size, *a.shape[1:]) for a in arrays], fn


def map_chunks(fn: Callable[..., jax.Array], size: int, *arrays: jax.Array) -> jax.Array:
    """``fn`` applied to batch chunks of `size` examples (a `lax.scan`), results concatenated."""
    n = arrays[0].shape[0]
    if size >= n:
        return fn(*arrays)
    split, fn = _split_chunks(fn, size, arrays)
    _, out = lax.scan(lambda carry, xs: (carry, fn(*xs)), None, split)
    return out.reshape(n, *out.shape[2:])


def sum_chunks(fn: Callable[..., jax.Array], size: int, *arrays: jax.Array) -> jax.Array:
    """The sum of ``fn(chunk)`` over batch chunks of `size` examples (a `lax.scan` accumulating)."""
    n = arrays[0].shape[0]
    if size >= n:
        return fn(*arrays)
    split, fn = _split_chunks(fn, size, arrays)
    shape = jax.eval_shape(fn, *[a[0] for a in split])
    total, _ = lax.scan(lambda acc, xs: (acc + fn(*xs), None), jnp.zeros(shape.shape, shape.dtype), split)
    return total


def _rows(spec: ConvSpec, n: int, per_example_bytes: int, plan: Plan) -> int | None:
    """Output rows (first spatial dim) per scan step when one example's patches exceed 8 times the
    budget (a batch chunk of one or two examples would not stay in cache, and its buffer would
    outgrow XLA's convolution's temporary memory): the largest divisor of the rows whose patches
    fit the budget. None: batch chunks (`chunk`) do."""
    if not plan.rows or n == 0 or per_example_bytes <= _ROWS_AFTER * plan.chunk_bytes or spec.out[0] < 2:
        return None
    per_row = per_example_bytes // spec.out[0]
    return _divisor_up_to(spec.out[0], plan.chunk_bytes // max(per_row, 1))


def _row_blocks(spec: ConvSpec, xp: jax.Array, rows: int) -> tuple[ConvSpec, Callable, int]:
    """The conv of one block of `rows` output rows of one example: its spec (no padding: `xp` is
    padded), a function of the step index returning the block's padded-input slice, and the step
    count."""
    s0, span, blocks = spec.stride[0], (rows - 1) * spec.stride[0] + spec.extent[0], spec.out[0] // rows
    sub = spec._replace(pads=((0, 0),) * spec.nd, size=(span, *xp.shape[2:-1]), out=(rows, *spec.out[1:]))

    def block(i: jax.Array) -> jax.Array:
        one = lax.dynamic_slice_in_dim(xp, i // blocks, 1, 0)
        return lax.dynamic_slice_in_dim(one, (i % blocks) * rows * s0, span, 1)

    return sub, block, xp.shape[0] * blocks


# ------------------------------------------------------------------------------- groups
# A grouped conv is G ungrouped ones side by side. The matmul forms batch the products over the
# groups (one einsum, no Python loop): channels ``C = (G, C/G)`` and ``D = (G, D/G)`` are split
# and the group axis is moved *first* (`_lead`: a copy of the input or the deltas, not of the
# k-times larger patches), so that XLA's batched dot needs no transposes. When a group's
# contraction is tiny (depthwise: one input channel per group; or one output channel per group
# for Eq 20; or a one-by-one weight block per group for Eq 13) the products are broadcast
# multiplies that XLA fuses with the sum over the taps into one loop over the channels-last data.
def _split(a: jax.Array, groups: int) -> jax.Array:
    """``(..., C)`` -> ``(..., G, C/G)``."""
    return a.reshape(*a.shape[:-1], groups, a.shape[-1] // groups)


def _merge(a: jax.Array) -> jax.Array:
    """``(..., G, C/G)`` -> ``(..., C)``."""
    return a.reshape(*a.shape[:-2], a.shape[-2] * a.shape[-1])


def _lead(a: jax.Array, groups: int) -> jax.Array:
    """``(N, ..., C)`` -> ``(G, N, ..., C/G)``."""
    return jnp.moveaxis(_split(a, groups), -2, 0)


def _unlead(a: jax.Array) -> jax.Array:
    """``(G, N, ..., C/G)`` -> ``(N, ..., C)``."""
    return _merge(jnp.moveaxis(a, 0, -2))


def _group_kernel(kernel: jax.Array, groups: int) -> jax.Array:
    """``(*k, C/G, D)`` -> ``(G, *k, C/G, D/G)``."""
    return jnp.moveaxis(_split(kernel, groups), -2, 0)


def _lift(a: jax.Array, lead: int) -> jax.Array:
    """`a` with `lead` unit axes in front (explicit broadcasting: no implicit rank promotion)."""
    return a.reshape((1,) * lead + a.shape)


TINY = 2  # channels per group up to which a group's products are broadcast multiplies, not matmuls


def tiny(*sizes: int) -> bool:
    return math.prod(sizes) <= TINY


def own_loop(p: jax.Array) -> jax.Array:
    """`p` unchanged: rounded to its own precision, which is exact (NaN and inf included). Products
    summed by a reduction pass through it so that jax 0.10.2's CPU compiler computes them in its own
    loop: it otherwise hands the multiply and the sum together to YNNPACK, whose fusion takes both
    factors whole, so every tap of the padded input and a copy of the deltas were written out first
    (depthwise 3x3 64 56x56 N=8, Eq 13 on a 2-core EPYC: 4.6-6.4 ms that way, 3.4-3.6 ms this way).
    Pooling's sums of tap slices pass through it for the same reason (each slice was copied out), and
    the forward sum of broadcast taps (1-2 input channels), which a reduction of the output (a loss)
    took into YNNPACK (the benchmark's audio 1->32 row 3.30 / 2.16 and 2.60 / 1.65 ms that way / this
    way, 2.7 -> 6.6 MiB, `jax.grad` 8.3; LeNet-5's and wide LeNet's steps 8.87 / 9.11, 54.0 / 54.0)."""
    f = jnp.finfo(p.dtype)
    return lax.reduce_precision(p, exponent_bits=f.nexp, mantissa_bits=f.nmant)


def _each_group(a: jax.Array, c: int, c_g: int, m: int) -> jax.Array:
    """Channel `c` of every group of `a` ``(..., G*c_g)``, each repeated `m` times: ``(..., G*m)``
    with entry ``g*m + j`` = ``a[..., g*c_g + c]`` — lined up with the output channels of the groups,
    so that a tiny group's products are one channels-last broadcast multiply (XLA fuses the sum
    over the taps into a single vectorised loop)."""
    v = a if c_g == 1 else lax.slice_in_dim(a, c, a.shape[-1], c_g, axis=a.ndim - 1)
    if m == 1:
        return v
    return jnp.broadcast_to(v[..., None], (*v.shape, m)).reshape(*v.shape[:-1], v.shape[-1] * m)


# -------------------------------------------------------------------------------- Eq 7: y
# Each lowering is one `jax.jit` (static configuration): called eagerly it compiles once as a
# whole rather than op by op; inside an outer jit it is inlined.
@functools.partial(jax.jit, static_argnums=(2, 3))
def forward(x: jax.Array, kernel: jax.Array, spec: ConvSpec, plan: Plan) -> jax.Array:
    """Eq 7, ``y = sum_t X_t @ kernel[t]``, by ``"taps"`` or ``"patches"``.

    `kernel` ``(*k, C/G, D)`` is the one correlated (rotated for flip=True); x ``(N, *size, C)``
    unpadded. Returns ``(N, *out, D)``.
    """
    g, groups, nd = geometry(spec), spec.groups, spec.nd
    k, c_g, d = math.prod(spec.kernel), kernel.shape[-2], kernel.shape[-1]
    acc = acc_dtype(x.dtype)

    def taps(x):  # one matmul per tap, accumulated
        if groups == 1:
            xp = _windows.pad(x, spec.pads, spec.pad_value)
            y = _windows.total(_einsum("...c,cd->...d", _windows.tap(xp, g, t, _spatial(spec)), kernel[t])
                               for t in _tap_indices(spec))
            return own_loop(y) if tiny(c_g) else y  # broadcast products: `own_loop`
        if tiny(c_g):  # depthwise: per tap and input channel of a group, a broadcast product
            xp = _windows.pad(x, spec.pads, spec.pad_value).astype(acc)
            return _windows.total(_each_group(_windows.tap(xp, g, t, _spatial(spec)), c, c_g, d // groups)
                                  * _lift(kernel[(*t, c)].astype(acc), nd + 1)
                                  for t in _tap_indices(spec) for c in range(c_g))
        xp, kl = _windows.pad(_lead(x, groups), spec.pads, spec.pad_value, 2), _group_kernel(kernel, groups)
        return _unlead(_windows.total(_einsum("g...c,gcd->g...d", _windows.tap(xp, g, t, _spatial(spec, 2)),
                                              kl[(slice(None), *t)]) for t in _tap_indices(spec)))

    def patches(x):  # im2col: P (N, *out, K*C) @ W (K*C, D), batched over the groups
        if groups == 1:
            p = _windows.gather(_windows.pad(x, spec.pads, spec.pad_value), g, _spatial(spec), nd + 1)
            p = p.reshape(*p.shape[: nd + 1], k * c_g)
            return _einsum("...k,kd->...d", p, kernel.reshape(k * c_g, d))
        xp = _windows.pad(_lead(x, groups), spec.pads, spec.pad_value, 2)
        p = _windows.gather(xp, g, _spatial(spec, 2), nd + 2)  # (G, N, *out, *k, C/G)
        kl = _group_kernel(kernel, groups).reshape(groups, k * c_g, d // groups)
        return _unlead(_einsum("g...k,gkd->g...d", p.reshape(*p.shape[: nd + 2], k * c_g), kl))

    if groups > 1 and tiny(c_g) and plan.name == "taps":  # no patches: chunks of the input in cache
        size = _input_chunk(x, spec, plan)
        return map_chunks(taps, size, x).astype(x.dtype)
    per_example = patch_bytes(spec, x.shape[-1], x.dtype)
    rows = _rows(spec, x.shape[0], per_example, plan)
    if rows is not None:  # a scan over (example, block of output rows)
        sub, block, steps = _row_blocks(spec, _windows.pad(x, spec.pads, spec.pad_value), rows)
        _, y = lax.scan(lambda carry, i: (carry, forward(block(i), kernel, sub, plan)[0]), None,
                        jnp.arange(steps))
        return y.reshape(x.shape[0], spec.out[0], *y.shape[2:])
    fn = taps if plan.name == "taps" else patches  # "phases" changes Eq 20 only
    size = chunk(x.shape[0], per_example, plan.chunk_bytes)
    if plan.name == "taps" and groups == 1 and tiny(c_g) and k >= _REUSED_TAPS and size == x.shape[0] > 1:
        size = _divisor_up_to(x.shape[0], x.shape[0] // 2)  # two steps or more: see `_REUSED_TAPS`
    return map_chunks(fn, size, x).astype(x.dtype)


# ------------------------------------------------------------------------------ Eq 13: dE/dw
@functools.partial(jax.jit, static_argnums=(2, 3))
def weight_grad(x: jax.Array, delta: jax.Array, spec: ConvSpec, plan: Plan) -> jax.Array:
    """Eq 13, ``dE/dkernel[t] = sum_{b,i} X_t[b,i]^T delta[b,i]``, by taps or patches.

    Returns the gradient w.r.t. the kernel that was correlated, ``(*k, C/G, D)``.
    """
    g, groups, nd = geometry(spec), spec.groups, spec.nd
    c_g, d = x.shape[-1] // groups, delta.shape[-1]
    k, d_g = math.prod(spec.kernel), d // groups
    acc = acc_dtype(x.dtype)

    def stacked(dk):  # per-tap (C/G, D) blocks -> (*k, C/G, D)
        dk = jnp.stack(dk)
        return dk.reshape(*spec.kernel, *dk.shape[1:])

    def from_groups(dk):  # (G, *k, C/G, D/G) -> (*k, C/G, D)
        return _merge(jnp.moveaxis(dk, 0, -2))

    def depthwise(x, delta):  # per tap and input channel of a group, products summed
        # channels last, a `lax.scan` over the taps inside a scan over a few examples: one tap's
        # products live at a time (XLA materialised all k before their reductions when the taps
        # were unrolled: 7.7 MiB of temporaries for depthwise 3x3 64 56x56 N=8, one example per
        # step; by the taps' scan 4.7 MiB, two examples per step, and 2.5-2.7 against 2.8-3.2 ms in
        # three interleaved A/Bs on a 2-core EPYC; the whole batch per step 12.7 MiB, no faster).
        # `own_loop` keeps the products out of YNNPACK's fusion (4.9-5.0 ms without it).
        every, indices = tuple(range(nd + 1)), jnp.asarray(_tap_indices(spec), jnp.int32)

        def one(x, delta):
            xp, dl = _windows.pad(x, spec.pads, spec.pad_value).astype(acc), delta.astype(acc)

            def tap_sums(carry, t):  # (C/G, D): channel c of each group against its outputs
                xt = _windows.tap_at(xp, g, t, _spatial(spec))
                return carry, jnp.stack([jnp.sum(own_loop(_each_group(xt, c, c_g, d_g) * dl), axis=every)
                                         for c in range(c_g)])
            return lax.scan(tap_sums, None, indices)[1]
        size = _input_chunk(x, spec, plan)
        return sum_chunks(one, size, x, delta).reshape(*spec.kernel, c_g, d)

    def taps(x, delta):  # one matmul per tap, contracting batch and positions
        if groups == 1:
            xp = _windows.pad(x, spec.pads, spec.pad_value)
            return stacked([_einsum("...c,...d->cd", _windows.tap(xp, g, t, _spatial(spec)), delta)
                            for t in _tap_indices(spec)])
        xp, dl = _windows.pad(_lead(x, groups), spec.pads, spec.pad_value, 2), _lead(delta, groups)
        dk = jnp.stack([_einsum("g...c,g...d->gcd", _windows.tap(xp, g, t, _spatial(spec, 2)), dl)
                        for t in _tap_indices(spec)], axis=1)  # (G, K, C/G, D/G)
        return from_groups(dk.reshape(groups, *spec.kernel, c_g, d_g))

    def patches(x, delta):  # im2col: dE/dW = P^T @ delta, (K*C, D)
        rows = delta.shape[0] * math.prod(spec.out)
        # P^T is built directly as ([G,] *k, C/G, N, *out) from the channel-major input
        # ([G,] C/G, N, *size), so that the matmul contracts the long axis without a transpose.
        if groups == 1:
            xp = jnp.moveaxis(_windows.pad(x, spec.pads, spec.pad_value), -1, 0)
            pt = _windows.gather(xp, g, _spatial(spec, 2), 0)
            dk = _einsum("km,md->kd", pt.reshape(k * c_g, rows), delta.reshape(rows, d))
            return dk.reshape(*spec.kernel, c_g, d)
        xg = jnp.moveaxis(_split(x, groups), (-2, -1), (0, 1))  # (G, C/G, N, *size)
        pt = _windows.gather(_windows.pad(xg, spec.pads, spec.pad_value, 3), g, _spatial(spec, 3), 1)
        dl = _lead(delta, groups).reshape(groups, rows, d_g)
        dk = _einsum("gkm,gmd->gkd", pt.reshape(groups, k * c_g, rows), dl)
        return from_groups(dk.reshape(groups, *spec.kernel, c_g, d_g))

    if groups > 1 and tiny(c_g, d_g):  # every lowering: no patches, its own scan over the examples
        return depthwise(x, delta).astype(x.dtype)
    per_example = patch_bytes(spec, x.shape[-1], x.dtype)
    rows = _rows(spec, x.shape[0], per_example, plan)
    if rows is not None:  # a scan over (example, block of output rows), summing
        sub, block, steps = _row_blocks(spec, _windows.pad(x, spec.pads, spec.pad_value), rows)
        blocks = spec.out[0] // rows

        def step(total, i):
            one = lax.dynamic_slice_in_dim(delta, i // blocks, 1, 0)
            rows_delta = lax.dynamic_slice_in_dim(one, (i % blocks) * rows, rows, 1)
            # 16-bit inputs: each block's sum in float32 too (the blocks are summed in float32)
            return total + weight_grad(block(i).astype(acc), rows_delta.astype(acc), sub, plan), None

        total, _ = lax.scan(step, jnp.zeros((*spec.kernel, c_g, d), acc), jnp.arange(steps))
        return total.astype(x.dtype)
    fn = taps if plan.name == "taps" else patches
    # a scan step holds its sum and the running total, kernel-sized: no point in smaller patches
    # (512->512 7x7 N=8, 9 MiB of kernel, on a 2-core EPYC: by two examples 7.3 ms and 10.9 MiB of
    # temporaries, the whole batch at once 5.1 ms and 6.9 MiB)
    kernel_bytes = k * c_g * d * jnp.dtype(acc).itemsize
    budget = min(plan.chunk_bytes, _STRIDED_WEIGHT_CHUNK_BYTES) if max(spec.stride) > 1 else plan.chunk_bytes
    size = chunk(x.shape[0], per_example, max(budget, kernel_bytes))
    return sum_chunks(fn, size, x, delta).astype(x.dtype)


# ------------------------------------------------------------------------------ Eq 20: dE/dx
@functools.partial(jax.jit, static_argnums=(2, 3))
def input_grad(delta: jax.Array, kernel: jax.Array, spec: ConvSpec, plan: Plan) -> jax.Array:
    """Eq 20, ``dE/dx = sum_t place_t(delta @ kernel[t]^T)``, by taps or patches (col2im).

    `kernel` is the one the forward pass correlated with; returns ``(N, *size, C)``.
    """
    g, groups, nd = geometry(spec), spec.groups, spec.nd
    k, c_g, d = math.prod(spec.kernel), kernel.shape[-2], kernel.shape[-1]
    d_g = d // groups
    acc = acc_dtype(delta.dtype)

    def taps(delta):  # per tap: delta @ kernel[t]^T, placed and accumulated
        axes = _spatial(spec)
        if groups == 1:
            return _windows.total(_windows.place(_einsum("...d,cd->...c", delta, kernel[t]), g, t, axes)
                                  for t in _tap_indices(spec))
        if tiny(d_g):  # broadcast products (..., G, 1, D/G) * (G, C/G, D/G), summed over D/G
            dg = _split(delta, groups).astype(acc)[..., None, :]
            kg = jnp.moveaxis(_split(kernel, groups), -2, -3).astype(acc)  # (*k, G, C/G, D/G)
            return _windows.total(_windows.place(_merge(jnp.sum(dg * _lift(kg[t], nd + 1), axis=-1)), g, t,
                                                 axes)
                                  for t in _tap_indices(spec))
        dl, kl = _lead(delta, groups), _group_kernel(kernel, groups)
        return _unlead(_windows.total(
            _windows.place(_einsum("g...d,gcd->g...c", dl, kl[(slice(None), *t)]), g, t, _spatial(spec, 2))
            for t in _tap_indices(spec)))

    def patches(delta):  # col2im: Z = delta @ W^T (N, *out, *k, C), placed and summed
        if groups == 1:
            z = _einsum("...d,kd->...k", delta, kernel.reshape(k * c_g, d))
            return _windows.scatter(z.reshape(*z.shape[:-1], *spec.kernel, c_g), g, _spatial(spec), nd + 1)
        kl = _group_kernel(kernel, groups).reshape(groups, k * c_g, d_g)
        z = _einsum("g...d,gkd->g...k", _lead(delta, groups), kl)  # (G, N, *out, K*C/G)
        z = z.reshape(*z.shape[:-1], *spec.kernel, c_g)
        return _unlead(_windows.scatter(z, g, _spatial(spec, 2), nd + 2))

    if plan.name == "phases":  # Eq 22 as stride-1 correlations of the deltas (`by_phases`), no col2im
        sub_plan = plan._replace(name="taps" if groups > 1 and tiny(d_g) else "patches")
        return _eq22.by_phases(delta, kernel, spec, lambda dl, sub_k, sub: forward(dl, sub_k, sub, sub_plan))
    fn = taps if plan.name == "taps" else patches
    size = chunk(delta.shape[0], patch_bytes(spec, c_g * groups, delta.dtype), plan.chunk_bytes)
    return map_chunks(fn, size, delta).astype(delta.dtype)
