r"""Cross-check the article's backward rules against autodiff, on any backend.

Library:

* `compare_vjp` — the custom VJP of a function against ``jax.vjp`` of its reference twin, with
  one random cotangent shared by both; per differentiable argument (per leaf of a pytree
  argument) the maximum absolute and relative error, the forward error too, pass/fail against
  the per-dtype tolerance table `RTOL`. `vjp_checker` returns the same comparison as a reusable
  callable, compiled once per argument structure, for many value sets.
* `check_finite_differences` — central differences in float64 of the custom *and* of the
  reference function along random directions ``v``, against ``<v, J^T u>`` from each one's VJP.
  `fd_checker` is its reusable form.

Errors (`array_errors`). For the custom result ``a`` and the reference result ``e`` (both taken
to float64), elementwise over the array:

.. math::

    \text{abs} = \max_i |a_i - e_i|, \qquad
    \text{rel} = \max_i \frac{|a_i - e_i|}{|e_i| + \max(1, \max_j |e_j|)}

and a result passes when ``rel <= rtol``, i.e. ``|a - e| <= rtol * (|e| + max(1, max|e|))``
elementwise: the test-suite's definition (``tests/tolerances.py``). Entries near zero are judged on
the array's scale, not their own (sums taken in another order differ by rounding proportional to
the terms, not to the result). NaN against NaN and equal infinities count as equal; NaN or an
infinity against anything else is an infinite error.

CLI, ``python -m jaxcnn.gradcheck [--configs N] [--seed S] [--dtype float32|float64]
[--json PATH] [--replay PATH] [--only NAMES] [--list] [--no-progress]``: a randomized sweep over
every public differentiable function and its options (every conv lowering of
``jaxcnn._lowering`` included), second-order gradients (``d2:``), per-example gradients under
``vmap`` (``vmap:``), finite differences (``fd:``) and the networks of `jaxcnn.models`, on the
default backend, at ``jax.default_matmul_precision("highest")``. Exit status 1 when any config
fails. See `main`.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn._gradcheck_cases import Case, Family, default_registry

__all__ = [
    "FD_RTOL",
    "FD_STEP",
    "RTOL",
    "Case",
    "CheckResult",
    "ErrorStats",
    "FDResult",
    "FDStats",
    "Family",
    "array_errors",
    "check_finite_differences",
    "compare_vjp",
    "default_registry",
    "fd_checker",
    "main",
    "rtol_for",
    "vjp_checker",
]

RTOL: Mapping[str, float] = MappingProxyType(
    {"float64": 1e-10, "float32": 1e-5, "float16": 1e-2, "bfloat16": 5e-2}
)
"""Per-dtype relative tolerance (see `array_errors`), the table of ``tests/tolerances.py``."""

FD_STEP = 1e-6
"""Step ``h`` of the central differences (float64): ``(f(x + h v) - f(x - h v)) / 2h``."""

FD_RTOL = 1e-6
"""Tolerance of a finite-difference check: truncation ``O(h^2)`` plus rounding ``O(eps / h)``."""

DEFAULT_PRECISION = "highest"
"""Matmul/conv precision of every check (no TF32 on GPUs, no bf16 passes on TPUs)."""


def rtol_for(dtype: Any) -> float:
    """The tolerance of `RTOL` for `dtype`.

    Raises:
      ValueError: no tolerance for that dtype (not a float type of the table).
    """
    name = jnp.dtype(dtype).name
    if name not in RTOL:
        raise ValueError(f"`rtol_for`: no tolerance for dtype {name}; expected one of {sorted(RTOL)}")
    return RTOL[name]


def array_errors(actual: Any, expected: Any) -> tuple[float, float]:
    """``(max_abs, max_rel)`` of `actual` against `expected`, as defined in the module docstring.

    Args:
      actual: the custom result.
      expected: the reference result, same shape.

    Returns:
      Two Python floats; ``(0.0, 0.0)`` for empty arrays, ``inf`` where NaN or an infinity meets
      a different value.

    Raises:
      ValueError: the shapes differ.
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise ValueError(f"`array_errors`: `actual` has shape {a.shape} but `expected` has {e.shape}")
    if e.size == 0:
        return 0.0, 0.0
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - e)
        same = (a == e) | (np.isnan(a) & np.isnan(e))
        diff = np.where(same, 0.0, np.where(np.isnan(diff), np.inf, diff))
        finite = np.abs(e[np.isfinite(e)])
        scale = max(1.0, float(np.max(finite, initial=0.0)))
        rel = diff / (np.abs(e) + scale)
        rel = np.where(same, 0.0, np.where(np.isnan(rel), np.inf, rel))
    return float(np.max(diff)), float(np.max(rel))


