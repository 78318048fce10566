"""The two checks: a custom VJP against autodiff of its twin, and both against finite differences.

* `compare_vjp` — the custom VJP of a function against ``jax.vjp`` of its reference twin, with
  one random cotangent shared by both; per differentiable argument (per leaf of a pytree
  argument) the maximum absolute and relative error (`jaxcnn.gradcheck.errors.array_errors`), the
  forward error too, pass/fail against the per-dtype table `RTOL`. `vjp_checker` returns the same
  comparison as a reusable callable, compiled once per argument structure, for many value sets.
* `check_finite_differences` — central differences in float64 of the custom *and* of the
  reference function along random directions ``v``, against ``<v, J^T u>`` from each one's VJP.
  `fd_checker` is its reusable form.
* `compare_gauss_newton` — the second-order (diagonal Gauss-Newton) rule of `jaxcnn.curvature`
  against the oracle of ``jaxcnn._curvature_cases`` (``sum_j J[j, i]**2 h[j]`` from ``jax.jacrev``
  of the reference; the Hessian's diagonal for a loss), for one random positive ``h``, with the
  same errors and tolerances as `compare_vjp`. `gn_checker` is its reusable form.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import _curvature_cases
from jaxcnn._checks import fail
from jaxcnn.gradcheck.errors import (
    DEFAULT_PRECISION,
    FD_ROUNDING,
    FD_RTOL,
    FD_STEP,
    CheckResult,
    ErrorStats,
    FDResult,
    FDStats,
    array_errors,
    comparison_floor,
    rtol_for,
)

__all__ = ["check_finite_differences", "compare_gauss_newton", "compare_vjp", "fd_checker", "gn_checker",
           "vjp_checker"]


# ------------------------------------------------------------------------------ internals
@contextlib.contextmanager
def _precision(precision: str | None) -> Iterator[None]:
    if precision is None:
        yield
    else:
        with jax.default_matmul_precision(precision):
            yield


def _argnames(caller: str, fn: Callable[..., Any], n: int, argnames: Sequence[str] | None) -> tuple[str, ...]:
    if argnames is not None:
        if len(argnames) != n:
            raise fail(caller, f"`argnames` has {len(argnames)} names for {n} arguments")
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


def _resolve_argnums(caller: str, args: tuple[Any, ...],
                     argnums: int | Sequence[int] | None) -> tuple[int, ...]:
    if argnums is None:
        return tuple(i for i, a in enumerate(args) if _is_float_tree(a))
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for i in nums:
        if not -len(args) <= i < len(args):
            raise fail(caller, f"`argnums` {i} is out of range for {len(args)} arguments")
    nums = tuple(i % len(args) for i in nums)
    for i in nums:
        if not _is_float_tree(args[i]):
            raise fail(caller, f"argument {i} is differentiated (`argnums`) but is not floating point",
                       TypeError)
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


def _stats(names: list[str], actual: Any, expected: Any, rtol: float | None,
           floor: float) -> list[ErrorStats]:
    out = []
    leaves_e = jax.tree_util.tree_leaves(expected)
    for name, a, e in zip(names, jax.tree_util.tree_leaves(actual), leaves_e, strict=True):
        a, e = np.asarray(a), np.asarray(e)
        tol = rtol if rtol is not None else rtol_for(e.dtype) if jnp.issubdtype(e.dtype, jnp.inexact) else 0.0
        max_abs, max_rel = array_errors(a, e, floor)
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
            nums = _resolve_argnums("compare_vjp", args, argnums)
            names = _argnames("compare_vjp", custom_fn, len(args), argnames)
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
                    raise fail("compare_vjp", "`cotangent` must match the output: " + "; ".join(bad))
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
        floor = comparison_floor(out_r, g_r)
        forward = _stats(p.out_names, out_c, out_r, rtol, floor)
        grads = _stats(p.grad_names, g_c, g_r, rtol, floor)
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
        out, vjp = jax.vjp(f, *diff)
        grads = vjp(cotangent)
        size = _tree_vdot(jax.tree_util.tree_map(jnp.abs, cotangent), jax.tree_util.tree_map(jnp.abs, out))
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
        rows.append((jnp.stack(fd), jnp.stack(an), size))
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
            nums = _resolve_argnums("check_finite_differences", args, argnums)
            names = _argnames("check_finite_differences", custom_fn, len(args), argnames)
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
        for fd, an, size in rows:
            fd = np.asarray(fd).reshape(len(nums), directions)
            an = np.asarray(an).reshape(len(nums), directions)
            rounding = min(1.0, FD_ROUNDING * float(size))
            floor = max(comparison_floor(an), rounding, np.finfo(np.float64).tiny)  # > 0: zeros divide
            stats = []
            for k, i in enumerate(nums):
                err = np.abs(fd[k] - an[k])
                err = np.where(np.isnan(err), np.inf, err)
                rel = err / (np.abs(an[k]) + np.maximum(floor, np.abs(an[k])))
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
    ``|fd - vjp|`` and ``|fd - vjp| / (|vjp| + S)``, ``S = max(|vjp|, min(1, G))``, the worst over
    the directions, passing when the latter is ``<= rtol``; ``G`` is the larger of the check's
    largest ``|vjp|`` (every argument and direction) and ``FD_ROUNDING * sum_i |u_i f_i(x)|``, the
    scale of the differences' own rounding. The error of the differences themselves is ``O(h^2)``
    (truncation) plus ``O(eps sum_i |u_i f_i| / h)`` (rounding), ~1e-10 of that sum. (Until
    2026-12-07 ``S`` was never below 1: a function whose values and gradients are small was checked
    in absolute terms.)

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


# ------------------------------------------------------------------ second order (gn:)
def _gn_pair(custom_fn, reference_fn, argnums, loss, chain, args, h):
    """The second-order rule of `custom_fn` and its oracle (`jaxcnn._curvature_cases`), for the
    arguments at `argnums`; compiled by `gn_checker`."""
    diff = tuple(args[i] for i in argnums)
    case = _curvature_cases.Case("gn", _restrict(custom_fn, args, argnums),
                                 _restrict(reference_fn, args, argnums), tuple(jnp.shape(d) for d in diff),
                                 loss=loss, chain=chain)
    return _curvature_cases.rule_and_oracle(case, diff, h)


def gn_checker(
    custom_fn: Callable[..., Any],
    reference_fn: Callable[..., Any],
    *,
    argnums: int | Sequence[int] | None = None,
    argnames: Sequence[str] | None = None,
    loss: bool = False,
    chain: Any = None,
    rtol: float | None = None,
    jit: bool = True,
    precision: str | None = DEFAULT_PRECISION,
) -> Callable[..., CheckResult]:
    """`compare_gauss_newton` as a reusable callable ``check(args, *, seed=0, h=None)``, compiled
    once per argument structure. Arguments as in `compare_gauss_newton`."""
    prepared: dict[Any, _Prepared] = {}
    compiled: dict[tuple[int, ...], Callable[..., Any]] = {}

    def prepare(args: tuple[Any, ...]) -> _Prepared:
        key = _struct_key(args)
        if key not in prepared:
            nums = _resolve_argnums("compare_gauss_newton", args, argnums)
            names = _argnames("compare_gauss_newton", custom_fn, len(args), argnames)
            out = jax.eval_shape(reference_fn, *_struct(args))
            problems = [] if isinstance(out, jax.ShapeDtypeStruct) else \
                [f"output: one array expected (the rule's h has the output's shape), got {out}"]
            problems += [f"argument {names[i]}: one array expected, got a pytree" for i in nums
                         if len(jax.tree_util.tree_leaves(args[i])) != 1 or not hasattr(args[i], "shape")]
            prepared[key] = _Prepared(nums, out, ["output"], [names[i] for i in nums], problems)
        return prepared[key]

    def check(args: Sequence[Any], *, seed: int = 0, h: Any = None) -> CheckResult:
        args = tuple(args)
        with _precision(precision):
            p = prepare(args)
            if p.problems or not p.argnums:
                return CheckResult((), (), tuple(p.problems), seed)
            if h is None:
                rng = np.random.default_rng([seed, 5])
                h = jnp.asarray(np.asarray(rng.uniform(0.5, 2.0, p.out.shape), dtype=p.out.dtype))
            else:
                bad = _mismatches("h", p.out_names, h, p.out)
                if bad:
                    raise fail("compare_gauss_newton", "`h` must match the output: " + "; ".join(bad))
                seed = None
            if p.argnums not in compiled:
                fn = partial(_gn_pair, custom_fn, reference_fn, p.argnums, bool(loss), chain)
                compiled[p.argnums] = jax.jit(fn) if jit else fn
            got, want = jax.device_get(compiled[p.argnums](args, h))
        primals = tuple(args[i] for i in p.argnums)
        problems = _mismatches("curvature", p.grad_names, got, primals)
        problems += _mismatches("oracle", p.grad_names, want, primals)
        if problems:
            return CheckResult((), (), tuple(problems), seed)
        stats = _stats(p.grad_names, got, want, rtol, comparison_floor(want))
        return CheckResult((), tuple(stats), (), seed)

    return check


def compare_gauss_newton(
    custom_fn: Callable[..., Any],
    reference_fn: Callable[..., Any],
    args: Sequence[Any],
    *,
    argnums: int | Sequence[int] | None = None,
    argnames: Sequence[str] | None = None,
    loss: bool = False,
    chain: Any = None,
    rtol: float | None = None,
    seed: int = 0,
    h: Any = None,
    jit: bool = True,
    precision: str | None = DEFAULT_PRECISION,
) -> CheckResult:
    r"""Compare the second-order rule of `custom_fn` with the squared-Jacobian oracle at `args`.

    The rule is ``jax.vjp`` of `custom_fn` traced under `jaxcnn.curvature.second_order` applied to
    ``h`` (one positive array of the output's shape, uniform in [0.5, 2) from `seed`, unless
    given); the oracle, from ``jax.jacrev`` of `reference_fn` (``jaxcnn._curvature_cases.oracle``):

    .. math::
        h^{x}_{i} = \sum_j J_{j,i}^2\, h_j

    per differentiable argument; for a scalar loss (`loss`) ``h`` times the Hessian's diagonal; for
    a copy-padded conv (`chain`, see ``jaxcnn._curvature_cases.padding_mode_chain``) LeCun's rule
    through the pad and the VALID conv. Errors and tolerances as in `compare_vjp`.

    Args:
      custom_fn, reference_fn, args, argnums, argnames, rtol, seed, jit, precision: as in
        `compare_vjp`; every differentiable argument and the output must be single arrays.
      loss: `custom_fn` is a scalar loss (the oracle is the Hessian's diagonal).
      chain: ``(jnp.pad mode, pads, VALID conv options)`` of a ``padding_mode`` conv, or None.
      h: an explicit ``h`` (the output's shape and dtype).

    Returns:
      A `CheckResult` whose ``grads`` are the rule's ``h`` of each argument against the oracle's
      (no ``forward``: the first-order rows compare the outputs).

    >>> import jax.numpy as jnp, jaxcnn
    >>> x = jnp.linspace(-2.0, 2.0, 12).reshape(3, 4)
    >>> compare_gauss_newton(jaxcnn.tanh, jaxcnn.reference.tanh, (x,)).passed
    True
    >>> compare_gauss_newton(jaxcnn.reference.tanh, jaxcnn.reference.tanh, (x,)).passed  # J, not J**2
    False
    """
    check = gn_checker(custom_fn, reference_fn, argnums=argnums, argnames=argnames, loss=loss, chain=chain,
                       rtol=rtol, jit=jit, precision=precision)
    return check(args, seed=seed, h=h)
