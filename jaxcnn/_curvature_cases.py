r"""Cases and oracle for the second-order (diagonal Gauss-Newton) rules (private).

Each `Case` is one jaxcnn op with fixed options, its `jaxcnn.reference` twin and small float64
arguments. `check` runs the op's second-order rule (`jaxcnn.curvature.second_order`: ``jax.vjp``
of the custom op with ``h`` as the cotangent) and compares it with the squared-Jacobian oracle,

.. math::
    h^{x}_{i} = \sum_j J_{j,i}^2\, h_j, \qquad J = \text{jax.jacrev of the reference}

for the layers, and with the Hessian's diagonal (``jax.hessian`` of the reference, times the
incoming ``g``) for the losses. Used by ``tests/test_curvature.py`` (the fixed `CASES`) and by the
gradient cross-check's ``gn:`` rows (`jaxcnn.gradcheck`), which draw their own configurations and
build a `Case` around them: `padding_mode_chain` gives a copy-padded conv's `Case.chain`, and
`rule_and_oracle` is the comparison both use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxcnn
from jaxcnn import curvature
from jaxcnn import reference as ref
from jaxcnn._checks import Like
from jaxcnn._specs import conv_spec


class Case(NamedTuple):
    """One op and options: ``custom(*args)`` / ``reference(*args)``, every arg differentiated."""

    name: str  # family/options, e.g. "conv2d stride=2 padding=2 pad_value=-1 untied"
    custom: Callable[..., jax.Array]
    reference: Callable[..., jax.Array]
    shapes: tuple[tuple[int, ...], ...]  # of the arguments
    loss: bool = False  # a scalar loss: the oracle is the Hessian's diagonal
    positive: tuple[int, ...] = ()  # arguments drawn away from 0 (l2 pool: y > 0)
    # padding_mode reflect/replicate/circular: the conv is a copy-pad followed by a VALID conv, and
    # its rule is LeCun's through those two steps: (jnp.pad mode, pads, the VALID conv's options)
    chain: tuple[str, tuple[tuple[int, int], ...], dict[str, Any]] | None = None


def _conv(fn_custom, fn_ref, **kw):
    return functools.partial(fn_custom, **kw), functools.partial(fn_ref, **kw)


def _pool(name: str, window, **kw):
    return functools.partial(getattr(jaxcnn, name), window=window, **kw), \
        functools.partial(getattr(ref, name), window=window, **kw)


def _cases() -> list[Case]:
    cases = []

    def conv_case(name, shapes, chain=None, **kw):
        c, r = _conv(jaxcnn.conv, ref.conv, **kw)
        cases.append(Case(name, c, r, shapes, chain=chain))

    # conv, 1-3 spatial dims: x (N, *size, C), w (*k, C/g, D), b (D,) tied or (*out, D) untied
    conv_case("conv2d VALID tied bias", ((2, 5, 5, 2), (3, 3, 2, 3), (3,)))
    conv_case("conv2d stride=2 padding=2 pad_value=-1 untied bias (LeCun H1)",
              ((2, 8, 8, 1), (5, 5, 1, 3), (4, 4, 3)), stride=2, padding=2, pad_value=-1.0)
    conv_case("conv2d dilation=2 SAME groups=2 flip", ((1, 6, 7, 4), (2, 3, 2, 4)),
              dilation=2, padding="SAME", groups=2, flip=True)
    conv_case("conv2d stride=(2,1) padding=((1,2),(0,1)) pad_value=0.5",
              ((2, 6, 5, 2), (3, 2, 2, 2), (2,)), stride=(2, 1), padding=((1, 2), (0, 1)), pad_value=0.5)
    conv_case("conv1d stride=3 FULL tied bias", ((2, 9, 2), (3, 2, 3), (3,)), stride=3, padding="FULL")
    conv_case("conv1d dilation=2 groups=3 pad_value=-1", ((1, 10, 3), (2, 1, 6)),
              dilation=2, groups=3, padding=1, pad_value=-1.0)
    conv_case("conv2d padding=2 padding_mode=reflect stride=2", ((1, 6, 5, 2), (3, 3, 2, 2), (2,)),
              padding=2, padding_mode="reflect", stride=2, chain=("reflect", ((2, 2), (2, 2)), {"stride": 2}))
    conv_case("conv1d padding=(2,3) padding_mode=circular", ((2, 5, 1), (3, 1, 2)), padding=((2, 3),),
              padding_mode="circular", chain=("wrap", ((2, 3),), {}))
    conv_case("conv2d padding=1 padding_mode=replicate groups=2", ((1, 4, 4, 2), (2, 2, 1, 2)), padding=1,
              padding_mode="replicate", groups=2, chain=("edge", ((1, 1), (1, 1)), {"groups": 2}))
    conv_case("conv3d stride=(1,2,1) padding=1 pad_value=-0.5 untied bias",
              ((1, 4, 5, 3, 2), (2, 3, 2, 2, 2), (5, 3, 4, 2)), stride=(1, 2, 1), padding=1, pad_value=-0.5)

    def transpose_case(name, shapes, **kw):
        c, r = _conv(jaxcnn.conv_transpose, ref.conv_transpose, **kw)
        cases.append(Case(name, c, r, shapes))

    transpose_case("conv_transpose2d stride=2 padding=1 output_padding=1 tied bias",
                   ((2, 3, 3, 3), (3, 3, 2, 3), (2,)), stride=2, padding=1, output_padding=1)
    transpose_case("conv_transpose1d dilation=2 groups=2", ((2, 4, 4), (3, 1, 4)), dilation=2, groups=2)
    transpose_case("conv_transpose3d stride=(2,1,1) untied bias",
                   ((1, 2, 3, 2, 2), (2, 2, 2, 1, 2), (4, 4, 3, 1)), stride=(2, 1, 1))

    for name in ("relu", "tanh", "scaled_tanh", "sigmoid"):
        cases.append(Case(name, getattr(jaxcnn, name), getattr(ref, name), ((2, 3, 4),)))
    cases.append(Case("leaky_relu negative_slope=0.2",
                      functools.partial(jaxcnn.leaky_relu, negative_slope=0.2),
                      functools.partial(ref.leaky_relu, negative_slope=0.2), ((2, 3, 4),)))

    def pool_case(name, pool, shape, window, **kw):
        c, r = _pool(pool, window, **kw)
        cases.append(Case(name, c, r, (shape,), positive=(0,) if pool == "l2_pool" else ()))

    pool_case("max_pool2d 2x2", "max_pool", (2, 4, 6, 2), 2)
    pool_case("max_pool2d 3x3 stride=2 padding=1 (overlapping)", "max_pool", (2, 7, 6, 2), 3,
              stride=2, padding=1)
    pool_case("max_pool1d 3 stride=1", "max_pool", (2, 7, 2), 3, stride=1)
    pool_case("max_pool3d 2 stride=(1,2,2)", "max_pool", (1, 3, 4, 4, 2), 2, stride=(1, 2, 2))
    pool_case("max_pool2d 2x2 dilation=2 stride=1", "max_pool", (2, 5, 5, 2), 2, stride=1, dilation=2)
    pool_case("max_pool2d 3x3 stride=2 ceil_mode", "max_pool", (1, 6, 6, 2), 3, stride=2, ceil_mode=True)
    pool_case("avg_pool2d 2x2", "avg_pool", (2, 4, 6, 2), 2)
    pool_case("avg_pool2d 3x2 stride=1 padding=1 count_include_pad", "avg_pool", (2, 5, 4, 2), (3, 2),
              stride=1, padding=1)
    pool_case("avg_pool2d 3x3 stride=2 padding=1 count_include_pad=False", "avg_pool", (2, 6, 5, 1), 3,
              stride=2, padding=1, count_include_pad=False)
    pool_case("avg_pool1d 3 stride=2 SAME", "avg_pool", (2, 7, 3), 3, stride=2, padding="SAME")
    pool_case("avg_pool3d 2", "avg_pool", (1, 4, 4, 2, 2), 2)
    pool_case("avg_pool2d 3x3 stride=2 padding=1 ceil_mode count_include_pad=False", "avg_pool",
              (1, 6, 6, 2), 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    pool_case("avg_pool1d 2 ceil_mode", "avg_pool", (2, 7, 2), 2, ceil_mode=True)
    pool_case("l2_pool2d 2x2", "l2_pool", (2, 4, 4, 2), 2)
    pool_case("l2_pool2d 3x3 stride=1 padding=1 (overlapping)", "l2_pool", (2, 5, 4, 2), 3,
              stride=1, padding=1)
    pool_case("l2_pool1d 2 stride=1", "l2_pool", (2, 6, 3), 2, stride=1)
    pool_case("l2_pool2d 2x2 ceil_mode", "l2_pool", (1, 5, 5, 2), 2, ceil_mode=True)

    cases.append(Case("dense with bias", jaxcnn.dense, ref.dense, ((3, 5), (5, 4), (4,))))
    cases.append(Case("dense without bias", jaxcnn.dense, ref.dense, ((3, 5), (5, 4))))
    cases.append(Case("flatten", jaxcnn.flatten, ref.flatten, ((2, 3, 2, 2),)))

    cases.append(Case("squared_error sum (Eq 9)", jaxcnn.squared_error, ref.squared_error, ((3, 4), (3, 4)),
                      loss=True))
    mean = functools.partial(jaxcnn.squared_error, reduction="mean")
    cases.append(Case("squared_error mean", mean, functools.partial(ref.squared_error, reduction="mean"),
                      ((3, 4), (3, 4)), loss=True))
    labels = jnp.asarray([2, 0, 3])
    cases.append(Case("softmax_cross_entropy int labels",
                      lambda z: jaxcnn.softmax_cross_entropy(z, labels),
                      lambda z: ref.softmax_cross_entropy(z, labels), ((3, 4),), loss=True))
    cases.append(Case("softmax_cross_entropy float labels", jaxcnn.softmax_cross_entropy,
                      ref.softmax_cross_entropy, ((3, 4), (3, 4)), loss=True, positive=(1,)))
    return cases


CASES: tuple[Case, ...] = tuple(_cases())


def arguments(case: Case, seed: int = 0, dtype: Any = jnp.float64) -> tuple[jax.Array, ...]:
    """Seeded standard-normal arguments (``|a| + 0.5`` for `Case.positive` ones)."""
    rng = np.random.default_rng(seed)
    args = []
    for k, shape in enumerate(case.shapes):
        a = rng.standard_normal(shape)
        args.append(jnp.asarray(np.abs(a) + 0.5 if k in case.positive else a, dtype))
    return tuple(args)


def second_order(case: Case, args: tuple[jax.Array, ...], h: jax.Array) -> tuple[jax.Array, ...]:
    """The op's second-order rule: ``jax.vjp`` of the custom op traced under `second_order`, with
    ``h = d2E/dy2`` as the cotangent."""
    with curvature.second_order():
        _, vjp = jax.vjp(case.custom, *args)
        return vjp(h)


def oracle(case: Case, args: tuple[jax.Array, ...], h: jax.Array) -> tuple[jax.Array, ...]:
    """``sum_j J[j, i]**2 h[j]`` from ``jax.jacrev`` of the reference (layers), or ``h`` times the
    diagonal of ``jax.hessian`` of the reference (losses)."""
    argnums = tuple(range(len(args)))
    if case.loss:
        hess = jax.hessian(case.reference, argnums)(*args)
        return tuple(h * jnp.diagonal(hess[k][k].reshape(a.size, a.size)).reshape(a.shape)
                     for k, a in enumerate(args))
    jac = jax.jacrev(case.reference, argnums)(*args)
    return tuple(jnp.tensordot(h, j * j, axes=h.ndim) for j in jac)


def chained_oracle(case: Case, args: tuple[jax.Array, ...], h: jax.Array) -> tuple[jax.Array, ...]:
    """LeCun's rule through a copy-pad and a VALID conv (`Case.chain`): the squared Jacobian of the
    conv on the padded input, its ``h_x`` folded back by the pad's 0/1 map (the copies' ``h``
    summed: the cross terms between a unit and its copies in one window are dropped)."""
    mode, pads, options = case.chain
    x, w, *b = args
    xp, fold = jax.vjp(lambda x: jnp.pad(x, ((0, 0), *pads, (0, 0)), mode=mode), x)
    jac = jax.jacrev(lambda *a: ref.conv(*a, **options), tuple(range(len(args))))(xp, w, *b)
    hx, *rest = (jnp.tensordot(h, j * j, axes=h.ndim) for j in jac)
    return (fold(hx)[0], *rest)


def rule_and_oracle(case: Case, args: tuple[jax.Array, ...],
                    h: jax.Array) -> tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]]:
    """``(second_order(...), oracle(...))``, the oracle `chained_oracle` for a copy-padded conv."""
    return second_order(case, args, h), (oracle if case.chain is None else chained_oracle)(case, args, h)


_NUMPY_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def padding_mode_chain(x_shape: tuple[int, ...], w_shape: tuple[int, ...], *, padding_mode: str,
                       stride: Any = 1, padding: Any = "VALID", dilation: Any = 1, groups: int = 1,
                       flip: bool = False) -> tuple[str, tuple[tuple[int, int], ...], dict[str, Any]]:
    """`Case.chain` of ``jaxcnn.conv(x, w, padding_mode=...)`` with these options: the ``jnp.pad``
    mode, the resolved ``(lo, hi)`` pads per spatial dim (the library's own resolution, so every
    padding form works) and the options of the VALID conv that follows."""
    x, w = Like(tuple(x_shape), jnp.float32), Like(tuple(w_shape), jnp.float32)
    spec = conv_spec("padding_mode_chain", x, w, None, stride=stride, padding=padding, dilation=dilation,
                     groups=groups, flip=flip, pad_value=0.0)
    options = {"stride": spec.stride, "dilation": spec.dilation, "groups": spec.groups, "flip": spec.flip}
    return _NUMPY_PAD_MODES[padding_mode.lower()], spec.pads, options


def seed_h(case: Case, args: tuple[jax.Array, ...], seed: int = 1) -> jax.Array:
    """A positive ``h`` of the op's output shape (a scalar ``g`` for the losses)."""
    shape = jax.eval_shape(case.reference, *args).shape
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.uniform(0.5, 2.0, shape), args[0].dtype)


def errors(case: Case, seed: int = 0) -> list[tuple[float, float]]:
    """Per argument: the max absolute error of the rule against the oracle (`chained_oracle` for
    a copy-padded conv) and the max error relative to the oracle's largest entry (float64)."""
    args = arguments(case, seed)
    h = seed_h(case, args, seed + 1)
    got, want = jax.jit(functools.partial(rule_and_oracle, case))(args, h)
    out = []
    for g, w in zip(got, want, strict=True):
        err = float(jnp.max(jnp.abs(g - w)))
        out.append((err, err / max(float(jnp.max(jnp.abs(w))), 1e-300)))
    return out