class ErrorStats(NamedTuple):
    """Errors of one array (an output, or the gradient of one argument or pytree leaf)."""

    name: str  # "output", "x", "params['h1']['w']", ...
    shape: tuple[int, ...]
    dtype: str
    max_abs: float
    max_rel: float  # see `array_errors`
    rtol: float

    @property
    def passed(self) -> bool:
        return self.max_rel <= self.rtol


@dataclass(frozen=True)
class CheckResult:
    """The result of `compare_vjp`.

    Attributes:
      forward: errors of the custom function's outputs against the reference's, one per leaf.
      grads: errors of the custom VJP against the reference VJP, one per differentiable argument
        (per leaf of a pytree argument), for the same cotangent.
      problems: structural mismatches (tree, shape or dtype of outputs or gradients); any makes
        the check fail. A gradient must have the dtype and shape of its argument.
      seed: the seed of the random cotangent (None when the cotangent was given).
    """

    forward: tuple[ErrorStats, ...]
    grads: tuple[ErrorStats, ...]
    problems: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def stats(self) -> tuple[ErrorStats, ...]:
        return self.forward + self.grads

    @property
    def passed(self) -> bool:
        return not self.problems and all(s.passed for s in self.stats)

    @property
    def worst_abs(self) -> float:
        return max((s.max_abs for s in self.stats), default=0.0)

    @property
    def worst_rel(self) -> float:
        return max((s.max_rel for s in self.stats), default=0.0)

    def grad(self, name: str) -> ErrorStats:
        """The gradient errors of the argument (or leaf) called `name`."""
        for s in self.grads:
            if s.name == name:
                return s
        raise KeyError(f"no gradient named {name!r}; have {[s.name for s in self.grads]}")

    def failures(self) -> list[str]:
        """Names of the failed entries and the structural problems."""
        return [s.name for s in self.stats if not s.passed] + list(self.problems)


class FDStats(NamedTuple):
    """Finite differences of one differentiable argument (all its leaves perturbed together)."""

    name: str
    fd: tuple[float, ...]  # (<u, f(x + h v)> - <u, f(x - h v)>) / 2h, one per direction v
    vjp: tuple[float, ...]  # <v, J^T u> from the function's VJP, same directions
    max_abs: float  # max |fd - vjp|
    max_rel: float  # max |fd - vjp| / (|vjp| + max(1, |vjp|))
    rtol: float

    @property
    def passed(self) -> bool:
        return self.max_rel <= self.rtol


@dataclass(frozen=True)
class FDResult:
    """The result of `check_finite_differences`.

    Attributes:
      custom: the custom VJP against central differences of the custom function.
      reference: the reference VJP against central differences of the reference function (a
        failure here means the oracle itself is wrong).
      step: the step ``h``; directions: directions per argument; seed: of ``u`` and the ``v``.
    """

    custom: tuple[FDStats, ...]
    reference: tuple[FDStats, ...]
    step: float
    directions: int
    seed: int

    @property
    def stats(self) -> tuple[FDStats, ...]:
        return self.custom + self.reference

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.stats)

    @property
    def worst_abs(self) -> float:
        return max((s.max_abs for s in self.stats), default=0.0)

    @property
    def worst_rel(self) -> float:
        return max((s.max_rel for s in self.stats), default=0.0)


# ------------------------------------------------------------------------------ internals
@contextlib.contextmanager
def _precision(precision: str | None) -> Iterator[None]:
    if precision is None:
        yield
    else:
        with jax.default_matmul_precision(precision):
            yield


