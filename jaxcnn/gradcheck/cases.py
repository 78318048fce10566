"""Cases and rows of the ``python -m jaxcnn.gradcheck`` sweep: what one function's check is made of.

A `Family` is one row of the sweep's table: it draws *static* configurations (shapes and
options, JSON-serialisable) from a seeded generator and builds from one a `Case`: the custom
function and its reference twin with those options bound, and a `make_args(seed)` that draws the
argument *values* from a per-config seed. The sweep compiles one comparison per static
configuration and runs it on many value sets, so compilation does not dominate.

An `Entry` is one function of the table (`jaxcnn.gradcheck.table.ENTRIES`); `expand` turns it into
its rows:

* ``name`` — the custom VJP of the function against autodiff of `jaxcnn.reference`;
* ``d2:name`` — second order: the function ``(args, u) -> vjp(f, args)(u)`` compared the same way,
  i.e. the VJP of the VJP (the backward rules are differentiable JAX);
* ``gn:name`` — the second-order (diagonal Gauss-Newton) rule of `jaxcnn.curvature`, ``jax.vjp``
  of the custom function traced under ``second_order()`` with a positive ``h`` as the cotangent,
  against the squared-Jacobian oracle of ``jaxcnn._curvature_cases`` (the Hessian's diagonal for a
  loss), on configurations small enough for a full Jacobian (`Entry.gn_draw`);
* ``vmap:name`` — per-example gradients, ``vmap`` over the batch of the VJP of one example;
* ``fd:name`` — central finite differences in float64 of the custom and of the reference function.

This module knows no function of jaxcnn: the table does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Arg", "Case", "Entry", "Family", "allocate", "as_tuples", "default_configs", "draw_values",
           "expand", "make_case", "out_shape"]

Options = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Case:
    """One static configuration, ready to check on many value sets.

    Attributes:
      custom: the function under test, options bound; positional array arguments only.
      reference: its autodiff twin, same signature.
      make_args: per-config seed -> the positional arguments (NumPy-generated values, so the
        same seed gives the same values on every backend).
      argnames: a name per positional argument.
      argnums: the differentiable positions (the rest, e.g. integer labels, are held fixed).
      batched: per argument, whether its leading axis is the batch (used by ``vmap:`` rows).
      loss: a scalar loss: the ``gn:`` oracle is the Hessian's diagonal, not the squared Jacobian.
      chain: a copy-padded conv (``padding_mode``): the ``gn:`` oracle is LeCun's rule through the
        pad and the VALID conv, ``jaxcnn._curvature_cases.Case.chain`` (`padding_mode_chain`).
    """

    custom: Callable[..., Any]
    reference: Callable[..., Any]
    make_args: Callable[[int], tuple[Any, ...]]
    argnames: tuple[str, ...]
    argnums: tuple[int, ...]
    batched: tuple[bool, ...]
    loss: bool = False
    chain: Any = None


def _available() -> str | None:
    return None


@dataclasses.dataclass(frozen=True)
class Family:
    """One row of the sweep.

    Attributes:
      name: the row's name (``conv2d``, ``d2:conv2d``, ``vmap:dense``, ``fd:tanh``, ...).
      draw: ``(rng, i) -> options``, the i-th static configuration (JSON-serialisable values).
      build: ``(options, dtype_name) -> Case``; raises ValueError (via the library's own
        validation) for a configuration the library rejects: the sweep counts it as invalid.
      configs: number of configs in the default sweep (scaled by ``--configs``).
      values_per_shape: value sets drawn per static configuration (one compilation each).
      kind: ``"vjp"`` (`jaxcnn.gradcheck.vjp_checker`), ``"fd"`` (`fd_checker`, float64) or ``"gn"``
        (`gn_checker`: the second-order rule against the squared-Jacobian oracle).
      dtype: a dtype name forced for this row (``"float64"`` for ``fd:`` rows), else None.
      unavailable: ``() -> None`` or the reason the row cannot run (e.g. no `jaxcnn.models`).
    """

    name: str
    draw: Callable[[np.random.Generator, int], Options]
    build: Callable[[Options, str], Case]
    configs: int
    values_per_shape: int
    kind: str = "vjp"
    dtype: str | None = None
    unavailable: Callable[[], str | None] = _available


# ------------------------------------------------------------------------------- values
class Arg(NamedTuple):
    """How to draw one argument.

    kind: ``normal`` (``scale`` * N(0, 1); with ``zeros`` about 1/8 of the entries exactly 0),
    ``quant`` (integers -2..2 times ``scale``: ties and zeros on purpose), ``labels`` (ints in
    ``[0, scale)``), ``onehot`` (rows of ``eye(shape[1])``), ``pm1`` (-1 with one +1 per row).
    """

    name: str
    shape: tuple[int, ...]
    kind: str = "normal"
    scale: float = 1.0
    zeros: bool = False


def _draw_value(rng: np.random.Generator, arg: Arg, dtype: str) -> jax.Array:
    if arg.kind == "labels":
        return jnp.asarray(rng.integers(0, int(arg.scale), arg.shape).astype(np.int32))
    if arg.kind == "normal":
        v = rng.standard_normal(arg.shape) * arg.scale
        if arg.zeros:
            v = np.where(rng.random(arg.shape) < 0.125, 0.0, v)
    elif arg.kind == "quant":
        v = rng.integers(-2, 3, arg.shape) * arg.scale
    elif arg.kind in ("onehot", "pm1"):
        n, k = arg.shape
        v = np.eye(k)[rng.integers(0, k, n)]
        if arg.kind == "pm1":
            v = 2.0 * v - 1.0
    else:
        raise ValueError(f"`Arg`: unknown argument kind {arg.kind!r}")
    # Cast in NumPy first: no silent float64 -> float32 canonicalisation (and its warning).
    return jnp.asarray(np.asarray(v, dtype=jnp.dtype(dtype)))


def draw_values(args: tuple[Arg, ...], dtype: str) -> Callable[[int], tuple[Any, ...]]:
    """``make_args(seed)``: the arguments drawn in order from ``default_rng(seed)``, in `dtype`."""
    def make_args(seed: int) -> tuple[Any, ...]:
        rng = np.random.default_rng(seed)
        return tuple(_draw_value(rng, a, dtype) for a in args)

    return make_args


def make_case(custom, reference, args: tuple[Arg, ...], dtype: str, argnums=None, batched=None, *,
              loss: bool = False, chain: Any = None) -> Case:
    """A `Case` of `args`; by default every non-label argument is differentiated and only the first
    is batched (``vmap:`` rows)."""
    n = len(args)
    if argnums is None:
        argnums = tuple(i for i, a in enumerate(args) if a.kind != "labels")
    return Case(
        custom=custom,
        reference=reference,
        make_args=draw_values(args, dtype),
        argnames=tuple(a.name for a in args),
        argnums=tuple(argnums),
        batched=tuple(batched) if batched is not None else (True,) + (False,) * (n - 1),
        loss=loss,
        chain=chain,
    )


def as_tuples(value: Any) -> Any:
    """JSON lists back to the tuples the library's options use."""
    if isinstance(value, list):
        return tuple(as_tuples(v) for v in value)
    return value


