"""The curvature LeCun's method sees in lecun1989, the steps it takes, and how close it is to the
exact Gauss-Newton diagonal.

    python experiments/sdlm_figure.py            # writes runs/sdlm/curvature.png and .json

For `jaxcnn.models.lecun1989` on the embedded digits, at initialisation and after `--passes` SDLM
passes (`jaxcnn.sdlm.fit`, the settings of ``experiments/sdlm_seeds.py``):

1. the per-parameter curvature ``h`` of each layer, averaged over 500 training examples
   (`jaxcnn.sdlm.estimate_curvature`: the second-order rules of `jaxcnn.curvature`);
2. the resulting step ``eps / (mu + h)`` divided by the SGD rate of ``experiments/lecun1989.py``
   (above 1: SDLM moves that parameter faster than SGD; below 1: slower);
3. LeCun's diagonal (cross terms dropped layer by layer) against the exact Gauss-Newton diagonal
   ``sum_k J_k**2`` (Eq 9's loss Hessian is the identity) from `jaxcnn.reference`'s autodiff, per
   example, on `--examples` examples: correlation and relative error per layer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import _report  # experiments/_report.py: this script's folder is on sys.path
import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jaxcnn  # noqa: E402
from jaxcnn import curvature, datasets, models, sdlm, train  # noqa: E402

SGD_LR = 0.005
LAYERS = ("H1", "H2", "H3", "out")
GROUPS = tuple((layer, name) for layer in LAYERS for name in ("w", "b"))  # weights and biases apart


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--passes", type=int, default=23, help="SDLM passes before the second snapshot")
    p.add_argument("--eps", type=float, default=0.00025)
    p.add_argument("--mu", type=float, default=sdlm.DEFAULT_MU)
    p.add_argument("--samples", type=int, default=sdlm.DEFAULT_SAMPLES)
    p.add_argument("--examples", type=int, default=8, help="examples of the exact Gauss-Newton comparison")
    p.add_argument("--train-per-class", type=int, default=300)
    p.add_argument("--test-per-class", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/sdlm"))
    args = p.parse_args(argv)
    _report.check_args(p, args, counts=("passes", "samples", "examples", "train_per_class", "test_per_class"),
                       positive=("eps", "mu"), nonnegative=("seed",), folders=("out",),
                       per_class=("train_per_class", "test_per_class"))
    for flag, n in (("--samples", args.samples), ("--examples", args.examples)):
        if n > 10 * args.train_per_class:  # ten classes; the first n training digits are taken
            p.error(f"{flag} must be at most the {10 * args.train_per_class} training digits, got {n}")
    return args


def exact_gauss_newton(model: models.Model, params: Any, x: jax.Array) -> Any:
    """Per-example mean of ``sum_k (dy_k/dw)**2`` through the reference network (autodiff), one
    Jacobian row at a time (one compiled gradient)."""
    row = jax.jit(jax.grad(lambda p, i, k: model.apply(p, x, ops=jaxcnn.reference)[i, k]))
    total = jax.tree.map(jnp.zeros_like, params)
    for i in range(x.shape[0]):
        for k in range(10):
            total = jax.tree.map(lambda acc, g: acc + g * g, total, row(params, i, k))
    return jax.tree.map(lambda a: a / x.shape[0], total)


def compare(approx: Any, exact: Any) -> dict[str, dict[str, float]]:
    """Per layer's weights and biases: Pearson correlation (of the values and of their logs), relative error
    ``|a - e| / |e|`` (2-norms) and the median ratio ``a / e`` over the parameters whose exact
    curvature is not 0 (the masked H2 connections are 0 in both)."""
    out = {}
    for layer, name in GROUPS:
        a, e = np.ravel(approx[layer][name]), np.ravel(exact[layer][name])
        nz = e > 0
        out[f"{layer}.{name}"] = {"correlation": float(np.corrcoef(a[nz], e[nz])[0, 1]),
                                  "log_correlation": float(np.corrcoef(np.log(a[nz]), np.log(e[nz]))[0, 1]),
                      "relative_error": float(np.linalg.norm(a[nz] - e[nz]) / np.linalg.norm(e[nz])),
                      "median_ratio": float(np.median(a[nz] / e[nz])),
                      "zero_where_exact_zero": bool(np.all(a[~nz] == 0))}
    return out


def layer_values(tree: Any, group: tuple[str, str], mask: Any) -> np.ndarray:
    """A layer's weights or biases where `mask` is nonzero (the H2 connection table)."""
    layer, name = group
    return np.ravel(tree[layer][name])[np.ravel(mask[layer][name]) != 0]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    x_tr, y_tr, x_te, y_te = datasets.lecun1989_data(train_per_class=args.train_per_class,
                                                     test_per_class=args.test_per_class)
    t_tr, t_te = datasets.one_hot_pm1(y_tr), datasets.one_hot_pm1(y_te)
    model = models.lecun1989()
    params0 = model.init(jax.random.key(args.seed))
    optimizer = sdlm.sdlm(args.eps, mu=args.mu)
    try:
        fitted = sdlm.fit(model.apply, jaxcnn.squared_error, optimizer, params0, (x_tr, t_tr),
                          epochs=args.passes, seed=args.seed, samples=args.samples,
                          eval_sets={"test": (x_te, t_te)}, progress=False)
    except train.NonFiniteLossError as err:
        print(f"error: {err}; lower --eps", file=sys.stderr)
        return 1
    snapshots = {"initialisation": params0, f"after {args.passes} SDLM passes": fitted.params}
    estimate = jax.jit(lambda p: sdlm.estimate_curvature(model.apply, jaxcnn.squared_error, p,
                                                         x_tr[: args.samples], t_tr[: args.samples]))
    mask = jax.tree.map(lambda w: jnp.ones_like(w), params0)
    mask["H2"]["w"] = jnp.broadcast_to(jnp.asarray(models.h2_connection_mask(), jnp.float32), (5, 5, 12, 12))

    record: dict[str, Any] = {"settings": {k: str(v) for k, v in vars(args).items()},
                              "test_error_after": fitted.history[-1]["test_error"], "snapshots": {}}
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    xe = x_tr[: args.examples]
    for s, (label, params) in enumerate(snapshots.items()):
        h = estimate(params)
        steps = jax.tree.map(lambda hh: args.eps / (args.mu + hh) / SGD_LR, h)
        # LeCun's diagonal per example on the comparison examples, against the exact one
        approx = jax.tree.map(lambda a: a / args.examples, curvature.diag_gauss_newton(
            lambda p: jaxcnn.squared_error(model.apply(p, xe), t_tr[: args.examples]), params))
        exact = exact_gauss_newton(model, params, xe)
        cmp = compare(approx, exact)
        rec = record["snapshots"][label] = {"comparison": cmp, "layers": {}}
        for i, group in enumerate(GROUPS):
            hv, sv = layer_values(h, group, mask), layer_values(steps, group, mask)
            rec["layers"][".".join(group)] = {
                "h_median": float(np.median(hv)), "h_min": float(hv.min()), "h_max": float(hv.max()),
                "step_over_sgd_median": float(np.median(sv)), "step_over_sgd_min": float(sv.min()),
                "step_over_sgd_max": float(sv.max())}
            pos = 3 * i + s * 1.2
            for ax, v in ((axes[0], hv), (axes[1], sv)):
                ax.boxplot(np.maximum(v, 1e-12), positions=[pos], widths=1.0, showfliers=False,
                           patch_artist=True,
                           boxprops={"facecolor": ("tab:blue", "tab:orange")[s], "alpha": 0.6})
        for layer, color in zip(LAYERS, ("tab:blue", "tab:orange", "tab:green", "tab:red"), strict=True):
            a = np.concatenate([layer_values(approx, (layer, n), mask) for n in ("w", "b")])
            e = np.concatenate([layer_values(exact, (layer, n), mask) for n in ("w", "b")])
            axes[2].scatter(np.maximum(e, 1e-12), np.maximum(a, 1e-12), s=3, alpha=0.4, color=color,
                            marker=("o", "x")[s], label=f"{layer} ({label})")
        print(label if s == 0 else f"{label} (test error {fitted.history[-1]['test_error']:.2%})")
        rows = [("params", "median h", "median step / SGD", "step / SGD (min-max)", "corr. vs exact GN",
                 "corr. of logs", "rel. error", "median ratio")]
        for key in (".".join(g) for g in GROUPS):
            lr_, c = rec["layers"][key], cmp[key]
            rows.append((key, f"{lr_['h_median']:.3g}", f"{lr_['step_over_sgd_median']:.2f}",
                         f"{lr_['step_over_sgd_min']:.2f}-{lr_['step_over_sgd_max']:.2f}",
                         f"{c['correlation']:.3f}", f"{c['log_correlation']:.3f}",
                         f"{c['relative_error']:.3f}", f"{c['median_ratio']:.3f}"))
        print(_report.format_table(rows), "\n")

    ticks = [3 * i + 0.6 for i in range(len(GROUPS))]
    for ax, title, ylabel in ((axes[0], f"curvature h (GN diagonal, mean of {args.samples} examples)", "h"),
                              (axes[1], f"SDLM step eps/(mu+h) / SGD rate {SGD_LR}", "step ratio")):
        ax.set_yscale("log")
        ax.set_xticks(ticks, [".".join(g) for g in GROUPS])
        ax.set_title(title)
        ax.set_ylabel(ylabel)
    axes[1].axhline(1.0, color="k", lw=0.8, ls="--")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.6) for c in ("tab:blue", "tab:orange")]
    axes[0].legend(handles, list(snapshots), fontsize=8)
    axes[2].set_xscale("log")
    axes[2].set_yscale("log")
    lims = [1e-8, 10]
    axes[2].plot(lims, lims, "k--", lw=0.8)
    axes[2].set_xlim(lims)
    axes[2].set_ylim(lims)
    axes[2].set_xlabel("exact Gauss-Newton diagonal (autodiff)")
    axes[2].set_ylabel("LeCun's diagonal (second-order rules)")
    axes[2].set_title(f"per parameter, mean of {args.examples} examples")
    axes[2].legend(fontsize=7, markerscale=3)
    fig.suptitle("lecun1989: what the diagonal Newton method of LeCun et al. 1989 sees")
    fig.tight_layout()
    _report.save_png(fig, args.out / "curvature.png", dpi=110)
    _report.write_json(args.out / "curvature.json", record)
    print(f"wrote {args.out / 'curvature.png'} and {args.out / 'curvature.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