def _argnames(fn: Callable[..., Any], n: int, argnames: Sequence[str] | None) -> tuple[str, ...]:
    if argnames is not None:
        if len(argnames) != n:
            raise ValueError(f"`argnames` has {len(argnames)} names for {n} arguments")
        return tuple(argnames)
    try:
        params = [
            p.name for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    return tuple(params[i] if i < len(params) else f"arg{i}" for i in range(n))


def _is_float_tree(tree: Any) -> bool:
    leaves = jax.tree_util.tree_leaves(tree)
    return bool(leaves) and all(jnp.issubdtype(jnp.result_type(x), jnp.inexact) for x in leaves)


def _resolve_argnums(args: tuple[Any, ...], argnums: int | Sequence[int] | None) -> tuple[int, ...]:
    if argnums is None:
        return tuple(i for i, a in enumerate(args) if _is_float_tree(a))
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for i in nums:
        if not -len(args) <= i < len(args):
            raise ValueError(f"`argnums` {i} is out of range for {len(args)} arguments")
    nums = tuple(i % len(args) for i in nums)
    for i in nums:
        if not _is_float_tree(args[i]):
            raise TypeError(f"argument {i} is differentiated (`argnums`) but is not floating point")
    return nums


def _leaf_names(prefix: str, tree: Any) -> list[str]:
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [prefix + jax.tree_util.keystr(path) for path, _ in paths]


def _struct(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), tree)


def _struct_key(args: tuple[Any, ...]) -> Any:
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return treedef, tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves)


def _mismatches(what: str, names: list[str], got: Any, want: Any) -> list[str]:
    """Tree/shape/dtype differences between two trees of arrays or structs."""
    got_leaves, got_def = jax.tree_util.tree_flatten(got)
    want_leaves, want_def = jax.tree_util.tree_flatten(want)
    if got_def != want_def:
        return [f"{what}: tree {got_def} but expected {want_def}"]
    out = []
    for name, g, w in zip(names, got_leaves, want_leaves, strict=True):
        gs, ws = (tuple(jnp.shape(g)), jnp.result_type(g)), (tuple(jnp.shape(w)), jnp.result_type(w))
        if gs != ws:
            out.append(f"{what} {name}: shape {gs[0]} dtype {gs[1]}, expected shape {ws[0]} dtype {ws[1]}")
    return out


def _random_tree(struct: Any, rng: np.random.Generator) -> Any:
    """Standard-normal leaves of the struct's shapes and dtypes (float0 zeros for int leaves)."""
    def leaf(s):
        if not jnp.issubdtype(s.dtype, jnp.inexact):
            return np.zeros(s.shape, dtype=jax.dtypes.float0)
        return jnp.asarray(np.asarray(rng.standard_normal(s.shape), dtype=s.dtype))

    return jax.tree_util.tree_map(leaf, struct)


def _restrict(fn: Callable[..., Any], args: tuple[Any, ...], argnums: tuple[int, ...]) -> Callable[..., Any]:
    def restricted(*diff):
        full = list(args)
        for i, d in zip(argnums, diff, strict=True):
            full[i] = d
        return fn(*full)

    return restricted


def _vjp_pair(custom_fn, reference_fn, argnums, args, cotangent):
    """Outputs and VJPs (one cotangent) of both functions; compiled by `vjp_checker`."""
    if not argnums:
        return custom_fn(*args), reference_fn(*args), (), ()
    diff = tuple(args[i] for i in argnums)
    out_c, vjp_c = jax.vjp(_restrict(custom_fn, args, argnums), *diff)
    out_r, vjp_r = jax.vjp(_restrict(reference_fn, args, argnums), *diff)
    return out_c, out_r, vjp_c(cotangent), vjp_r(cotangent)


def _stats(names: list[str], actual: Any, expected: Any, rtol: float | None) -> list[ErrorStats]:
    out = []
    leaves_e = jax.tree_util.tree_leaves(expected)
    for name, a, e in zip(names, jax.tree_util.tree_leaves(actual), leaves_e, strict=True):
        a, e = np.asarray(a), np.asarray(e)
        tol = rtol if rtol is not None else rtol_for(e.dtype) if jnp.issubdtype(e.dtype, jnp.inexact) else 0.0
        max_abs, max_rel = array_errors(a, e)
        out.append(ErrorStats(name, tuple(e.shape), jnp.dtype(e.dtype).name, max_abs, max_rel, tol))
    return out


class _Prepared(NamedTuple):
    argnums: tuple[int, ...]
    out: Any  # struct of the reference's output
    out_names: list[str]
    grad_names: list[str]
    problems: list[str]


