r"""Convolution layers: the forward cross-correlation (Eq 1-7) and its backward formulas (Eq 10-22).

Notation of the article, NHWC/HWIO here: input ``o^{l-1}`` is ``x (N, H, W, C)``, kernel
``w (k1, k2, C/groups, D)``, pre-activation ``x^l`` is the output ``y (N, H_out, W_out, D)``, and the
deltas ``delta^l = dE/dx^l`` (Eq 15) have the output's shape.

Forward (Eq 7, Eq 4 with channels)::

    y[n, i, j, d] = sum_{m, n', c} w[m, n', c, d] * x_pad[n, s1*i + d1*m, s2*j + d2*n', c] + b

Backward, the custom VJP of `conv2d`, built from two public functions:

* `conv2d_weight_grad` — Eq 13-14: ``dE/dw[m', n'] = sum_{i, j} delta[i, j] * x[i + m', j + n']``,
  the (padded) input cross-correlated with the deltas;
* `conv2d_input_grad` — Eq 20-22: ``dE/dx = delta * rot180(w)``, the deltas (dilated by the stride)
  fully convolved with the rotated kernel, in/out channels swapped, cropped by the padding; the
  ``f'(x)`` factor of Eq 20 is applied by the activation's own rule;
* the bias gradient (asked for by the article's readers): the deltas summed over the batch, and over
  ``(i, j)`` as well for a tied bias ``b (D,)``.

Lowering: each formula has two forms. Written here, as one XLA convolution
(``lax.conv_general_dilated``) whose operands are the article's — `_correlate` is Eq 1 with channels,
and Eq 14 and Eq 22 call it on the arrays the equations name (lowering ``"xla"``). In
`jaxcnn._lowering`, as the sums of Eq 7, Eq 13 and Eq 20 over the kernel taps turned into matmuls
(``"taps"``, and ``"patches"``: im2col for Eq 7 and Eq 13, col2im for Eq 20). On CPU the matmul
forms are 2-10x faster than XLA's CPU convolution (see `jaxcnn._lowering.choose`); ``"auto"`` (the
default) takes them on CPU and keeps the XLA convolution (cuDNN) on every other platform. The
choice is static, traced into the custom VJP with the rest of the configuration
(`jaxcnn._specs.ConvSpec`); the private switch ``jaxcnn._lowering.force(name)`` forces one.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcnn import _lowering
from jaxcnn._checks import check_plain_2d, check_rank, check_same_dtype, fail
from jaxcnn._lowering import pad_input as _pad_input
from jaxcnn._specs import ConvSpec, conv_spec

__all__ = [
    "conv2d",
    "conv2d_input_grad",
    "conv2d_weight_grad",
    "correlate2d",
    "convolve2d",
    "rot180",
]

Stride = int | tuple[int, int]
Padding = str | int | tuple[int, int] | tuple[tuple[int, int], tuple[int, int]]


def rot180(k: jax.Array) -> jax.Array:
    r"""Rotate a kernel by 180 degrees: flip its two leading (spatial) axes.

    ``rot180(K)[m, n] = K[k1 - 1 - m, k2 - 1 - n]`` — the ``K(-m, -n)`` of Eq 3, up to the shift
    that keeps indices non-negative.

    Args:
      k: ``(k1, k2, ...)`` array (a 2-D kernel or an HWIO kernel bank).

    Returns:
      The rotated array, same shape and dtype.
    """
    if jnp.ndim(k) < 2:
        raise fail("rot180", f"`k` must have at least 2 dimensions (k1, k2, ...), got shape {jnp.shape(k)}")
    return k[::-1, ::-1]


# ------------------------------------------------------------------------------ the lowering
def _correlate(
    lhs: jax.Array,
    rhs: jax.Array,
    *,
    dims: tuple[str, str, str],
    strides: tuple[int, int] = (1, 1),
    padding: Any = ((0, 0), (0, 0)),
    lhs_dilation: tuple[int, int] = (1, 1),
    rhs_dilation: tuple[int, int] = (1, 1),
    feature_groups: int = 1,
    batch_groups: int = 1,
) -> jax.Array:
    """Eq 1 with channels, ``out[i, j] = sum_{m, n, c} lhs[i*s + m*d, j*s + n*d, c] rhs[m, n, c]``,
    as one XLA convolution (which, like every framework's "convolution", does not flip)."""
    return lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides=strides,
        padding=padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dims,
        feature_group_count=feature_groups,
        batch_group_count=batch_groups,
    )