def out_shape(fn: Callable[..., Any], shapes: list[tuple[int, ...]], dtype: str, **kw) -> tuple[int, ...]:
    """Output shape of the *reference* `fn`; its validation raises ValueError for a bad config."""
    structs = [jax.ShapeDtypeStruct(tuple(s), jnp.dtype(dtype)) for s in shapes]
    return tuple(jax.eval_shape(partial(fn, **kw), *structs).shape)

# ------------------------------------------------------------------------ derived rows
def _vjp_at(fn: Callable[..., Any], args: tuple[Any, ...], argnums: tuple[int, ...], u: Any) -> tuple:
    def restricted(*diff):
        full = list(args)
        for i, d in zip(argnums, diff, strict=True):
            full[i] = d
        return fn(*full)

    _, vjp = jax.vjp(restricted, *(args[i] for i in argnums))
    return vjp(u)


def _random_like(struct: Any, rng: np.random.Generator) -> Any:
    def leaf(s):
        return jnp.asarray(np.asarray(rng.standard_normal(s.shape), dtype=s.dtype))

    return jax.tree_util.tree_map(leaf, struct)


def _structs(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), args)


def _second_order(case: Case) -> Case:
    """``(args, u) -> vjp(f, args)(u)`` as a function: its VJP is the VJP of the VJP."""
    n = len(case.argnames)
    out = jax.eval_shape(case.reference, *_structs(case.make_args(0)))

    def first_order(fn):
        def grads(*a):
            g = _vjp_at(fn, a[:n], case.argnums, a[n])
            return {"d" + case.argnames[i]: gi for i, gi in zip(case.argnums, g, strict=True)}

        return grads

    def make_args(seed: int) -> tuple[Any, ...]:
        return (*case.make_args(seed), _random_like(out, np.random.default_rng([seed, 3])))

    return Case(first_order(case.custom), first_order(case.reference), make_args,
                (*case.argnames, "u"), (*case.argnums, n), (*case.batched, True))


