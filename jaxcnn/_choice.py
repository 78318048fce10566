r"""Which lowering the CPU takes for each formula and shape (private): `choose`, and the
measurements it was decided from, kept beside the thresholds with the shapes they came from.

The lowerings themselves (what each computes, and how) are `jaxcnn._lowering`'s; `jaxcnn.convolution`
runs each formula through `lowered`, which asks `choose` when a conv is traced with the "auto" lowering
on CPU (other platforms keep XLA's).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from jaxcnn._checks import Ints, Pads
from jaxcnn._lowering import TINY, Plan, patch_bytes, tiny
from jaxcnn._specs import ConvSpec

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
#
# The shapes people train (issue 11; experiments/benchmark.py's suite, batch 8 unless noted; ms,
# medians of 3-5 interleaved repeats on the same 2-core CPU under a load average of ~9, so only
# the ratios within a line mean anything; "phases" is Eq 22 as stride-1 correlations, `by_phases`;
# "xla" of a strided Eq 22 is also by phases):
#
#                                  forward              input grad                  weight grad
#                               xla  taps  patches   xla  taps  patches phases   xla  taps  patches
#   3x3 64->64 56x56            42   68    84        35   -     86      85       134  88    64
#   3x3 128->128 28x28          42   -     32        40   -     46      -        -    -     -
#   3x3 256->256 14x14          44   49    42        51   -     48      47       67   55    47
#   3x3/2 64->128 from 56x56    22   34    34        21   -     18      21       54   33    31
#   1-D 32->64 k9 4000          31   53    52        33   -     37      97       50   55    52
#    (again, load 6)            25   58    47        28   42    38      -        39   47    41
#   3-D 16->32 3^3 8x32x32 N=4  135  110   100       216  76    129     233      144  67    84
#   3-D 4^3/2 (transposed) N=4  -    -     -         147  -     144     39       -    -     -
#   2-D 4x4/2 (transposed)      -    -     -         2.6  -     4.0     3.1      -    -     -
#   depthwise 3x3 64 56x56      225  7.6   52        521  36    39      -        308  98*   155
#   groups 4 3x3 128 28x28      37   32    30        27   26    54      -        976  36    20
#   C3 14x14x6->16 (N=128)      2.0  7.1   2.5       6.5  4.4   2.9     -        -    -     -
#   (* the depthwise weight taps: per tap a product reduced over the channel-major data)
#
# XLA's convolution is fast for 1-D/2-D layers with many channels (it is at matmul speed there,
# beating patches whose per-example buffer no longer fits the cache), and slow in 3-D, for
# groups and for small channel counts; its weight gradient is slow everywhere.
#
# Folded (`fold_spec`: the depth's taps as channels of a 2-D conv, itself lowered by this table),
# on a 2-core Xeon under a load average of ~3 (ms, medians of 5; through `jaxcnn.convolution`):
#
#                                  forward              input grad            weight grad
#                               fold  xla  taps patches  fold  xla  taps  phases  fold  xla  taps patches
#   3-D 16->32 3^3 8x32x32 N=4  15.9  44   18.8  28.8    18.5  112  20.5  -       16.3  67   21.7  33.2
#   3-D 16->32 4^3/2 16x32x32   7.2   13   10.9  11.3    7.9   31   32.7  13.3    8.0   78   11.4  12.9
#   (the conv that "transpose 3-D 32->16 4^3/2 8x16x16" transposes)
#   2-D 3x3 64->64 56x56        15.7  12.7 -     23.5    13.6  8.4  -     -       22.3  79   -     22.7
#
# Quiet, same Xeon: groups 4 3x3 128 28x28, input grad xla 4.3, phases 5.4, taps 7.1, patches 7.8.
_MANY = 4096  # output positions (N * prod(out)) from which those taps pay
_WIDE = 16  # input channels per group from which a 1-D forward pass is patches rather than XLA's
_BIG = 4 << 20  # bytes of one example's patches from which a wide 1-D forward pass is XLA's
# On a 2-core Xeon (quiet, ms, xla / patches; XLA's 2-D convolutions were YNNPACK's, see `widen`)
# XLA's convolution won where an example has many positions and the batch few of them in all:
# forward 128->128 28x28 N=8 6.3 / 8.9, the folded 3-D conv (48->32 32x32 N=32) 6.3 / 8.9, 256->256
# 14x14 6.5 / 7.3, 512->512 7x7 14.4 / 8.7, 64->64 32x32 N=128 93 / 70; input grad (by the size of
# the batch's col2im buffer, `delta @ W^T`) 128->128 28x28 (29 MiB) 6.5 / 10.2, the folded 3-D conv
# (56 MiB) 4.1 / 10.3, wide LeNet's 14x14x32->64 5x5 N=128 (41 MiB) 10.7 / 14.7, 64->64 32x32 N=128
# (302 MiB) 53 / 78, 256->256 14x14 (14 MiB) 7.9 / 6.9, 512->512 7x7 (7 MiB) 12.5 / 7.9, 64->64 8x8
# N=128 (19 MiB) 3.7 / 6.6.
# XLA's own 2-D convolution (`widen`) then beat the patches forward on every 2-D shape measured (2-core
# EPYC, ms, medians of 7-9 interleaved, xla / patches): 3x3 64->64 56x56 N=8 5.25 / 6.57, 128->128
# 28x28 4.40 / 4.87, 256->256 14x14 4.38 / 4.57 (N=32 20.9 / 29.1), 512->512 7x7 4.68 / 4.52, 64->64
# 32x32 N=128 47.8 / 81.9, 64->64 8x8 N=128 1.84 / 2.49, wide LeNet's 5x5 32->64 14x14 N=128 5.45 /
# 7.56; groups 4 3x3 128->128 28x28 2.17 / 2.81, groups 2 64->64 56x56 4.91 / 4.97, groups 8 256->256
# 14x14 1.37 / 1.94.
_XLA_POSITIONS = 400  # forward (1-D): positions per example from which XLA's convolution is taken,
_XLA_ROWS = 1 << 16  # ... up to this many positions in the batch
_XLA_COL2IM = 16 << 20  # input grad: bytes of the batch's col2im buffer from which XLA's is taken
# A strided wide input gradient over few output positions per example is fastest as per-tap matmuls
# scattered into the phases (2-core EPYC, 3x3/2 padding 1, batch 8 unless noted, ms, medians of 9
# interleaved, xla (by phases) / taps / patches, temp MiB): 256->512 from 14x14 (7x7 out) 7.78 / 5.09 /
# 5.78 (5.0 / 4.8 / 10.3), N=32 27.2 / 20.4 / 20.4, 512->512 from 14x14 15.2 / 11.4 / 11.2, 128->128
# from 14x14 1.31 / 1.38 / 1.36, 256->256 from 14x14 3.58 / 2.91 / 5.14, 256->512 from 20x20 (10x10
# out) 13.3 / 10.5 / 10.6; with fewer deltas' channels (the per-tap matmuls' depth) or 14x14 outputs
# and more XLA's is as fast or faster: 128->128 from 14x14 1.30 / 1.40 / 0.97 (N=32 4.31 / 5.20 /
# 3.54), 128->256 from 28x28 5.93 / 7.14 / 5.77, 64->128 from 56x56 6.60 / 6.04 / 7.04.
_FEW = 100  # output positions per example up to which that strided input gradient is "taps"
_DEEP = 256  # ... given at least this many deltas' channels
# Above this many taps (prod(k)) the per-tap and patches forms unroll into too many slices: a 28x28
# kernel compiled for ~15 s and ran 30x slower than XLA's convolution. Such kernels stay on "xla".
_MAX_TAPS = 64
# A 2-D forward pass strided on every axis cannot be widened out of YNNPACK (`widen`); folded (`fold_spec`:
# the rows' taps as channels of 1-D convolutions, which YNNPACK does not take) it ran faster over 32-64
# input channels, not over more or fewer. Inside `relu(conv + b)` with every gradient (2-core EPYC, ms,
# medians of 11-21 interleaved, YNNPACK / folded; batch 8 unless noted): 3x3/2 64->128 from 56x56 26.9 /
# 22.5 and 24.8 / 20.0, 32->64 from 112x112 38.3 / 31.0, 64->128 from 28x28 8.2 / 6.4, 64->64 from 32x32
# N=32 22.1 / 18.9, 5x5/2 32->64 from 28x28 N=64 40.1 / 34.9, the transposed 2-D conv's Eq 7 (4x4/2
# 32->64 from 32x32) 4.60 / 4.22 and 4.01 / 3.67, 4x4/2 64->128 from 32x32 12.4 / 12.4 (4.3 / 7.1 MiB);
# over 128-256 channels 3x3/2 128->256 from 28x28 19.7 / 19.5 and 18.0 / 18.1, from 56x56 N=4 40.0 /
# 37.4, 256->512 from 14x14 18.1 / 18.0 and 16.9 / 16.4 (8.3 / 14.0 MiB); over 3, the 7x7/2 stem 3->64
# from 224x224 N=4 40.5 / 49.7. Alone, the forward pass gained more (3x3/2 64->128 11.3 / 6.6 ms,
# 128->256 9.5 / 5.8, 256->512 7.3 / 5.6), but with nothing after it YNNPACK fuses the benchmark's loss
# `sum(y * ct)` into the convolution (its row: 20.8 / 22.3 ms), which a bias or a normalisation prevents.
# A 3-D conv's folded 2-D forward pass takes the rule too: the transposed 3-D conv's Eq 7 (4^3/2 16->32
# from 16x32x32, 64 folded channels) in the benchmark's row, 16.6 / 15.1 ms (21 interleaved).
_FOLD_STRIDED = 64  # input channels up to which that forward pass is folded


def _fold_strided(spec: ConvSpec, c: int) -> bool:
    """A 2-D forward pass the CPU compiler hands to YNNPACK that `widen` cannot keep XLA's (strided on
    every axis, more than one tap), over 17-64 input channels: there 1-D convolutions over the rows'
    taps were faster (`_FOLD_STRIDED`)."""
    return min(spec.stride) > 1 and _YNN_CHANNELS < c <= _FOLD_STRIDED and math.prod(spec.kernel) > 1


# A strided 3-D Eq 22 whose kernel spans whole phases (k a multiple of s, some k > s) is fastest as
# one stride-1 Eq 22 over the input's phases (`_eq22.subpixel`, itself folded) rather than folded
# as it is (2-core EPYC, input gradient alone, ms, medians of 9 interleaved, fold / subpixel, temp
# MiB): 4^3/2 16->32 from 16x32x32 N=4 (the benchmark's transposed 3-D conv) 14.8 / 5.8 (15.8 /
# 9.0), 32->64 N=2 18.5 / 12.9, 64->32 from 8x16x16 3.8 / 3.6 (8.9 / 5.1), 8->16 from 32^3 N=2 2.1 /
# 1.3, 4^3/4 2.2 / 0.6, 1x4x4/(1,2,2) 3.1 / 2.1; with k = s (one tap per phase) 0.93 / 1.06. In 2-D
# the phases' correlations were faster (4x4/2 32->64 from 32x32 N=8: 1.14-1.64 / 1.49-2.13), in 1-D
# neither (k4/2 32->64 on 2000: 1.30-1.38 / 1.18-1.47).
def _whole_phases(spec: ConvSpec) -> bool:
    """Every kernel axis spans whole phases (k a multiple of s, no dilation), one of them several."""
    pairs = list(zip(spec.kernel, spec.stride, strict=True))
    return all(k % s == 0 for k, s in pairs) and max(spec.dilation) == 1 and any(k > s for k, s in pairs)


def choose(formula: str, spec: ConvSpec, n: int, c: int, d: int) -> str:
    """The CPU lowering of `formula` ("forward", "input", "weight") for a batch of `n`, C -> D."""
    g = spec.groups
    c_g, d_g = c // g, d // g
    strided = any(s > 1 for s in spec.stride)
    if math.prod(spec.kernel) > _MAX_TAPS:
        return "xla"
    if g > 1:  # grouped: batched over the groups; depthwise: broadcast products
        if formula == "forward":
            return "taps" if tiny(c_g) else ("xla" if spec.nd == 2 else "patches")
        if formula == "input":
            return "phases" if tiny(d_g) else "xla"
        return "taps" if tiny(c_g, d_g) else "patches"
    if formula == "forward" and c_g <= TINY:
        return "taps" if n * math.prod(spec.out) >= _MANY else "patches"
    if spec.nd == 3:  # XLA's 3-D convolution is slow: 2-D convolutions over the depth's taps
        if formula == "input" and strided and _whole_phases(spec):
            return "subpixel"  # the stride-1 Eq 22 over the input's phases (measured above)
        return "fold"
    if formula == "forward" and spec.nd == 2 and _fold_strided(spec, c):
        return "fold"  # 1-D convolutions over the rows' taps: not YNNPACK's (measured above)
    if formula == "forward" and (c_g < _WIDE or spec.nd == 2):
        return "xla"
    buffer, positions = patch_bytes(spec, c, jnp.float32), math.prod(spec.out)
    if formula == "forward":
        many = positions >= _XLA_POSITIONS and n * positions <= _XLA_ROWS
        return "xla" if strided or many or buffer > _BIG else "patches"
    if formula == "input" and min(c, d) >= _WIDE and (strided or n * buffer >= _XLA_COL2IM):
        if strided and spec.nd == 2 and d >= _DEEP and positions <= _FEW:
            return "taps"  # few positions, deep deltas: per-tap matmuls (measured above)
        return "xla"  # strided: by phases (no inserted zeros); stride 1: a plain convolution
    if formula == "weight" and spec.nd == 1 and min(c, d) >= _WIDE and buffer > _BIG:
        return "xla"  # the wide 1-D weight gradient: XLA's 38.5 ms vs patches' 41 (1-D 32->64 k9 4000)
    return "patches"


def _empty_sum(formula: str, spec: ConvSpec, ncd: tuple[int, int, int], dtype) -> jax.Array:
    """The result of a formula over no input or no output channels (C or D 0): every entry is an empty
    sum, 0, or there are none. The lowerings are not asked: some sum Python lists of per-channel terms,
    then empty, and XLA's grouped convolution wants channels to split."""
    n, c, d = ncd
    shape = {"forward": (n, *spec.out, d), "input": (n, *spec.size, c),
             "weight": (*spec.kernel, c // spec.groups, d)}[formula]
    return jnp.zeros(shape, dtype)


def lowered(formula: str, plan: Plan, spec: ConvSpec, ncd: tuple[int, int, int], xla_form,
            matmul_form, folded, *args, subpixel=None):
    """``xla_form(*args)`` (one XLA convolution, as written in `jaxcnn.convolution`),
    ``matmul_form(*args, spec, plan)`` (`jaxcnn._lowering`'s sum over the taps), ``folded(*args)``
    (the same formula of a conv with one spatial dim fewer, `jaxcnn._fold.fold_spec`) or
    ``subpixel(*args)`` (Eq 22 only: the stride-1 formula over the input's phases, `_eq22.subpixel`):
    the forced lowering, or for "auto" the CPU's measured choice (`choose`), XLA's on other
    platforms. Forced where it has no such form, "fold" (1-D) and "subpixel" are the patches'."""
    if 0 in ncd[1:]:
        return _empty_sum(formula, spec, ncd, args[0].dtype)
    forms = {"fold": folded if spec.nd > 1 else None, "subpixel": subpixel}
    xla = partial(xla_form, cpu=False)
    if plan.name == "auto":
        plan = plan._replace(name=choose(formula, spec, *ncd))
        if plan.name != "xla":
            cpu = forms.get(plan.name) or (lambda *a: matmul_form(*a, spec, plan))
            return lax.platform_dependent(*args, cpu=cpu, default=xla)
    if plan.name == "xla":  # XLA's convolution, in the form the CPU runs fastest there
        return lax.platform_dependent(*args, cpu=partial(xla_form, cpu=True), default=xla)
    if forms.get(plan.name):
        return forms[plan.name](*args)
    return matmul_form(*args, spec, plan._replace(name="patches") if plan.name in forms else plan)


# XLA's CPU compiler (jax 0.10.2) hands a 2-D convolution to YNNPACK when it has more than 16 input or
# output channels, no batch groups, and no output wider than its input on any axis (its
# ynn_support.cc); XLA's own (Eigen) convolution was faster on every such shape measured. One output
# more than the input has along a stride-1 axis, cropped after, keeps the convolution XLA's. On a
# 2-core AMD EPYC (forward, batch 8 unless noted, ms, medians of 9 interleaved; YNNPACK / widened):
#   3x3 64->64 56x56 8.95 / 6.39, 128->128 28x28 5.61 / 5.46, 256->256 14x14 5.28 / 5.07, 512->512
#   7x7 6.46 / 5.23, groups 4 3x3 128->128 28x28 13.3 / 2.62, 5x5 32->64 14x14 N=128 23.3 / 6.14;
#   without YNNPACK at all (XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=) the strided ones ran
#   faster too (3x3/2 64->128 56x56 5.24 / 2.51, 1x1/2 64->128 0.66 / 0.32), but widening a strided
#   axis past its input doubles the work (measured 1.5-2.3x slower), so they stay YNNPACK's.
_YNN_CHANNELS = 16


# XLA's CPU convolution with feature groups ran slower than one convolution per group (each then kept out
# of YNNPACK by `widen` where its channels are many) on every shape measured but a tie in 3-D. The
# convolution alone, padding 1, 2-core EPYC, ms, medians of 9 interleaved, grouped / one per group: 2-D
# 3x3 batch 8 64->64 56x56 g2 8.95 / 6.24, g4 11.36 / 5.93; 128->128 28x28 g4 4.52 / 3.53 (N=32 21.87 /
# 13.98), g8 7.14 / 2.89, g16 12.26 / 3.96, g32 16.97 / 8.98; 256->256 14x14 g2 5.90 / 5.42, g8 2.29 /
# 2.15, g64 9.51 / 7.72 (1.2 s to compile, against 0.07); 3x3/2 128->128 from 56x56 g4 15.21 / 6.94;
# 96->96 56x56 g3 14.06 / 10.39; 1-D k9 64->64 on 4000 g2 9.02 / 7.69, g4 8.61 / 6.14; 3-D 3^3 on 8x32x32
# N=4 32->32 g2 46.35 / 47.36, 64->64 g4 102.29 / 92.72. Eq 22 takes it (`jaxcnn._eq22.by_groups`, via
# `per_group`): a scan over the groups writing each one's output into the whole in place (as a Python loop
# of slices and a concatenation its buffers were all live at once: the benchmark's grouped row held 10.4
# MiB of temporaries against `jax.grad`'s 7.2). Eq 7 does not: the scan's output, computed early by the
# CPU's breadth-first schedule, stayed live through the backward's Eq 13 loop. In that row (forward and
# backward, ms, medians of 21 interleaved; neither / Eq 7 / Eq 22 / both; MiB): 18.60 / 15.27 / 16.28 /
# 16.40, 15.42 / 13.63 / 14.80 / 13.07, 16.17 / 14.86 / 14.75 / 12.94; 5.06 / 8.12 / 5.20 / 8.26.
_SPLIT_GROUPS = 64  # groups up to which a grouped Eq 22 is one convolution per group (the most measured)


def split_groups(groups: int) -> bool:
    """Whether the CPU runs Eq 22 of `groups` feature groups as one convolution per group (above)."""
    return 1 < groups <= _SPLIT_GROUPS


def widen(size: Ints, extent: Ints, stride: Ints, pads: Pads,
          channels: tuple[int, int]) -> tuple[Pads, tuple[int, int] | None]:
    """The CPU's padding of a convolution over `size` (the kernel's `extent`, `stride`, `pads`,
    (C, D) `channels`), and ``(axis, out)``, the outputs to keep on that spatial axis, when it adds
    outputs to keep XLA's own convolution (see above); else `pads` unchanged and None."""
    out = [(n + lo + hi - e) // s + 1 for n, e, s, (lo, hi) in zip(size, extent, stride, pads, strict=True)]
    ynn = all(o <= n and e <= n for o, n, e in zip(out, size, extent, strict=True))
    if len(size) != 2 or max(channels) <= _YNN_CHANNELS or not ynn:
        return pads, None
    unit = [i for i, s in enumerate(stride) if s == 1]
    if not unit:
        return pads, None
    axis = max(unit, key=lambda i: out[i])  # the fewest extra outputs per output kept (rows or
    # columns alike: 3x3 64->64 56x56 5.27 / 5.21 ms, 512->512 7x7 4.81 / 4.84)
    lo, hi = pads[axis]
    wider = (*pads[:axis], (lo, hi + size[axis] - out[axis] + 1), *pads[axis + 1:])
    return wider, (axis, out[axis])