# ------------------------------------------------------------------------------- public
def vjp_checker(
    custom_fn: Callable[..., Any],
    reference_fn: Callable[..., Any],
    *,
    argnums: int | Sequence[int] | None = None,
    argnames: Sequence[str] | None = None,
    rtol: float | None = None,
    jit: bool = True,
    precision: str | None = DEFAULT_PRECISION,
) -> Callable[..., CheckResult]:
    """`compare_vjp` as a reusable callable ``check(args, *, seed=0, cotangent=None)``.

    The comparison (both forwards, both VJPs) is one ``jax.jit`` function built here, so calls
    with arguments of the same shapes and dtypes compile once: draw many value sets per static
    configuration. Arguments as in `compare_vjp`.
    """
    prepared: dict[Any, _Prepared] = {}
    compiled: dict[tuple[int, ...], Callable[..., Any]] = {}

    def prepare(args: tuple[Any, ...]) -> _Prepared:
        key = _struct_key(args)
        if key not in prepared:
            nums = _resolve_argnums(args, argnums)
            names = _argnames(custom_fn, len(args), argnames)
            structs = _struct(args)
            out = jax.eval_shape(reference_fn, *structs)
            out_names = _leaf_names("output", out)
            problems = _mismatches("output", out_names, jax.eval_shape(custom_fn, *structs), out)
            grad_names = [n for i in nums for n in _leaf_names(names[i], args[i])]
            prepared[key] = _Prepared(nums, out, out_names, grad_names, problems)
        return prepared[key]

    def check(args: Sequence[Any], *, seed: int = 0, cotangent: Any = None) -> CheckResult:
        args = tuple(args)
        with _precision(precision):
            p = prepare(args)
            if p.problems:
                return CheckResult((), (), tuple(p.problems), seed)
            if cotangent is None:
                cot = _random_tree(p.out, np.random.default_rng([seed, 1]))
            else:
                bad = _mismatches("cotangent", p.out_names, cotangent, p.out)
                if bad:
                    raise ValueError("`cotangent` must match the output: " + "; ".join(bad))
                cot, seed = cotangent, None
            if p.argnums not in compiled:
                fn = partial(_vjp_pair, custom_fn, reference_fn, p.argnums)
                compiled[p.argnums] = jax.jit(fn) if jit else fn
            out_c, out_r, g_c, g_r = jax.device_get(compiled[p.argnums](args, cot))
        primals = tuple(args[i] for i in p.argnums)
        problems = _mismatches("gradient", p.grad_names, g_c, primals)
        problems += _mismatches("reference gradient", p.grad_names, g_r, primals)
        if problems:
            return CheckResult((), (), tuple(problems), seed)
        forward = _stats(p.out_names, out_c, out_r, rtol)
        grads = _stats(p.grad_names, g_c, g_r, rtol)
        return CheckResult(tuple(forward), tuple(grads), (), seed)

    return check


def compare_vjp(
    custom_fn: Callable[..., Any],
    reference_fn: Callable[..., Any],
    args: Sequence[Any],
    *,
    argnums: int | Sequence[int] | None = None,
    argnames: Sequence[str] | None = None,
    rtol: float | None = None,
    seed: int = 0,
    cotangent: Any = None,
    jit: bool = True,
    precision: str | None = DEFAULT_PRECISION,
) -> CheckResult:
    """Compare the custom VJP of `custom_fn` with ``jax.vjp`` of `reference_fn` at `args`.

    Both functions are evaluated at the same arguments and both VJPs applied to the same
    cotangent ``u`` (random standard-normal, drawn from `seed`, unless given): never through a
    sum, whose all-ones cotangent lets a wrong but symmetric rule pass.

    Args:
      custom_fn: the function under test, e.g. ``partial(jaxcnn.conv2d, stride=2)``.
      reference_fn: its twin, e.g. ``partial(jaxcnn.reference.conv2d, stride=2)``.
      args: positional arguments: arrays or pytrees of arrays (options are bound beforehand).
      argnums: differentiable positions; None (default): every argument whose leaves are all
        floating point (integer labels are held fixed).
      argnames: a name per argument for the report; default: `custom_fn`'s parameter names.
      rtol: one tolerance for every array; None (default): `RTOL` of each array's dtype.
      seed: seed of the random cotangent (NumPy, so the same on every backend).
      cotangent: an explicit cotangent, the reference output's tree, shapes and dtypes.
      jit: compile the comparison (default) or run it eagerly.
      precision: ``jax.default_matmul_precision`` for the check (default "highest"; None: leave
        the global setting).

    Returns:
      A `CheckResult`: forward errors, per-argument gradient errors (see `array_errors`),
      structural problems, and ``passed``.

    Raises:
      ValueError/TypeError: from the functions' own validation, or a bad `argnums`/`cotangent`.

    >>> import jax.numpy as jnp, jaxcnn
    >>> x, w = jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 4))
    >>> compare_vjp(jaxcnn.conv2d, jaxcnn.reference.conv2d, (x, w)).passed
    True
    """
    check = vjp_checker(custom_fn, reference_fn, argnums=argnums, argnames=argnames, rtol=rtol,
                        jit=jit, precision=precision)
    return check(args, seed=seed, cotangent=cotangent)


