r"""Errors, tolerances and result types of the gradient cross-check.

Errors (`array_errors`). For the custom result ``a`` and the reference result ``e`` (both taken
to float64), elementwise over the array:

.. math::

    \text{abs} = \max_i |a_i - e_i|, \qquad
    \text{rel} = \max_i \frac{|a_i - e_i|}{|e_i| + S}, \qquad
    S = \max\big(\max_j |e_j|,\ \min(1, G)\big)

with ``G`` the largest entry of every reference array of the same comparison (the outputs and
gradients of one `compare_vjp` call, the leaves of one tree; `comparison_floor`), and a result
passes when ``rel <= rtol``, i.e. ``|a - e| <= rtol * (|e| + S)`` elementwise: the test-suite's
definition (``tests/tolerances.py`` reads `RTOL` from here). Entries near zero are judged on a
scale, not their own: sums taken in another order differ by rounding proportional to the terms
summed, not to the result, and a gradient that cancels to nearly nothing (the second derivative of
a one-unit l2 pool, ``|x|``, is 0 up to rounding) is noise on its own scale. The array's own
largest entry is that scale; where the comparison holds larger values, they bound its terms, up
to 1. Until 2026-12-07 every scale was floored at 1, so that a comparison of small arrays only was
absolute: a function whose outputs and gradients are all ~1e-6, its rule 15% off, passed a float32
check (``rtol`` 1e-5). Where the comparison holds a value of 1 or more (a network's loss), a float32
check still resolves a gradient's error down to ~1e-5 in absolute terms only: the float64 check
(``rtol`` 1e-10) is the one that sees a small deep-layer gradient go wrong. An all-zero comparison
is met by zeros only. NaN against NaN and equal infinities count as equal; NaN or an infinity
against anything else is an infinite error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn._checks import fail

RTOL: Mapping[str, float] = MappingProxyType(
    {"float64": 1e-10, "float32": 1e-5, "float16": 1e-2, "bfloat16": 5e-2}
)
"""Per-dtype relative tolerance (see `array_errors`): the one table, read by ``tests/tolerances.py``
and by every check here."""

FD_STEP = 1e-6
"""Step ``h`` of the central differences (float64): ``(f(x + h v) - f(x - h v)) / 2h``."""

FD_RTOL = 1e-6
"""Tolerance of a finite-difference check: truncation ``O(h^2)`` plus rounding ``O(eps / h)``."""

FD_ROUNDING = 1e-3
"""The rounding floor of a finite-difference check's scale, per unit of ``sum_i |u_i f_i(x)|``: the
differences' rounding, ``eps sum_i |u_i f_i| / h`` (2.2e-10 of that sum), stays under ``FD_RTOL``
times the floor with a margin of 4.5 (`jaxcnn.gradcheck.check_finite_differences`)."""

_TINY = float(np.finfo(np.float64).tiny)

DEFAULT_PRECISION = "highest"
"""Matmul/conv precision of every check (no TF32 on GPUs, no bf16 passes on TPUs)."""


def rtol_for(dtype: Any) -> float:
    """The tolerance of `RTOL` for `dtype`.

    Raises:
      ValueError: no tolerance for that dtype (not a float type of the table).
    """
    name = jnp.dtype(dtype).name
    if name not in RTOL:
        raise fail("rtol_for", f"no tolerance for dtype {name}; expected one of {sorted(RTOL)}")
    return RTOL[name]


def _peak(array: Any) -> float:
    """The largest finite ``|entry|`` of `array` (0 for none)."""
    e = np.asarray(array, np.float64)
    return float(np.max(np.abs(e[np.isfinite(e)]), initial=0.0))


def comparison_floor(*expected: Any) -> float:
    """``min(1, G)``: ``G`` the largest finite ``|entry|`` of every array of the trees `expected`
    (the reference results of one comparison), the floor of each one's scale (module docstring)."""
    return min(1.0, max(map(_peak, jax.tree_util.tree_leaves(expected)), default=0.0))


def array_scale(expected: Any, floor: float = 0.0) -> float:
    """``S`` of the module docstring: the largest finite ``|entry|`` of `expected`, or `floor` (the
    comparison's, `comparison_floor`) if that is more; positive, so that all zeros divide too."""
    return max(_TINY, floor, _peak(expected))


def array_errors(actual: Any, expected: Any, floor: float = 0.0) -> tuple[float, float]:
    """``(max_abs, max_rel)`` of `actual` against `expected`, as defined in the module docstring;
    `floor` is the comparison's ``min(1, G)`` (`comparison_floor`; 0: the array's own scale only).

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
        raise fail("array_errors", f"`actual` has shape {a.shape} but `expected` has {e.shape}")
    if e.size == 0:
        return 0.0, 0.0
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - e)
        same = (a == e) | (np.isnan(a) & np.isnan(e))
        diff = np.where(same, 0.0, np.where(np.isnan(diff), np.inf, diff))
        rel = diff / (np.abs(e) + array_scale(e, floor))
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
    max_rel: float  # max |fd - vjp| / (|vjp| + S), S as in `check_finite_differences`
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
