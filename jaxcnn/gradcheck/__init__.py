r"""Cross-check the article's backward rules against autodiff, on any backend.

Library (`jaxcnn.gradcheck.compare`, `jaxcnn.gradcheck.errors`):

* `compare_vjp` — the custom VJP of a function against ``jax.vjp`` of its reference twin, with
  one random cotangent shared by both; per differentiable argument (per leaf of a pytree
  argument) the maximum absolute and relative error (`array_errors`), the forward error too,
  pass/fail against the per-dtype tolerance table `RTOL` (`rtol_for`), the one table of the
  test-suite too. `vjp_checker` is its reusable form, compiled once per argument structure.
* `check_finite_differences` — central differences in float64 (step `FD_STEP`, tolerance
  `FD_RTOL`) of the custom *and* of the reference function along random directions, against
  ``<v, J^T u>`` from each one's VJP. `fd_checker` is its reusable form.
* `compare_gauss_newton` — the second-order (diagonal Gauss-Newton) rule of `jaxcnn.curvature`
  against the squared-Jacobian oracle of ``jaxcnn._curvature_cases`` (the Hessian's diagonal for a
  loss), tolerance `RTOL`. `gn_checker` is its reusable form.

The sweep (`jaxcnn.gradcheck.table`, `jaxcnn.gradcheck.cases`, `jaxcnn.gradcheck.sweep`): one
`Entry` per function in `jaxcnn.gradcheck.table.ENTRIES`, expanded into rows (`Family`) that draw
static configurations and build `Case`\ s; `default_registry` is the expanded table.

CLI, ``python -m jaxcnn.gradcheck [--configs N] [--seed S] [--dtype float32|float64]
[--json PATH] [--replay PATH] [--only NAMES] [--list] [--no-progress]``: a randomized sweep over
every public differentiable function and its options (every conv lowering of
``jaxcnn._lowering`` included), second-order gradients (``d2:``), the second-order (Gauss-Newton)
rules of `jaxcnn.curvature` (``gn:``), per-example gradients under ``vmap`` (``vmap:``), finite
differences (``fd:``) and the networks of `jaxcnn.models`, on the
default backend, at ``jax.default_matmul_precision("highest")``. Exit status 1 when any config
fails. See `main`.

Layering: this package sits above `jaxcnn.models` and the core; nothing in the core imports it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from jaxcnn.gradcheck import sweep as _sweep
from jaxcnn.gradcheck.cases import Case, Entry, Family
from jaxcnn.gradcheck.compare import (
    check_finite_differences,
    compare_gauss_newton,
    compare_vjp,
    fd_checker,
    gn_checker,
    vjp_checker,
)
from jaxcnn.gradcheck.errors import (
    DEFAULT_PRECISION,
    FD_ROUNDING,
    FD_RTOL,
    FD_STEP,
    RTOL,
    CheckResult,
    ErrorStats,
    FDResult,
    FDStats,
    array_errors,
    array_scale,
    comparison_floor,
    rtol_for,
)
from jaxcnn.gradcheck.table import default_registry

__all__ = [
    "DEFAULT_PRECISION",
    "FD_ROUNDING",
    "FD_RTOL",
    "FD_STEP",
    "RTOL",
    "Case",
    "CheckResult",
    "Entry",
    "ErrorStats",
    "FDResult",
    "FDStats",
    "Family",
    "array_errors",
    "array_scale",
    "check_finite_differences",
    "comparison_floor",
    "compare_gauss_newton",
    "compare_vjp",
    "default_registry",
    "fd_checker",
    "gn_checker",
    "main",
    "rtol_for",
    "vjp_checker",
]


def main(argv: Sequence[str] | None = None, *, registry: Mapping[str, Family] | None = None) -> int:
    """The CLI: ``python -m jaxcnn.gradcheck [options]``; returns the exit status.

    Options:
      --configs N: total configs of the selected rows (default: their default sweep, 2,025 for
        every row); spread over the rows in proportion to their defaults, at least one each, so
        ``--only conv2d --configs 20`` checks 20 conv2d configs. A config is one value set of one
        static configuration (shapes and options); each static configuration is compiled once and
        run on several value sets.
      --seed S: seed of the sweep (static configurations and per-config value seeds).
      --dtype float32|float64: dtype of every array (float64 switches x64 on for the run).
      --json PATH: write every config to PATH, atomically (temporary file + ``os.replace``):
        top level ``tool, format, argv, seed, dtype, backend, device, jax, precision, wall_s,
        cpu_s, passed, summary, configs``; per config ``function, kind ("vjp"/"fd"/"gn"), options,
        dtype, seed, shapes, status ("pass"/"fail"/"error"/"invalid"), rtol, worst_abs,
        worst_rel, errors`` (per output and per argument ``{"abs", "rel"}``), ``message``
        (format details in `jaxcnn.gradcheck.sweep`).
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
    return _sweep.run_cli(argv, registry if registry is not None else default_registry())