def _per_example(case: Case, *, second_order: bool = True) -> Case:
    """Per-example gradients: ``vmap`` over the batch of one example's VJP (cotangent ``u_i``).

    With `second_order` the VJP of the per-example gradients is compared too; without, only the
    per-example gradients themselves (the networks: their second order under vmap would dominate
    the sweep's compile time)."""
    n = len(case.argnames)
    example = case.make_args(0)
    batch = next(jnp.shape(a)[0] for a, b in zip(example, case.batched, strict=True) if b)
    one = tuple(
        jax.ShapeDtypeStruct((1, *jnp.shape(a)[1:]), jnp.result_type(a)) if b else s
        for a, b, s in zip(example, case.batched, _structs(example), strict=True)
    )
    out = jax.eval_shape(case.reference, *one)  # one example's output
    in_axes = tuple(0 if b else None for b in case.batched) + (0,)

    def per_example(fn):
        def grads_one(*a):
            ex = tuple(ai[None] if b else ai for ai, b in zip(a[:n], case.batched, strict=True))
            g = _vjp_at(fn, ex, case.argnums, a[n])
            return {
                "d" + case.argnames[i]: jax.tree_util.tree_map(lambda t: t[0], gi) if case.batched[i] else gi
                for i, gi in zip(case.argnums, g, strict=True)
            }

        def grads(*a):
            return jax.vmap(grads_one, in_axes=in_axes)(*a)

        return grads

    def make_args(seed: int) -> tuple[Any, ...]:
        rng = np.random.default_rng([seed, 4])
        u = jax.tree_util.tree_map(
            lambda s: jnp.asarray(np.asarray(rng.standard_normal((batch, *s.shape)), dtype=s.dtype)), out
        )
        return (*case.make_args(seed), u)

    return Case(per_example(case.custom), per_example(case.reference), make_args,
                (*case.argnames, "u"), case.argnums if second_order else (), (*case.batched, True))


def _derived(prefix: str, base: Family, transform: Callable[[Case], Case], configs: int,
             values_per_shape: int, fixed: Options | None = None) -> Family:
    """A row checking ``transform(case)`` on `base`'s configurations (with `fixed` options)."""
    def draw(rng: np.random.Generator, i: int) -> Options:
        return {**base.draw(rng, i), **(fixed or {})}

    def build(o: Options, dtype: str) -> Case:
        return transform(base.build(o, dtype))

    return dataclasses.replace(base, name=prefix + base.name, draw=draw, build=build, configs=configs,
                               values_per_shape=values_per_shape)


def _finite_differences(base: Family, configs: int, values_per_shape: int,
                        argnums: tuple[int, ...] | None = None) -> Family:
    def draw(rng: np.random.Generator, i: int) -> Options:
        return {**base.draw(rng, i), "smooth": True}

    def build(o: Options, dtype: str) -> Case:
        case = base.build(o, dtype)
        return case if argnums is None else dataclasses.replace(case, argnums=argnums)

    return dataclasses.replace(base, name="fd:" + base.name, draw=draw, build=build, configs=configs,
                               values_per_shape=values_per_shape, kind="fd", dtype="float64")


