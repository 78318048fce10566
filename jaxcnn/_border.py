r"""Padding modes other than zeros (private): the border filled with copies of the input's own units.

PyTorch's ``padding_mode`` "reflect", "replicate" and "circular" pad a convolution's input with copies
of its units (``jnp.pad``'s reflect / edge / wrap). The border's deltas then belong to the units they
copied: `copy_pad`'s rule folds them back and adds them to those units' own, so that the convolution
that follows is a VALID one, with the article's Eq 14 and Eq 22 unchanged (`jaxcnn.convolution`).
The same rule serves the second-order pass (`jaxcnn.curvature`): each copy has a Jacobian entry of 1.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from jaxcnn._specs import JNP_PAD_MODES, ConvSpec


@partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def copy_pad(x: jax.Array, axis: int, lo: int, hi: int, mode: str) -> jax.Array:
    """`x` padded along `axis` with copies of its own units (``jnp.pad``'s reflect / edge / wrap)."""
    config = [(0, 0)] * x.ndim
    config[axis] = (lo, hi)
    return jnp.pad(x, config, mode=JNP_PAD_MODES[mode])


def _copy_pad_fwd(x, axis, lo, hi, mode):
    return copy_pad(x, axis, lo, hi, mode), None


def _copy_pad_bwd(axis, lo, hi, mode, res, delta):
    """The deltas of the padded units fold back onto the units they copied (and add to theirs):

    * reflect: left unit ``j < lo`` copied ``x[lo - j]``, right unit ``j`` copied ``x[n - 2 - j]``;
    * replicate: every left unit copied ``x[0]``, every right unit ``x[n - 1]``;
    * circular: the left units copied ``x[n - lo:]``, the right ones ``x[:hi]``.
    """
    del res
    n = delta.shape[axis] - lo - hi
    take = partial(lax.slice_in_dim, delta, axis=axis)
    grad = take(lo, lo + n)
    left, right = take(0, lo), take(lo + n, lo + n + hi)

    def add(g, start, part):
        index = [slice(None)] * g.ndim
        index[axis] = slice(start, start + part.shape[axis])
        return g.at[tuple(index)].add(part)

    if mode == "reflect":
        grad = add(grad, 1, lax.rev(left, (axis,)))
        grad = add(grad, n - 1 - hi, lax.rev(right, (axis,)))
    elif mode == "replicate":
        grad = add(grad, 0, jnp.sum(left, axis=axis, keepdims=True))
        grad = add(grad, n - 1, jnp.sum(right, axis=axis, keepdims=True))
    else:  # circular
        grad = add(grad, n - lo, left)
        grad = add(grad, 0, right)
    return (grad,)


copy_pad.defvjp(_copy_pad_fwd, _copy_pad_bwd)


def mode_pad(x: jax.Array, spec: ConvSpec, mode: str) -> tuple[jax.Array, ConvSpec]:
    """For padding_mode other than "zeros": the border filled with copies of input units (one
    differentiable pad step per spatial axis, whose rule folds the border's deltas back), and the
    spec of the VALID convolution that follows."""
    for axis, (lo, hi) in enumerate(spec.pads, start=1):
        if lo or hi:
            x = copy_pad(x, axis, lo, hi, mode)
    return x, spec._replace(pads=((0, 0),) * spec.nd, size=tuple(x.shape[1:-1]))