def _extent(spec: ConvSpec) -> tuple[int, int]:
    """The dilated kernel's extent ``d * (k - 1) + 1`` along H and W."""
    return tuple(d * (k - 1) + 1 for k, d in zip(spec.kernel, spec.dilation, strict=True))  # type: ignore[return-value]


def _used(spec: ConvSpec) -> tuple[int, int]:
    """Rows/columns of the padded input the windows reach: ``(H_out - 1) * s + extent``."""
    return tuple(
        (o - 1) * s + e for o, s, e in zip(spec.out_hw, spec.stride, _extent(spec), strict=True)
    )  # type: ignore[return-value]


def _swap_io(kernel: jax.Array, groups: int) -> jax.Array:
    """HWIO ``(k1, k2, C/g, D)`` -> ``(k1, k2, D/g, C)``: the kernel read from outputs to inputs,
    group by group (in/out channels swapped, as Eq 22 sends deltas from layer l+1 back to l)."""
    k1, k2, c_g, d = kernel.shape
    k = kernel.reshape(k1, k2, c_g, groups, d // groups)
    return k.transpose(0, 1, 4, 3, 2).reshape(k1, k2, d // groups, groups * c_g)


def _lowered(formula: str, plan: _lowering.Plan, spec: ConvSpec, ncd: tuple[int, int, int], xla_form,
             sum_form, *args):
    """``xla_form(*args)`` (an XLA convolution, the forms written in this module) or
    ``sum_form(plan, *args)`` (a `jaxcnn._lowering` matmul form): the forced lowering, or for
    "auto" the CPU's choice (`jaxcnn._lowering.choose`) with XLA's on every other platform."""
    if plan.name == "auto":
        plan = plan._replace(name=_lowering.choose(formula, spec, *ncd))
        if plan.name != "xla":
            return lax.platform_dependent(*args, cpu=partial(sum_form, plan), default=xla_form)
    if plan.name == "xla":
        return xla_form(*args)
    return sum_form(plan, *args)


# ------------------------------------------------------------------------------ Eq 7: forward
def _forward(x: jax.Array, w: jax.Array, spec: ConvSpec, plan: _lowering.Plan) -> jax.Array:
    """Eq 7, ``y[i, j] = sum_{m,n} w[m, n] . x_pad[s*i + d*m, s*j + d*n]``: one XLA convolution
    (`_correlate`), or its sum over the taps as matmuls (`jaxcnn._lowering.forward`)."""
    # Eq 7 (flip=False, cross-correlation) or Eq 6 (flip=True, convolution: rot180 first).
    kernel = rot180(w) if spec.flip else w

    def xla_form(x, kernel):
        if spec.pad_value == 0.0:
            return _correlate(x, kernel, dims=("NHWC", "HWIO", "NHWC"), strides=spec.stride,
                              padding=spec.pads, rhs_dilation=spec.dilation,
                              feature_groups=spec.groups)
        return _correlate(_pad_input(x, spec), kernel, dims=("NHWC", "HWIO", "NHWC"),
                          strides=spec.stride, rhs_dilation=spec.dilation,
                          feature_groups=spec.groups)

    def sum_form(plan, x, kernel):  # Eq 7: sum_{m,n} w_{m,n} o_{i+m, j+n}, as matmuls
        return _lowering.forward(x, kernel, spec, plan)

    ncd = (x.shape[0], x.shape[3], w.shape[3])
    return _lowered("forward", plan, spec, ncd, xla_form, sum_form, x, kernel)


# ---------------------------------------------------------------------------- Eq 20-22: dE/dx
def _input_grad(
    delta: jax.Array, w: jax.Array, x_hw: tuple[int, int], spec: ConvSpec, plan: _lowering.Plan
) -> jax.Array:
    """Eq 20-22, ``dE/dx``: Eq 22's full convolution of the stride-dilated deltas with the kernel
    (`_input_grad_eq22`, one XLA convolution), or Eq 20's sum over the taps,
    ``sum_{m,n} delta_{i'-m, j'-n} w_{m,n}``, as one matmul and col2im (`jaxcnn._lowering.input_grad`)."""
    kernel = rot180(w) if spec.flip else w  # the kernel the forward pass correlated with

    def sum_form(plan, delta, kernel):  # Eq 20: sum_{m,n} delta_{i'-m, j'-n} w_{m,n}
        return _lowering.input_grad(delta, kernel, x_hw, spec, plan)

    ncd = (delta.shape[0], kernel.shape[2] * spec.groups, kernel.shape[3])
    return _lowered("input", plan, spec, ncd, partial(_input_grad_eq22, x_hw=x_hw, spec=spec), sum_form,
                    delta, kernel)


def _input_grad_eq22(delta: jax.Array, kernel: jax.Array, *, x_hw: tuple[int, int],
                     spec: ConvSpec) -> jax.Array:
    """Eq 22 as one XLA convolution: ``dE/dx = delta * rot180(w)``, generalised and cropped."""
    extent = _extent(spec)
    (top, _), (left, _) = spec.pads
    padded_hw = (x_hw[0] + sum(spec.pads[0]), x_hw[1] + sum(spec.pads[1]))
    # Eq 22: the deltas, dilated by the stride (s - 1 zeros between them) and zero-padded by
    # extent - 1 on every side ("full"), cross-correlated with rot180(kernel) — i.e. a full
    # convolution with the kernel. Rows the forward windows never reached get zeros (the extra
    # high-side padding).
    full = tuple(
        (e - 1, e - 1 + p - u) for e, p, u in zip(extent, padded_hw, _used(spec), strict=True)
    )
    dx_pad = _correlate(
        delta,
        _swap_io(rot180(kernel), spec.groups),
        dims=("NHWC", "HWIO", "NHWC"),
        padding=full,
        lhs_dilation=spec.stride,
        rhs_dilation=spec.dilation,
        feature_groups=spec.groups,
    )
    # Crop the padding: padded units are not inputs, their gradients are dropped.
    return dx_pad[:, top : top + x_hw[0], left : left + x_hw[1], :]


# ---------------------------------------------------------------------------- Eq 10-14: dE/dw
def _weight_grad(x: jax.Array, delta: jax.Array, spec: ConvSpec, plan: _lowering.Plan) -> jax.Array:
    """Eq 13-14, ``dE/dw[m', n'] = sum_{i,j} delta[i, j] o[i + m', j + n']``: Eq 14's correlation
    of the input with the deltas (`_weight_grad_eq14`, one XLA convolution), or Eq 13's sum as one
    matmul ``P^T @ delta`` of the input's patches (`jaxcnn._lowering.weight_grad`)."""

    def sum_form(plan, x, delta):  # Eq 13: sum_{i,j} delta_{i,j} o_{i+m', j+n'}, as matmuls
        return _lowering.weight_grad(x, delta, spec, plan)

    ncd = (x.shape[0], x.shape[3], delta.shape[3])
    dk = _lowered("weight", plan, spec, ncd, partial(_weight_grad_eq14, spec=spec), sum_form, x, delta)
    # flip=True correlated with rot180(w): the gradient w.r.t. w is the rotated gradient.
    return rot180(dk) if spec.flip else dk


def _weight_grad_eq14(x: jax.Array, delta: jax.Array, *, spec: ConvSpec) -> jax.Array:
    """Eq 14 as one XLA convolution: the (padded) input cross-correlated with the deltas."""
    used_h, used_w = _used(spec)
    x_pad = _pad_input(x, spec)[:, :used_h, :used_w, :]
    # Eq 13: dE/dw[m', n', c, d] = sum_{n, i, j} delta[n, i, j, d] * x_pad[n, s*i + d*m', s*j + d*n', c]
    # — the padded input cross-correlated with the deltas (the deltas are the "kernel", spaced by
    # the stride; the batch is the contracted dimension, channels c play the role of the batch).
    # Groups: input channel c of group g only meets deltas d of group g (batch_group_count).
    dk = _correlate(
        x_pad,
        delta,
        dims=("CHWN", "IHWO", "HWNC"),
        strides=spec.dilation,
        rhs_dilation=spec.stride,
        batch_groups=spec.groups,
    )
    return dk


def _bias_grad(delta: jax.Array, tied: bool) -> jax.Array:
    """dE/db: the deltas summed over the batch, and over (i, j) too when the bias is tied (Eq 4-5)."""
    return jnp.sum(delta, axis=(0, 1, 2) if tied else 0)


# ------------------------------------------------------------------------------ public grads
def _shape_arg(fn: str, name: str, shape: Any) -> tuple[int, int, int, int]:
    if not (
        isinstance(shape, (tuple, list))
        and len(shape) == 4
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in shape)
    ):
        raise fail(fn, f"`{name}` must be a tuple of 4 positive ints, got {shape!r}", TypeError)
    return tuple(int(s) for s in shape)  # type: ignore[return-value]


def _check_delta(fn: str, delta: Any, spec: ConvSpec, n: int, d: int) -> None:
    expected = (n, spec.out_hw[0], spec.out_hw[1], d)
    if jnp.shape(delta) != expected:
        raise fail(fn, f"`delta` has shape {jnp.shape(delta)}; expected the output shape {expected}")


def conv2d_input_grad(
    delta: jax.Array,
    w: jax.Array,
    x_shape: tuple[int, int, int, int],
    *,
    stride: Stride = 1,
    padding: Padding = "VALID",
    dilation: Stride = 1,
    groups: int = 1,
    flip: bool = False,
) -> jax.Array:
    r"""The deltas of the layer below, Eq 20-22: ``dE/dx = delta * rot180(w)`` (a full convolution).

    .. math::
        \frac{\partial E}{\partial x_{i',j'}} = \sum_{m,n} \delta_{i'-m,\,j'-n}\, w_{m,n}
        = \big(\delta * \mathrm{rot}_{180^\circ}\{w\}\big)_{i',j'}   \qquad (20\text{-}22)

    Generalised: the deltas are first dilated by the stride (``s - 1`` zeros between neighbours),
    the kernel by `dilation`; in/out channels are swapped group by group; the result is cropped by
    the forward padding (gradients of padded units are dropped). The ``f'(x)`` factor of Eq 20
    belongs to the activation that produced `x` and is applied by its own rule.
    This is exactly what the custom VJP of `conv2d` calls (PyTorch: ``torch.nn.grad.conv2d_input``).

    Args:
      delta: ``(N, H_out, W_out, D)`` deltas of the conv's output, ``dE/dy``.
      w: ``(k1, k2, C/groups, D)`` kernel (HWIO).
      x_shape: ``(N, H, W, C)`` shape of the forward input.
      stride, padding, dilation, groups, flip: as given to `conv2d`.

    Returns:
      ``(N, H, W, C)`` array ``dE/dx``, dtype of `delta`.
    """
    fn = "conv2d_input_grad"
    x_shape = _shape_arg(fn, "x_shape", x_shape)
    check_rank(fn, "delta", delta, 4, "NHWC")
    x_like = jax.ShapeDtypeStruct(x_shape, jnp.result_type(delta))
    spec = conv_spec(
        fn, x_like, w, None, stride=stride, padding=padding, dilation=dilation,
        groups=groups, flip=flip, pad_value=0.0,
    )
    check_same_dtype(fn, ["delta", "w"], [delta, w])
    _check_delta(fn, delta, spec, x_shape[0], jnp.shape(w)[3])
    return _input_grad(delta, w, x_shape[1:3], spec, _lowering.requested())


def conv2d_weight_grad(
    x: jax.Array,
    delta: jax.Array,
    w_shape: tuple[int, int, int, int],
    *,
    stride: Stride = 1,
    padding: Padding = "VALID",
    dilation: Stride = 1,
    groups: int = 1,
    flip: bool = False,
    pad_value: float = 0.0,
) -> jax.Array:
    r"""The weight gradient, Eq 10-14: the (padded) input cross-correlated with the deltas.

    .. math::
        \frac{\partial E}{\partial w_{m',n'}} = \sum_{i=0}^{H-k_1} \sum_{j=0}^{W-k_2}
        \delta_{i,j}\, o_{i+m',\,j+n'} = \big(o \otimes \delta\big)_{m',n'}   \qquad (13)

    Eq 14 writes the same sum as a convolution with ``rot180(delta)``. Generalised: input rows are
    taken ``s*i + d*m'`` (stride, dilation), summed over the batch, channels matched per group;
    with `flip` the forward kernel was ``rot180(w)`` and the result is rotated back. This is exactly
    what the custom VJP of `conv2d` calls (PyTorch: ``torch.nn.grad.conv2d_weight``).

    Args:
      x: ``(N, H, W, C)`` forward input ``o^{l-1}``.
      delta: ``(N, H_out, W_out, D)`` deltas ``dE/dy``.
      w_shape: ``(k1, k2, C/groups, D)`` kernel shape.
      stride, padding, dilation, groups, flip, pad_value: as given to `conv2d`.

    Returns:
      ``(k1, k2, C/groups, D)`` array ``dE/dw``, dtype of `x`.
    """
    fn = "conv2d_weight_grad"
    w_shape = _shape_arg(fn, "w_shape", w_shape)
    check_rank(fn, "delta", delta, 4, "NHWC")
    w_like = jax.ShapeDtypeStruct(w_shape, jnp.result_type(x))
    spec = conv_spec(
        fn, x, w_like, None, stride=stride, padding=padding, dilation=dilation,
        groups=groups, flip=flip, pad_value=pad_value,
    )
    check_same_dtype(fn, ["x", "delta"], [x, delta])
    _check_delta(fn, delta, spec, jnp.shape(x)[0], w_shape[3])
    return _weight_grad(x, delta, spec, _lowering.requested())


# ---------------------------------------------------------------------------------- conv2d
class _ConvResiduals(NamedTuple):
    x: jax.Array  # o^{l-1}, for Eq 13
    w: jax.Array  # the kernel, for Eq 22


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _conv2d(
    spec: ConvSpec, tied: bool, plan: _lowering.Plan, x: jax.Array, w: jax.Array, b: jax.Array | None
) -> jax.Array:
    y = _forward(x, w, spec, plan)  # Eq 7 (Eq 6 with flip)
    # Explicit broadcast of the tied (D,) or untied (H_out, W_out, D) bias over the batch: no
    # implicit rank promotion (it raises under jax_numpy_rank_promotion='raise').
    return y if b is None else y + jnp.broadcast_to(b, y.shape)


def _conv2d_fwd(spec, tied, plan, x, w, b):
    return _conv2d(spec, tied, plan, x, w, b), _ConvResiduals(x, w)


def _conv2d_bwd(spec, tied, plan, res, delta):
    x, w = res
    dx = _input_grad(delta, w, x.shape[1:3], spec, plan)  # Eq 22 (Eq 20)
    dw = _weight_grad(x, delta, spec, plan)  # Eq 14 (Eq 13)
    db = None if tied is None else _bias_grad(delta, tied)
    return dx, dw, db


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def conv2d(
    x: jax.Array,
    w: jax.Array,
    b: jax.Array | None = None,
    *,
    stride: Stride = 1,
    padding: Padding = "VALID",
    dilation: Stride = 1,
    groups: int = 1,
    flip: bool = False,
    pad_value: float = 0.0,
) -> jax.Array:
    r"""2-D convolution layer (Eq 4-7) whose backward pass is the article's Eq 14 and Eq 22.

    .. math::
        x^l_{i,j} = \sum_m \sum_n \sum_c w^l_{m,n,c}\, o^{l-1}_{i+m,\,j+n,\,c} + b^l   \qquad (7)

    ``flip=False`` computes this cross-correlation (Eq 1, Eq 7) — what every framework calls
    "convolution". ``flip=True`` computes the true convolution (Eq 2, Eq 6): the kernel is rotated
    by 180 degrees first (Eq 3). Either way the backward rule is the article's: `conv2d_weight_grad`
    (Eq 13-14), `conv2d_input_grad` (Eq 20-22) and the deltas summed for the bias.

    Args:
      x: ``(N, H, W, C)`` input.
      w: ``(k1, k2, C/groups, D)`` kernel bank (HWIO), ``D`` filters.
      b: None, a tied bias ``(D,)`` (Eq 4-5, one per filter) or an untied bias
        ``(H_out, W_out, D)`` (Eq 6-7's ``b_{i,j}``; LeCun 1989's units do not share biases).
      stride: int or ``(s1, s2)``, >= 1.
      padding: ``"VALID"`` (the article's case), ``"SAME"`` (``ceil(H/s)`` outputs; an odd total puts
        the extra row/column at the bottom/right), ``"FULL"`` (``d*(k-1)`` each side), an int, a
        pair ``(ph, pw)`` or ``((top, bottom), (left, right))``.
      dilation: kernel dilation, int or pair, >= 1.
      groups: channel groups; ``C`` and ``D`` divisible by it.
      flip: rotate the kernel 180 degrees first (true convolution).
      pad_value: value of the padded border (LeCun 1989 pads with -1); padded units get no gradient.

    Returns:
      ``(N, H_out, W_out, D)`` with ``H_out = (H + pt + pb - d1*(k1-1) - 1) // s1 + 1`` (same for W),
      dtype of `x`.

    Forward-mode differentiation (``jax.jvp``) is not supported (a `jax.custom_vjp`); use
    `jaxcnn.reference.conv2d` for that.

    >>> import jax.numpy as jnp, jaxcnn
    >>> jaxcnn.conv2d(jnp.ones((1, 4, 4, 1)), jnp.ones((2, 2, 1, 1))).shape
    (1, 3, 3, 1)
    """
    spec = conv_spec(
        "conv2d", x, w, b, stride=stride, padding=padding, dilation=dilation,
        groups=groups, flip=flip, pad_value=pad_value,
    )
    tied = None if b is None else jnp.ndim(b) == 1
    return _conv2d(spec, tied, _lowering.requested(), x, w, b)


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