def _tree_vdot(a: Any, b: Any) -> jax.Array:
    terms = [
        jnp.vdot(x.ravel(), y.ravel())
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
        if jnp.issubdtype(jnp.result_type(x), jnp.inexact)
    ]
    return sum(terms[1:], terms[0]) if terms else jnp.zeros((), jnp.float64)


def _fd_pair(custom_fn, reference_fn, argnums, step, args, cotangent, directions):
    """Per function: the central differences along each direction and ``<v, J^T u>``."""
    diff = tuple(args[i] for i in argnums)
    rows = []
    for fn in (custom_fn, reference_fn):
        f = _restrict(fn, args, argnums)
        _, vjp = jax.vjp(f, *diff)
        grads = vjp(cotangent)
        fd, an = [], []
        for k in range(len(argnums)):
            for v in directions[k]:
                def moved(sign, f=f, k=k, v=v):
                    shifted = list(diff)
                    shifted[k] = jax.tree_util.tree_map(lambda p, d: p + sign * step * d, diff[k], v)
                    return f(*shifted)

                change = jax.tree_util.tree_map(lambda a, b: a - b, moved(1.0), moved(-1.0))
                fd.append(_tree_vdot(cotangent, change) / (2 * step))
                an.append(_tree_vdot(v, grads[k]))
        rows.append((jnp.stack(fd), jnp.stack(an)))
    return rows


def _as_float64(tree: Any) -> Any:
    def cast(x):
        x = jnp.asarray(x)
        return x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree_util.tree_map(cast, tree)


def fd_checker(
    custom_fn: Callable[..., Any],
    reference_fn: Callable[..., Any],
    *,
    argnums: int | Sequence[int] | None = None,
    argnames: Sequence[str] | None = None,
    directions: int = 2,
    step: float = FD_STEP,
    rtol: float = FD_RTOL,
    jit: bool = True,
    precision: str | None = DEFAULT_PRECISION,
) -> Callable[..., FDResult]:
    """`check_finite_differences` as a reusable callable ``check(args, *, seed=0)``, compiled
    once per argument structure. Arguments as in `check_finite_differences`."""
    compiled: dict[Any, Callable[..., Any]] = {}

    def check(args: Sequence[Any], *, seed: int = 0) -> FDResult:
        with jax.enable_x64(True), _precision(precision):
            args = _as_float64(tuple(args))
            nums = _resolve_argnums(args, argnums)
            names = _argnames(custom_fn, len(args), argnames)
            out = jax.eval_shape(reference_fn, *_struct(args))
            rng = np.random.default_rng([seed, 2])
            cot = _random_tree(out, rng)
            dirs = tuple(tuple(_random_tree(_struct(args[i]), rng) for _ in range(directions)) for i in nums)
            key = (_struct_key(args), nums)
            if key not in compiled:
                fn = partial(_fd_pair, custom_fn, reference_fn, nums, step)
                compiled[key] = jax.jit(fn) if jit else fn
            rows = jax.device_get(compiled[key](args, cot, dirs)) if nums else []
        results = []
        for fd, an in rows:
            fd = np.asarray(fd).reshape(len(nums), directions)
            an = np.asarray(an).reshape(len(nums), directions)
            stats = []
            for k, i in enumerate(nums):
                err = np.abs(fd[k] - an[k])
                err = np.where(np.isnan(err), np.inf, err)
                rel = err / (np.abs(an[k]) + np.maximum(1.0, np.abs(an[k])))
                rel = np.where(np.isnan(rel), np.inf, rel)
                stats.append(FDStats(names[i], tuple(map(float, fd[k])), tuple(map(float, an[k])),
                                     float(err.max()), float(rel.max()), rtol))
            results.append(tuple(stats))
        custom, ref = results if results else ((), ())
        return FDResult(custom, ref, step, directions, seed)

    return check