def _gauss_newton(base: Family, configs: int, values_per_shape: int,
                  draw: Callable[[np.random.Generator, int], Options] | None) -> Family:
    """The ``gn:`` row: `base`'s cases (drawn by `draw`, default `base`'s) checked by `gn_checker`."""
    return dataclasses.replace(base, name="gn:" + base.name, draw=draw or base.draw, configs=configs,
                               values_per_shape=values_per_shape, kind="gn")



# ------------------------------------------------------------------------------ entries
@dataclasses.dataclass(frozen=True)
class Entry:
    """One function of the sweep: a row of the table, expanded by `expand` into its rows.

    Attributes:
      name: the function's name (the row ``name``; the derived rows prefix it).
      draw: ``(rng, i) -> options``, the i-th static configuration (JSON-serialisable values).
      build: ``(ops, options, dtype_name) -> Case`` with ``ops`` the custom side (`jaxcnn` or a
        stand-in); raises ValueError (the library's validation) for a configuration it rejects.
      configs: configs of the ``name`` row in the default sweep.
      values: value sets per static configuration of the ``name`` row.
      d2: ``(configs, values)`` of the ``d2:`` row, or None for no such row.
      vmap: ``(configs, values)`` of the ``vmap:`` row, or None.
      fd: ``(configs, values)`` of the ``fd:`` row (every entry has one).
      d2_options: options fixed on every configuration of the ``d2:`` row.
      gn: ``(configs, values)`` of the ``gn:`` row (the second-order rule), or None.
      gn_draw: the ``gn:`` row's draw (default `draw`): configurations small enough for the
        oracle's full Jacobian, ``(output size) x (argument size)`` per argument.
      network: a whole network: ``vmap:`` compares the per-example gradients only (not their VJP,
        whose compile time would dominate the sweep) and ``fd:`` perturbs the parameters only
        (each direction costs two forward passes).
      unavailable: ``() -> None`` or the reason the rows cannot run.
    """

    name: str
    draw: Callable[[np.random.Generator, int], Options]
    build: Callable[[Any, Options, str], Case]
    configs: int
    values: int
    d2: tuple[int, int] | None = None
    vmap: tuple[int, int] | None = None
    fd: tuple[int, int] = (3, 3)
    d2_options: Options | None = None
    gn: tuple[int, int] | None = None
    gn_draw: Callable[[np.random.Generator, int], Options] | None = None
    network: bool = False
    unavailable: Callable[[], str | None] = _available


def expand(entries: Iterable[Entry], ops: Any) -> dict[str, Family]:
    """Every entry's rows, keyed by name: all ``name`` rows in table order, then the ``d2:``, the
    ``gn:``, the ``vmap:`` and the ``fd:`` rows (each in table order), with `ops` as the custom side."""
    base = [(e, Family(e.name, e.draw, partial(e.build, ops), e.configs, e.values,
                       unavailable=e.unavailable)) for e in entries]
    rows = [family for _, family in base]
    rows += [_derived("d2:", family, _second_order, *e.d2, e.d2_options) for e, family in base if e.d2]
    rows += [_gauss_newton(family, *e.gn, e.gn_draw) for e, family in base if e.gn]
    rows += [_derived("vmap:", family, partial(_per_example, second_order=not e.network), *e.vmap)
             for e, family in base if e.vmap]
    rows += [_finite_differences(family, *e.fd, (0,) if e.network else None) for e, family in base]
    table = {row.name: row for row in rows}
    if len(table) != len(rows):
        names = [row.name for row in rows]
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"`expand`: two rows share a name: {twice}")
    return table


def default_configs(registry: dict[str, Family]) -> int:
    """Configs of the default sweep of `registry`'s rows: the sum of the rows' defaults."""
    return sum(f.configs for f in registry.values())


def allocate(family: Family, scale: float) -> list[int]:
    """Value sets per static configuration for ``round(configs * scale)`` (at least 1) configs."""
    total = max(1, round(family.configs * scale))
    shapes = math.ceil(total / family.values_per_shape)
    return [total // shapes + (1 if j < total % shapes else 0) for j in range(shapes)]
