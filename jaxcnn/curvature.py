r"""Second-order backpropagation: the diagonal Gauss-Newton pass of LeCun et al. (1989).

LeCun et al. (1989) trained their zip-code network with "a special version of Newton's algorithm
that uses a positive, diagonal approximation of the Hessian" (Becker & LeCun 1988; the *stochastic
diagonal Levenberg-Marquardt* method, LeCun, Bottou, Orr & Mueller, "Efficient BackProp", 1998,
section 9.1). Its curvature pass is the article's backward pass with squared factors: where the
first-order rule of an op ``y = f(x)`` sends the deltas back as ``dE/dx_i = sum_j J[j, i] dE/dy_j``
(``J`` the op's Jacobian), the second-order rule sends ``h = d2E/dy2`` back as

.. math::
    h^{x}_{i} = \sum_j J_{j,i}^2\, h^{y}_{j}

which is *exact* for one op (the diagonal of ``J^T diag(h) J``) and, chained through a network,
LeCun's approximation of the Gauss-Newton diagonal: the cross terms ``J_{j,i} J_{k,i} G_{jk}``
between different units of a layer are dropped. Every jaxcnn op carries this rule beside its
first-order rule, named after the equation it squares:

=================== ========================================================================
op                  rule, for ``h`` arriving from above
=================== ========================================================================
conv (1-3 d)        ``h_x``: Eq 22 with ``w*w``; ``h_w``: Eq 14 with ``o*o`` (the padded units
                    squared too: ``pad_value**2``); ``h_b``: ``h`` summed as the deltas are
conv_transpose      ``h_x``: Eq 7 with ``w*w``; ``h_w``: Eq 14 with ``x*x``; ``h_b`` as above
activations         ``f'(x)**2 h`` (relu: ``f' = f'^2``, the first-order rule itself)
max_pool            ``h`` routed to the winning unit (``J`` is 0/1: the first-order rule itself)
avg_pool            ``h / |W|**2`` spread over the block (``|W| = prod(p)`` or the real units)
l2_pool             ``(x / y)**2 h``, 0 where ``y == 0``
dense               ``h w**2^T``, ``(x**2)^T h``, ``sum_n h``
flatten             ``h`` reshaped (the first-order rule itself)
squared_error       Eq 9's ``d2E/dy2 = 1`` per output (``1/N`` with ``reduction="mean"``)
softmax_cross_ent.  the Hessian's diagonal ``(softmax - softmax**2) / N`` per logit (the
                    off-diagonal ``-p_j p_k / N`` is dropped: a Gauss-Newton diagonal)
=================== ========================================================================

API. The mode is read when an op is *traced* and baked into its static custom-VJP configuration,
exactly like the lowering `Plan` (``jaxcnn._lowering.force``)::

    with jaxcnn.curvature.second_order():
        h = jax.grad(loss)(params, x, t)     # the diagonal curvature d2E/dw2, not dE/dw

or, the same thing as one call, `diag_gauss_newton` ``(loss_fn, params, *args)``. The loss's rule
seeds ``d2E/dy2``; each op passes ``h`` down by its second-order rule; the gradient w.r.t. the
parameters *is* the curvature. Over a batch it is summed over the examples (the losses sum or
average them, and so do the parameter rules).

Limits:

* Only jaxcnn's ops carry the rule. A plain JAX op on the differentiable path (``a * c``,
  ``jnp.exp``, a reference op) keeps JAX's ordinary VJP, which multiplies ``h`` by ``J`` instead of
  ``J**2``: right only where its Jacobian entries are 0, 1 or -1 (reshapes, slices, transposes,
  concatenation, a 0/1 mask such as `jaxcnn.models.lecun1989`'s H2 connection table), wrong
  otherwise. Nothing detects this; keep such ops off the path (or wrap them in a jaxcnn op).
* `jaxcnn.conv` with ``padding_mode`` "reflect", "replicate" or "circular" is a copy-pad followed
  by the convolution; its rule is exact for the kernel and bias, and LeCun's through those two steps
  for the input: where one window holds a unit and its copy, their cross term is dropped.
* A function already traced outside the mode (a ``jax.jit`` cache hit) keeps its first-order
  rules: trace under the mode, e.g. jit a function that calls `diag_gauss_newton`.
* ``jax.grad`` of a loss in this mode returns curvatures for every differentiable input (inputs
  and targets included); they are the ``h`` of those inputs, not gradients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp

from jaxcnn._checks import check_float, fail, is_int

__all__ = ["active", "diag_gauss_newton", "second_order"]

_active = False  # the trace-time switch, read by every op when it is traced


@contextlib.contextmanager
def second_order() -> Iterator[None]:
    """Trace jaxcnn ops with their diagonal Gauss-Newton rules instead of their gradients.

    Inside the block every jaxcnn op traced bakes its second-order rule into its static custom-VJP
    configuration, so ``jax.grad`` (or ``jax.vjp``) of a jaxcnn network propagates
    ``h = d2E/dy2`` with squared factors (see the module docstring) and returns the diagonal
    curvature. Nested use is allowed; the previous mode is restored on exit, also on error.
    """
    global _active
    previous = _active
    _active = True
    try:
        yield
    finally:
        _active = previous


def active() -> bool:
    """Whether an op traced now takes its second-order rule (inside `second_order`)."""
    return _active


def diag_gauss_newton(loss_fn: Callable[..., jax.Array], params: Any, *args: Any, argnums: int = 0) -> Any:
    r"""LeCun's diagonal Gauss-Newton curvature of ``loss_fn(params, *args)`` w.r.t. `params`.

    ``jax.grad(loss_fn, argnums)(params, *args)`` traced under `second_order`: the loss's rule
    seeds ``d2E/dy2`` and every jaxcnn op squares its Jacobian on the way down,

    .. math::
        \tilde h_w = \sum_j \Big(\frac{\partial y_j}{\partial w}\Big)^2 \tilde h_{y_j}

    layer by layer (cross terms within a layer dropped). For one op it is the exact diagonal of
    ``J^T H J``; through a network it is LeCun et al. 1989's positive diagonal approximation.

    Args:
      loss_fn: a scalar loss built from jaxcnn ops (`jaxcnn.squared_error`,
        `jaxcnn.softmax_cross_entropy` last); plain JAX ops on the differentiable path must have
        Jacobian entries in {-1, 0, 1} (see the module's limits).
      params: the pytree differentiated (``argnums`` picks another position).
      *args: the rest of ``loss_fn``'s arguments (inputs, targets).
      argnums: which argument of ``loss_fn`` the curvature is taken of.

    Returns:
      A pytree like ``params``: ``d2E/dw2`` per parameter, >= 0, summed over the batch as the loss
      sums it (divided by N for mean losses). Works under ``jax.jit`` (trace it there).
    """
    fn = "diag_gauss_newton"
    if not callable(loss_fn):
        raise fail(fn, f"`loss_fn` must be callable, got {type(loss_fn).__name__}", TypeError)
    if not is_int(argnums) or not 0 <= argnums <= len(args):
        raise fail(fn, f"`argnums` must be an int in [0, {len(args)}] (the position of `params` among the "
                   f"{len(args) + 1} arguments of `loss_fn`), got {argnums!r}")
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        check_float(fn, f"params{jax.tree_util.keystr(path)}", leaf)

    def scalar_loss(*xs: Any) -> jax.Array:
        loss = loss_fn(*xs)
        if jnp.shape(loss) != () or not jnp.issubdtype(jnp.result_type(loss), jnp.floating):
            raise fail(fn, f"`loss_fn` must return a floating-point scalar loss, got shape {jnp.shape(loss)} "
                       f"and dtype {jnp.result_type(loss)}")
        return loss

    with second_order():
        return jax.grad(scalar_loss, argnums=argnums)(*_place(params, args, argnums))


def _place(value: Any, rest: tuple[Any, ...], position: int) -> tuple[Any, ...]:
    """``rest`` with `value` inserted at `position`."""
    return (*rest[:position], value, *rest[position:])