def check_finite_differences(
    custom_fn: Callable[..., Any],
    reference_fn: Callable[..., Any],
    args: Sequence[Any],
    *,
    argnums: int | Sequence[int] | None = None,
    argnames: Sequence[str] | None = None,
    directions: int = 2,
    step: float = FD_STEP,
    rtol: float = FD_RTOL,
    seed: int = 0,
    jit: bool = True,
    precision: str | None = DEFAULT_PRECISION,
) -> FDResult:
    r"""Check both VJPs against central finite differences, in float64.

    For each differentiable argument ``x_k`` and each of `directions` random directions ``v``
    (standard normal, on every leaf of ``x_k``), with one random output cotangent ``u``:

    .. math::

        \mathrm{fd} = \frac{\langle u, f(x_k + h v) - f(x_k - h v) \rangle}{2h}, \qquad
        \mathrm{vjp} = \langle v, J_k^T u \rangle,

    for ``f`` the custom function (its custom VJP) and the reference (autodiff). Errors:
    ``|fd - vjp|`` and ``|fd - vjp| / (|vjp| + max(1, |vjp|))``, the worst over the directions,
    passing when the latter is ``<= rtol``. The error of the differences themselves is
    ``O(h^2)`` (truncation) plus ``O(eps |f| / h)`` (rounding), ~1e-9 here for O(1) values.

    Runs with ``jax.enable_x64(True)`` and casts the floating-point arguments to float64. At a
    kink (relu at 0, a max-pool tie) the function has no derivative and differences mean
    nothing: draw values away from kinks.

    Args:
      custom_fn, reference_fn, args, argnums, argnames, seed, jit, precision: as in `compare_vjp`.
      directions: random directions per argument.
      step: ``h``.
      rtol: tolerance of the relative error above.

    Returns:
      An `FDResult` with the errors of the custom and of the reference VJP.
    """
    check = fd_checker(custom_fn, reference_fn, argnums=argnums, argnames=argnames,
                       directions=directions, step=step, rtol=rtol, jit=jit, precision=precision)
    return check(args, seed=seed)


# ---------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None, *, registry: Mapping[str, Family] | None = None) -> int:
    """The CLI: ``python -m jaxcnn.gradcheck [options]``; returns the exit status.

    Options:
      --configs N: total configs (default: the registry's default sweep, 1,371 with
        `jaxcnn.models`); spread over the rows in proportion to their defaults, at least one
        each. A config is one value set of one static configuration (shapes and options); each
        static configuration is compiled once and run on several value sets.
      --seed S: seed of the sweep (static configurations and per-config value seeds).
      --dtype float32|float64: dtype of every array (float64 switches x64 on for the run).
      --json PATH: write every config to PATH, atomically (temporary file + ``os.replace``):
        top level ``tool, format, argv, seed, dtype, backend, device, jax, precision, wall_s,
        cpu_s, passed, summary, configs``; per config ``function, kind ("vjp"/"fd"), options,
        dtype, seed, shapes, status ("pass"/"fail"/"error"/"invalid"), rtol, worst_abs,
        worst_rel, errors`` (per output and per argument ``{"abs", "rel"}``), ``message``
        (format details in ``jaxcnn/_gradcheck_sweep.py``).
      --replay PATH: re-run exactly the failed configs of such a file (same options, shapes,
        dtype and values, regenerated from each config's seed) and report them.
      --only NAMES: comma-separated row names or shell patterns (``conv2d,d2:*``).
      --list: print the rows and exit. --no-progress: no progress bar.

    Args:
      argv: the arguments (default: ``sys.argv[1:]``).
      registry: the rows (default: `default_registry()`); the seam for planting a wrong rule.

    Returns:
      0 when every config passed, 1 when any failed (or errored), 2 for bad usage.
    """
    from jaxcnn import _gradcheck_sweep

    return _gradcheck_sweep.run_cli(argv, registry if registry is not None else default_registry())


if __name__ == "__main__":
    # Delegate to the imported module, so that its classes are the ones `jaxcnn.gradcheck` exports.
    from jaxcnn.gradcheck import main as _main

    sys.exit(_main())
