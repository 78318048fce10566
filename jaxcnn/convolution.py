r"""Convolution layers in 1, 2 or 3 spatial dims: the forward cross-correlation (Eq 1-7), its backward
formulas (Eq 10-22), and the transposed convolution, whose forward pass is Eq 22.

Notation of the article, channels last here: the input ``o^{l-1}`` is ``x (N, *size, C)``, the kernel
``w (*k, C/groups, D)`` (WIO, HWIO, DHWIO), the pre-activation ``x^l`` is the output
``y (N, *out, D)``, and the deltas ``delta^l = dE/dx^l`` (Eq 15) have the output's shape. Nothing in
the article's sums is two-dimensional: they run over the kernel's taps ``t = (m, n, ...)``, one
index per spatial dim.

Forward (Eq 7, Eq 4 with channels; ``s`` the stride, ``d`` the dilation, one per dim)::

    y[b, i, :] = sum_t sum_c w[t, c, :] * x_pad[b, s*i + d*t, c] + bias

Backward, the custom VJP of `conv`, built from two public functions:

* `conv_weight_grad` — Eq 13-14: ``dE/dw[t] = sum_i delta[i] * x_pad[s*i + d*t]``, the (padded)
  input cross-correlated with the deltas;
* `conv_input_grad` — Eq 20-22: ``dE/dx = delta * rot180(w)``, the deltas (dilated by the stride)
  fully convolved with the rotated kernel, in/out channels swapped, cropped by the padding; the
  ``f'(x)`` factor of Eq 20 is applied by the activation's own rule;
* the bias gradient (asked for by the article's readers): the deltas summed over the batch, and
  over the positions as well for a tied bias ``b (D,)``.

`conv_transpose` is the same duality read the other way: its forward pass is Eq 22, its input
gradient Eq 7 and its kernel gradient Eq 14.

Each formula is written here as the article states it, one XLA convolution on the arrays the
equation names (`_correlate`). On CPU, XLA's convolution is slow, and the same sums run as
matmuls over the kernel taps: `jaxcnn._lowering.forward` (Eq 7), `.weight_grad` (Eq 13) and
`.input_grad` (Eq 20) — one call away, chosen per platform and shape by `_choice.lowered` (GPUs and TPUs
keep XLA's convolution, i.e. cuDNN). The choice is static, traced into the custom VJP with the
rest of the configuration; the private switch ``jaxcnn._lowering.force(name)`` forces one.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxcnn import _border, _choice, _eq22, _fold, _lowering, _windows
from jaxcnn._checks import check_array, check_plain_2d, fail
from jaxcnn._specs import (
    LAYOUTS,
    ConvSpec,
    conv_spec,
    input_grad_spec,
    padding_mode_check,
    transpose_spec,
    weight_grad_spec,
)

__all__ = [
    "conv",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_input_grad",
    "conv_weight_grad",
    "conv2d_input_grad",
    "conv2d_weight_grad",
    "conv_transpose",
    "correlate2d",
    "convolve2d",
    "rot180",
]

Size = int | tuple[int, ...]
Padding = str | int | tuple[int, ...] | tuple[tuple[int, int], ...]


def rot180(k: jax.Array) -> jax.Array:
    r"""Rotate a 2-D kernel by 180 degrees: flip its two leading (spatial) axes.

    ``rot180(K)[m, n] = K[k1 - 1 - m, k2 - 1 - n]`` — the ``K(-m, -n)`` of Eq 3, up to the shift
    that keeps indices non-negative.

    Args:
      k: ``(k1, k2, ...)`` array (a 2-D kernel or an HWIO kernel bank).

    Returns:
      The rotated array, same shape and dtype.
    """
    check_array("rot180", "k", k)
    if jnp.ndim(k) < 2:
        raise fail("rot180", f"`k` must have at least 2 dimensions (k1, k2, ...), got shape {jnp.shape(k)}")
    return k[::-1, ::-1]


def _rotate(w: jax.Array, nd: int) -> jax.Array:
    """The kernel rotated on every spatial axis (rot180 in 2-D): ``w[k - 1 - t]``."""
    return w[(slice(None, None, -1),) * nd]


# ------------------------------------------------------------------------------ the lowering
def _correlate(lhs: jax.Array, rhs: jax.Array, *, dims: tuple[str, str, str], strides: tuple[int, ...],
               pads: Any = None, pad_value: float = 0.0, rhs_dilation: tuple[int, ...] | None = None,
               feature_groups: int = 1, batch_groups: int = 1, cpu: bool = False,
               per_group: bool = False) -> jax.Array:
    """Eq 1 with channels, ``out[i] = sum_{t, c} lhs_pad[i*s + t*d, c] rhs[t, c]``, as one XLA
    convolution (which, like every framework's "convolution", does not flip); `pads` ``(lo, hi)`` of
    `pad_value` around `lhs`'s spatial axes (1, 2, ...). No ``lhs_dilation``: jax 0.10's CPU compiler
    aborts differentiating some of those, and they are slow; zeros are inserted by `lax.pad`.
    ``cpu``: the CPU's form, which may compute a few more outputs and crop them (`_choice.widen`);
    with ``per_group`` its feature groups one convolution at a time (`_choice.split_groups`)."""
    nd = len(strides)
    pads = tuple(pads or ((0, 0),) * nd)
    plain = dims[0] == dims[2] and batch_groups == 1  # channels last in and out: Eq 7's and Eq 22's
    if cpu and plain and feature_groups == 1 and math.prod(rhs.shape[:nd]) == 1:
        # one tap (1x1): the sum is a matmul of the strided input with the kernel (a 1x1/2 conv of
        # ResNet-18 at batch 8: 25-30% faster than XLA's convolution on a 2-core EPYC)
        taps = _windows.pad(lhs, pads, pad_value)[(slice(None), *(slice(None, None, s) for s in strides))]
        return _lowering.matmul(taps, rhs.reshape(rhs.shape[-2:]))
    if cpu and plain and per_group and _choice.split_groups(feature_groups):
        return _eq22.by_groups(partial(_correlate, dims=dims, strides=strides, pads=pads, pad_value=pad_value,
                                       rhs_dilation=rhs_dilation, cpu=True), lhs, rhs, feature_groups)
    if pad_value != 0 or min(min(p) for p in pads) < 0:  # a border the convolution's window cannot hold
        lhs, pads = _windows.pad(lhs, pads, pad_value), ((0, 0),) * nd
    crop = None
    if cpu and plain:
        dilation = rhs_dilation or (1,) * nd
        extents = tuple((k - 1) * d + 1 for k, d in zip(rhs.shape[:nd], dilation, strict=True))
        pads, crop = _choice.widen(lhs.shape[1:-1], extents, strides, pads, (lhs.shape[-1], rhs.shape[-1]))
    out = lax.conv_general_dilated(
        lhs, rhs, window_strides=strides, padding=pads, rhs_dilation=rhs_dilation,
        dimension_numbers=dims, feature_group_count=feature_groups, batch_group_count=batch_groups,
    )
    return out if crop is None else lax.slice_in_dim(out, 0, crop[1], axis=1 + crop[0])


# ------------------------------------------------------------------------------ Eq 7: forward
def _forward(x: jax.Array, w: jax.Array, spec: ConvSpec, plan: _lowering.Plan) -> jax.Array:
    """Eq 7, ``y[i] = sum_t w[t] . x_pad[s*i + d*t]``: one XLA convolution, or on CPU its sum over
    the taps as matmuls (`jaxcnn._lowering.forward`) or Eq 7 of a conv with one spatial dim fewer over
    the first axis's taps (`folded`, `jaxcnn._fold.fold_spec`: 3-D convs, strided 2-D ones)."""
    # Eq 7 (flip=False, cross-correlation) or Eq 6 (flip=True, convolution: rot180 first).
    kernel = _rotate(w, spec.nd) if spec.flip else w
    lhs, rhs = LAYOUTS[spec.nd]

    def eq7(x, kernel, cpu):
        y = _correlate(x, kernel, dims=(lhs, rhs, lhs), strides=spec.stride, pads=spec.pads,
                       pad_value=spec.pad_value, rhs_dilation=spec.dilation, feature_groups=spec.groups,
                       cpu=cpu)
        # the first `out` windows (fewer than fit when `conv_transpose` asked for output_padding)
        return y[(slice(None), *(slice(0, o) for o in spec.out))]

    def folded(x, kernel):  # Eq 7 in one dim fewer, the first axis's taps as channels
        def chunk(x):
            y = _forward(_fold.fold_input(x, spec), _fold.fold_kernel(kernel),
                         _fold.fold_spec(spec), plan._replace(name="auto"))
            return y.reshape(x.shape[0], spec.out[0], *y.shape[1:])

        return _fold.fold_chunks(chunk, spec, plan, x.shape[-1], x)

    ncd = (x.shape[0], x.shape[-1], w.shape[-1])
    return _choice.lowered("forward", plan, spec, ncd, eq7, _lowering.forward, folded, x, kernel)


# ---------------------------------------------------------------------------- Eq 20-22: dE/dx
def _input_grad(delta: jax.Array, w: jax.Array, spec: ConvSpec, plan: _lowering.Plan) -> jax.Array:
    """Eq 20-22, ``dE/dx``: Eq 22's full convolution of the stride-dilated deltas with the kernel
    (one XLA convolution), or on CPU Eq 20's sum over the taps, ``sum_t delta_{i'-t} w_t``, as one
    matmul and col2im (`jaxcnn._lowering.input_grad`), or in 3-D Eq 22 of a 2-D conv over the
    depth's taps, each tap placed back (`folded`), or Eq 22 of the stride-1 conv over the input's
    phases, each phase put back (`subpixel`, `jaxcnn._eq22.by_subpixel`)."""
    kernel = _rotate(w, spec.nd) if spec.flip else w  # the kernel the forward pass correlated with
    lhs, rhs = LAYOUTS[spec.nd]

    def eq22_phases(delta, kernel, cpu):
        # Eq 22 for a strided conv without the inserted zeros (sub-pixel form, `_eq22.phases`):
        # the input units s*q + r of each phase r are a stride-1 correlation of the deltas with
        # the kernel taps t where d*t = r (mod s); zero insertion (lhs dilation) is slow on CPU and GPU.
        def correlate(dl, sub_kernel, sub):
            return _correlate(dl, sub_kernel, dims=(lhs, rhs, lhs), strides=(1,) * spec.nd, pads=sub.pads,
                              rhs_dilation=sub.dilation, feature_groups=spec.groups, cpu=cpu, per_group=True)

        return _eq22.by_phases(delta, kernel, spec, correlate)

    def eq22(delta, kernel, cpu):
        if any(s > 1 for s in spec.stride):  # the deltas dilated by the stride, never built
            return eq22_phases(delta, kernel, cpu)
        # Eq 22 (stride 1; a strided conv's deltas would first be dilated, s - 1 zeros between
        # them, which `eq22_phases` never builds): the deltas zero-padded by extent - 1 on every
        # side ("full"), cross-correlated with rot180(kernel) — i.e. a full convolution with the
        # kernel, in/out channels swapped group by group. Units the forward windows never reached
        # get zeros (the extra high-side padding); the padding's units are not inputs, so their
        # gradients are never computed: "full" padding ``(e - 1, e - 1 + n + lo + hi - u)`` less
        # ``lo`` units low and ``hi`` high (negative: the deltas cropped).
        pads = [(e - 1 - lo, e - 1 + n + lo - u) for e, n, (lo, _), u in zip(
            spec.extent, spec.size, spec.pads, spec.used, strict=True)]
        swapped = _eq22.swap_io(_rotate(kernel, spec.nd), spec.groups)  # in/out swapped per group
        return _correlate(delta, swapped, dims=(lhs, rhs, lhs),
                          strides=(1,) * spec.nd, pads=pads, rhs_dilation=spec.dilation,
                          feature_groups=spec.groups, cpu=cpu, per_group=True)

    def folded(delta, kernel):  # Eq 22 in one dim fewer, each first-axis tap placed back
        dx3 = _input_grad(_fold.merge_first(delta), _fold.fold_kernel(kernel),
                          _fold.fold_spec(spec), plan._replace(name="auto"))
        return _fold.unfold_input(dx3, spec, delta.shape[0])

    def subpixel(delta, kernel):  # Eq 22 of the stride-1 conv over the input's phases, put back
        return _eq22.by_subpixel(delta, kernel, spec, lambda dl, sub_kernel, sub: _input_grad(
            dl, sub_kernel, sub, plan._replace(name="auto")))

    ncd = (delta.shape[0], kernel.shape[-2] * spec.groups, kernel.shape[-1])
    return _choice.lowered("input", plan, spec, ncd, eq22, _lowering.input_grad, folded, delta, kernel,
                           subpixel=subpixel)


# ---------------------------------------------------------------------------- Eq 10-14: dE/dw
def _weight_grad(x: jax.Array, delta: jax.Array, spec: ConvSpec, plan: _lowering.Plan) -> jax.Array:
    """Eq 13-14, ``dE/dw[t] = sum_i delta[i] o[s*i + d*t]``: Eq 14's correlation of the input with
    the deltas (one XLA convolution), or on CPU Eq 13's sum as one matmul ``P^T @ delta`` of the
    input's patches (`jaxcnn._lowering.weight_grad`), or in 3-D Eq 14 of a 2-D conv over the depth's
    taps, read back per tap (`folded`)."""
    sp = LAYOUTS[spec.nd][0][1:-1]  # the spatial letters: W, HW or DHW

    def eq14(x, delta, cpu):
        # Eq 13: dE/dw[t, c, d] = sum_{b, i} delta[b, i, d] * x_pad[b, s*i + d*t, c] — the padded
        # input cross-correlated with the deltas (the deltas are the "kernel", spaced by the
        # stride; the batch is the contracted dimension, channels c play the role of the batch).
        # Groups: input channel c of group g only meets deltas of group g (batch_group_count).
        x_pad = _windows.pad(x, spec.pads, spec.pad_value)[(slice(None), *(slice(0, u) for u in spec.used))]
        return _correlate(x_pad, delta, dims=("C" + sp + "N", "I" + sp + "O", sp + "NC"),
                          strides=spec.dilation, rhs_dilation=spec.stride, batch_groups=spec.groups, cpu=cpu)

    def folded(x, delta):  # Eq 14 in one dim fewer, read back per first-axis tap
        def chunk(x, delta):
            dk3 = _weight_grad(_fold.fold_input(x, spec), _fold.merge_first(delta),
                               _fold.fold_spec(spec), plan._replace(name="auto"))
            return _fold.unfold_kernel(dk3, spec)

        return _fold.fold_chunks(chunk, spec, plan, x.shape[-1], x, delta, summed=True)

    ncd = (x.shape[0], x.shape[-1], delta.shape[-1])
    dk = _choice.lowered("weight", plan, spec, ncd, eq14, _lowering.weight_grad, folded, x, delta)
    # flip=True correlated with rot180(w): the gradient w.r.t. w is the rotated gradient.
    return _rotate(dk, spec.nd) if spec.flip else dk


def _bias_grad(delta: jax.Array, tied: bool) -> jax.Array:
    """dE/db: the deltas summed over the batch, and over the positions too for a tied bias (Eq 4-5)."""
    return jnp.sum(delta, axis=tuple(range(delta.ndim - 1)) if tied else 0)


# ------------------------------------------------------------------------------ public grads
def _input_grad_call(fn: str, nd: int | None, delta, w, x_shape, **options):
    spec, _ = input_grad_spec(fn, delta, w, x_shape, nd=nd, **options)
    return _input_grad(delta, w, spec, _lowering.requested())


def conv_input_grad(
    delta: jax.Array, w: jax.Array, x_shape: tuple[int, ...], *, stride: Size = 1, padding: Padding = "VALID",
    dilation: Size = 1, groups: int = 1, flip: bool = False,
) -> jax.Array:
    r"""The deltas of the layer below, Eq 20-22: ``dE/dx = delta * rot180(w)`` (a full convolution).

    .. math::
        \frac{\partial E}{\partial x_{i',j'}} = \sum_{m,n} \delta_{i'-m,\,j'-n}\, w_{m,n}
        = \big(\delta * \mathrm{rot}_{180^\circ}\{w\}\big)_{i',j'}   \qquad (20\text{-}22)

    in 1, 2 or 3 spatial dims (one index per dim). Generalised: the deltas are first dilated by the
    stride (``s - 1`` zeros between neighbours), the kernel by `dilation`; in/out channels are
    swapped group by group; the result is cropped by the forward padding (gradients of padded
    units are dropped). The ``f'(x)`` factor of Eq 20 belongs to the activation that produced `x`
    and is applied by its own rule. This is exactly what the custom VJP of `conv` calls (PyTorch:
    ``torch.nn.grad.conv{1,2,3}d_input``), and the forward pass of `conv_transpose`.

    Args:
      delta: ``(N, *out, D)`` deltas of the conv's output, ``dE/dy``.
      w: ``(*k, C/groups, D)`` kernel (WIO, HWIO or DHWIO).
      x_shape: ``(N, *size, C)`` shape of the forward input.
      stride, padding, dilation, groups, flip: as given to `conv`.

    Returns:
      ``(N, *size, C)`` array ``dE/dx``, dtype of `delta`.
    """
    return _input_grad_call("conv_input_grad", None, delta, w, x_shape, stride=stride, padding=padding,
                            dilation=dilation, groups=groups, flip=flip)


def _weight_grad_call(fn: str, nd: int | None, x, delta, w_shape, **options):
    spec, _ = weight_grad_spec(fn, x, delta, w_shape, nd=nd, **options)
    return _weight_grad(x, delta, spec, _lowering.requested())


def conv_weight_grad(
    x: jax.Array, delta: jax.Array, w_shape: tuple[int, ...], *, stride: Size = 1, padding: Padding = "VALID",
    dilation: Size = 1, groups: int = 1, flip: bool = False, pad_value: float = 0.0,
) -> jax.Array:
    r"""The weight gradient, Eq 10-14: the (padded) input cross-correlated with the deltas.

    .. math::
        \frac{\partial E}{\partial w_{m',n'}} = \sum_{i=0}^{H-k_1} \sum_{j=0}^{W-k_2}
        \delta_{i,j}\, o_{i+m',\,j+n'} = \big(o \otimes \delta\big)_{m',n'}   \qquad (13)

    in 1, 2 or 3 spatial dims. Eq 14 writes the same sum as a convolution with ``rot180(delta)``.
    Generalised: input units are taken at ``s*i + d*t`` (stride, dilation), summed over the batch,
    channels matched per group; with `flip` the forward kernel was rotated and the result is
    rotated back. This is exactly what the custom VJP of `conv` calls (PyTorch:
    ``torch.nn.grad.conv{1,2,3}d_weight``).

    Args:
      x: ``(N, *size, C)`` forward input ``o^{l-1}``.
      delta: ``(N, *out, D)`` deltas ``dE/dy``.
      w_shape: ``(*k, C/groups, D)`` kernel shape.
      stride, padding, dilation, groups, flip, pad_value: as given to `conv`.

    Returns:
      ``(*k, C/groups, D)`` array ``dE/dw``, dtype of `x`.
    """
    return _weight_grad_call("conv_weight_grad", None, x, delta, w_shape, stride=stride, padding=padding,
                             dilation=dilation, groups=groups, flip=flip, pad_value=pad_value)


def conv2d_input_grad(
    delta: jax.Array, w: jax.Array, x_shape: tuple[int, int, int, int], *, stride: Size = 1,
    padding: Padding = "VALID", dilation: Size = 1, groups: int = 1, flip: bool = False,
) -> jax.Array:
    """`conv_input_grad` (Eq 20-22) for 2-D convolutions: delta NHWC, w HWIO, x_shape ``(N, H, W, C)``."""
    return _input_grad_call("conv2d_input_grad", 2, delta, w, x_shape, stride=stride, padding=padding,
                            dilation=dilation, groups=groups, flip=flip)


def conv2d_weight_grad(
    x: jax.Array, delta: jax.Array, w_shape: tuple[int, int, int, int], *, stride: Size = 1,
    padding: Padding = "VALID", dilation: Size = 1, groups: int = 1, flip: bool = False,
    pad_value: float = 0.0,
) -> jax.Array:
    """`conv_weight_grad` (Eq 10-14) for 2-D convolutions: x NHWC, delta NHWC, w_shape
    ``(k1, k2, C/g, D)``."""
    return _weight_grad_call("conv2d_weight_grad", 2, x, delta, w_shape, stride=stride, padding=padding,
                             dilation=dilation, groups=groups, flip=flip, pad_value=pad_value)


# ------------------------------------------------------------------------------------ conv
class _Residuals(NamedTuple):
    x: jax.Array  # the layer's input (o^{l-1} for Eq 13)
    w: jax.Array  # the kernel, for Eq 22


def _add_bias(y: jax.Array, b: jax.Array | None) -> jax.Array:
    # Explicit broadcast of the tied (D,) or untied (*out, D) bias over the batch: no implicit rank
    # promotion (it raises under jax_numpy_rank_promotion='raise').
    return y if b is None else y + jnp.broadcast_to(b, y.shape)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _conv(spec: ConvSpec, tied: bool | None, plan: _lowering.Plan, x: jax.Array, w: jax.Array,
          b: jax.Array | None) -> jax.Array:
    return _add_bias(_forward(x, w, spec, plan), b)  # Eq 7 (Eq 6 with flip)


def _conv_fwd(spec, tied, plan, x, w, b):
    return _conv(spec, tied, plan, x, w, b), _Residuals(x, w)


def _conv_bwd(spec, tied, plan, res, delta):
    if plan.curvature:
        return _conv_curvature_bwd(spec, tied, plan, res, delta)
    x, w = res
    dx = _input_grad(delta, w, spec, plan)  # Eq 22 (Eq 20)
    dw = _weight_grad(x, delta, spec, plan)  # Eq 14 (Eq 13)
    db = None if tied is None else _bias_grad(delta, tied)
    return dx, dw, db


def _conv_curvature_bwd(spec, tied, plan, res, h):
    """The diagonal Gauss-Newton rule (`jaxcnn.curvature`): Eq 22 and Eq 14 with squared factors.

    With ``h = d2E/dy2`` ``(N, *out, D)`` from above: ``h_x = Eq 22 with w*w`` ``(N, *size, C)``,
    ``h_w = Eq 14 with o*o`` ``(*k, C/groups, D)`` — the padded units are ``pad_value``, so their
    squares are ``pad_value**2`` — and ``h_b`` the ``h`` summed as the deltas are. Each output
    meets each input unit and each kernel tap through one connection, so this is exactly
    ``sum_j J[j, i]**2 h[j]``.
    """
    x, w = res
    hx = _input_grad(h, w * w, spec, plan)  # Eq 22 with w*w
    hw = _weight_grad(x * x, h, spec._replace(pad_value=spec.pad_value ** 2), plan)  # Eq 14 with o*o
    hb = None if tied is None else _bias_grad(h, tied)
    return hx, hw, hb


_conv.defvjp(_conv_fwd, _conv_bwd)


def _conv_call(fn: str, nd: int | None, x, w, b, *, padding_mode, **options) -> jax.Array:
    spec = conv_spec(fn, x, w, b, nd=nd, **options)
    mode = padding_mode_check(fn, padding_mode, spec)
    tied = None if b is None else jnp.ndim(b) == 1
    x = jnp.asarray(x)
    if mode != "zeros":
        x, spec = _border.mode_pad(x, spec, mode)
    return _conv(spec, tied, _lowering.requested(), x, jnp.asarray(w), b)


def conv(
    x: jax.Array, w: jax.Array, b: jax.Array | None = None, *, stride: Size = 1, padding: Padding = "VALID",
    dilation: Size = 1, groups: int = 1, flip: bool = False, pad_value: float = 0.0,
    padding_mode: str = "zeros",
) -> jax.Array:
    r"""Convolution layer in 1, 2 or 3 spatial dims (Eq 4-7); its backward pass is Eq 14 and Eq 22.

    .. math::
        x^l_{i,j} = \sum_m \sum_n \sum_c w^l_{m,n,c}\, o^{l-1}_{i+m,\,j+n,\,c} + b^l   \qquad (7)

    with one index per spatial dim (``i`` alone in 1-D, ``i, j, k`` in 3-D). ``flip=False``
    computes this cross-correlation (Eq 1, Eq 7) — what every framework calls "convolution".
    ``flip=True`` computes the true convolution (Eq 2, Eq 6): the kernel is rotated by 180
    degrees (reversed on every spatial axis) first (Eq 3). Either way the backward rule is the
    article's: `conv_weight_grad` (Eq 13-14), `conv_input_grad` (Eq 20-22) and the deltas summed
    for the bias. The number of spatial dims is ``w.ndim - 2``; `x` must match.

    Args:
      x: ``(N, *size, C)`` input (NWC, NHWC or NDHWC).
      w: ``(*k, C/groups, D)`` kernel bank (WIO, HWIO or DHWIO), ``D`` filters.
      b: None, a tied bias ``(D,)`` (Eq 4-5, one per filter) or an untied bias ``(*out, D)``
        (Eq 6-7's ``b_{i,j}``; LeCun 1989's units do not share biases).
      stride: int or one per spatial dim, >= 1.
      padding: ``"VALID"`` (the article's case), ``"SAME"`` (``ceil(n/s)`` outputs; an odd total puts
        the extra unit at the high end), ``"FULL"`` (``d*(k-1)`` each side), an int, one int per
        spatial dim, or one ``(lo, hi)`` pair per spatial dim.
      dilation: kernel dilation, int or one per dim, >= 1.
      groups: channel groups; ``C`` and ``D`` divisible by it.
      flip: rotate the kernel 180 degrees first (true convolution).
      pad_value: value of the padded border (LeCun 1989 pads with -1), a finite number that `x`'s
        dtype holds; padded units get no gradient.
      padding_mode: ``"zeros"`` (default: the border is `pad_value`), ``"reflect"`` (mirrored without
        the edge unit; each pad smaller than the input), ``"replicate"`` (the edge unit repeated) or
        ``"circular"`` (wrapped; each pad at most the input) — PyTorch's ``padding_mode``. The border
        then holds copies of input units, and their deltas fold back onto the units they copied
        (`pad_value` must stay 0; the rule is `jaxcnn._border`'s).

    Returns:
      ``(N, *out, D)`` with ``out = (n + lo + hi - d*(k-1) - 1) // s + 1`` per dim, dtype of `x`.

    Forward-mode differentiation (``jax.jvp``) is not supported (a `jax.custom_vjp`); use
    `jaxcnn.reference.conv` for that.

    >>> import jax.numpy as jnp, jaxcnn
    >>> jaxcnn.conv(jnp.ones((1, 8, 1)), jnp.ones((3, 1, 2)), stride=2).shape
    (1, 3, 2)
    """
    return _conv_call("conv", None, x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups,
                      flip=flip, pad_value=pad_value, padding_mode=padding_mode)


def conv1d(
    x: jax.Array, w: jax.Array, b: jax.Array | None = None, *, stride: Size = 1, padding: Padding = "VALID",
    dilation: Size = 1, groups: int = 1, flip: bool = False, pad_value: float = 0.0,
    padding_mode: str = "zeros",
) -> jax.Array:
    """`conv` (Eq 7; backward Eq 14, Eq 22) on sequences: x ``(N, W, C)``, w ``(k, C/groups, D)``."""
    return _conv_call("conv1d", 1, x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups,
                      flip=flip, pad_value=pad_value, padding_mode=padding_mode)


def conv2d(
    x: jax.Array, w: jax.Array, b: jax.Array | None = None, *, stride: Size = 1, padding: Padding = "VALID",
    dilation: Size = 1, groups: int = 1, flip: bool = False, pad_value: float = 0.0,
    padding_mode: str = "zeros",
) -> jax.Array:
    """`conv` (Eq 7; backward Eq 14, Eq 22) on images, the article's case: x ``(N, H, W, C)``,
    w ``(k1, k2, C/groups, D)``.

    >>> import jax.numpy as jnp, jaxcnn
    >>> jaxcnn.conv2d(jnp.ones((1, 4, 4, 1)), jnp.ones((2, 2, 1, 1))).shape
    (1, 3, 3, 1)
    """
    return _conv_call("conv2d", 2, x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups,
                      flip=flip, pad_value=pad_value, padding_mode=padding_mode)


def conv3d(
    x: jax.Array, w: jax.Array, b: jax.Array | None = None, *, stride: Size = 1, padding: Padding = "VALID",
    dilation: Size = 1, groups: int = 1, flip: bool = False, pad_value: float = 0.0,
    padding_mode: str = "zeros",
) -> jax.Array:
    """`conv` (Eq 7; backward Eq 14, Eq 22) on volumes and videos: x ``(N, D, H, W, C)``,
    w ``(k1, k2, k3, C/groups, D)``."""
    return _conv_call("conv3d", 3, x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups,
                      flip=flip, pad_value=pad_value, padding_mode=padding_mode)


# ------------------------------------------------------------------- the transposed convolution
@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _conv_transpose(spec: ConvSpec, tied: bool | None, plan: _lowering.Plan, x: jax.Array, w: jax.Array,
                    b: jax.Array | None) -> jax.Array:
    return _add_bias(_input_grad(x, w, spec, plan), b)  # Eq 22, with x in the deltas' place


def _conv_transpose_fwd(spec, tied, plan, x, w, b):
    return _conv_transpose(spec, tied, plan, x, w, b), _Residuals(x, w)


def _conv_transpose_bwd(spec, tied, plan, res, delta):
    if plan.curvature:
        return _conv_transpose_curvature_bwd(spec, tied, plan, res, delta)
    x, w = res
    dx = _forward(delta, w, spec, plan)  # Eq 7: the transpose of Eq 22 is the convolution itself
    dw = _weight_grad(delta, x, spec, plan)  # Eq 14, its output's deltas in the input's place
    db = None if tied is None else _bias_grad(delta, tied)
    return dx, dw, db


def _conv_transpose_curvature_bwd(spec, tied, plan, res, h):
    """The diagonal Gauss-Newton rule of `conv_transpose` (`jaxcnn.curvature`): ``h_x = Eq 7 with
    w*w`` ``(N, *n, D)``, ``h_w = Eq 14 with x*x`` (``h`` in the input's place, padded with 0),
    ``h_b`` the ``h`` summed; exactly ``sum_j J[j, i]**2 h[j]``."""
    x, w = res
    hx = _forward(h, w * w, spec, plan)  # Eq 7 with w*w
    hw = _weight_grad(h, x * x, spec, plan)  # Eq 14 with x*x
    hb = None if tied is None else _bias_grad(h, tied)
    return hx, hw, hb


_conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


def conv_transpose(
    x: jax.Array, w: jax.Array, b: jax.Array | None = None, *, stride: Size = 1,
    padding: int | tuple[int, ...] | tuple[tuple[int, int], ...] = 0, output_padding: Size = 0,
    dilation: Size = 1, groups: int = 1,
) -> jax.Array:
    r"""The transposed convolution ("deconvolution"), 1-3 spatial dims: Eq 22 as a layer.

    Its forward pass is the article's Eq 22 — the input spread back through the kernel exactly as
    the deltas of a convolution are (`conv_input_grad`); its backward pass is the duality read the
    other way: the input gradient is the convolution itself (Eq 7) and the kernel gradient Eq 14
    with the roles of input and deltas swapped:

    .. math::
        y = \big(x * \mathrm{rot}_{180^\circ}\{w\}\big)_{\text{full, stride-dilated}}  \quad (22), \qquad
        \frac{\partial E}{\partial x} = \delta \otimes w \quad (7), \qquad
        \frac{\partial E}{\partial w} = \delta \otimes x \quad (14)

    ``w (*k, C/groups, D)`` is the kernel of the convolution being transposed: that convolution maps
    ``C`` channels to ``D``, so `x` has ``D`` channels and the output ``C`` (PyTorch's ConvTranspose
    weight ``(D, C/groups, *k)`` is this array as ``w_torch.permute(2, ..., nd + 1, 1, 0)``: the
    spatial axes first, in order, then ``C/groups``, then ``D``).

    Args:
      x: ``(N, *n, D)`` input.
      w: ``(*k, C/groups, D)`` kernel.
      b: None, a tied bias ``(C,)`` or an untied bias ``(*out, C)``.
      stride, dilation: int or one per spatial dim, >= 1 (the convolution's).
      padding: the convolution's padding: an int, one per dim or one ``(lo, hi)`` pair per dim;
        it crops the output.
      output_padding: int or one per dim, each smaller than that dim's stride or dilation: units
        added at the high end (a convolution of stride ``s`` maps ``s`` input sizes to one output
        size; this picks which).

    Returns:
      ``(N, *out, C)``, ``out = (n - 1)*s - lo - hi + d*(k - 1) + 1 + output_padding`` per dim, dtype
      of `x`. Agrees with ``torch.nn.functional.conv_transpose{1,2,3}d``.

    >>> import jax.numpy as jnp, jaxcnn
    >>> jaxcnn.conv_transpose(jnp.ones((1, 2, 1)), jnp.ones((3, 1, 1)), stride=2)[0, :, 0]
    Array([1., 1., 2., 1., 1.], dtype=float32)
    """
    spec = transpose_spec("conv_transpose", x, w, b, stride=stride, padding=padding,
                          output_padding=output_padding,
                          dilation=dilation, groups=groups)
    tied = None if b is None else jnp.ndim(b) == 1
    return _conv_transpose(spec, tied, _lowering.requested(), jnp.asarray(x), jnp.asarray(w), b)


# -------------------------------------------------------------------------- Eq 1, 2 in 2-D
def correlate2d(I: jax.Array, K: jax.Array) -> jax.Array:  # noqa: N803 (the article's names)
    r"""Cross-correlation of a 2-D image with a 2-D kernel, valid mode (Eq 1).

    .. math::
        (I \otimes K)_{ij} = \sum_{m=0}^{k_1-1} \sum_{n=0}^{k_2-1} I(i+m, j+n)\, K(m, n)   \qquad (1)

    Args:
      I: ``(H, W)`` image.
      K: ``(k1, k2)`` kernel.

    Returns:
      ``(H - k1 + 1, W - k2 + 1)`` array. Built on `conv2d`, so differentiable by its rules.
    """
    check_plain_2d("correlate2d", I, K)
    return conv2d(I[None, :, :, None], K[:, :, None, None])[0, :, :, 0]


def convolve2d(I: jax.Array, K: jax.Array) -> jax.Array:  # noqa: N803
    r"""Convolution of a 2-D image with a 2-D kernel, valid mode (Eq 2-3).

    .. math::
        (I * K)_{ij} = \sum_{m,n} I(i-m, j-n)\, K(m, n) = \sum_{m,n} I(i+m, j+n)\, K(-m, -n)
        \qquad (2, 3)

    so ``convolve2d(I, K) == correlate2d(I, rot180(K))`` (Eq 3).

    Args:
      I: ``(H, W)`` image.
      K: ``(k1, k2)`` kernel.

    Returns:
      ``(H - k1 + 1, W - k2 + 1)`` array. Built on ``conv2d(..., flip=True)``.
    """
    check_plain_2d("convolve2d", I, K)
    return conv2d(I[None, :, :, None], K[:, :, None, None], flip=True)[0, :, :, 0]
