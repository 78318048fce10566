"""LeCun et al. 1989's network trained by per-example SGD and by SDLM, over several seeds.

    python experiments/sdlm_seeds.py                 # 10 seeds each, 23 passes, default data
    python experiments/sdlm_seeds.py --optimizers sdlm --gamma 0.01 --validation 500 --seeds 3
                                                     # running estimate; test set untouched

For every seed, `jaxcnn.models.lecun1989` (tanh, +-1 targets, Eq 9) is trained twice on the
embedded 3,000 / 2,000 digits with the article's rules, in the same example order:

* SGD — `jaxcnn.train.fit` with ``optax.sgd(lr)`` (the setting of ``experiments/lecun1989.py``);
* SDLM — `jaxcnn.sdlm.fit`: the curvature (`jaxcnn.curvature`) averaged over `--samples`
  examples before each pass, steps ``eps / (mu + h)``; with `--gamma`, Efficient BackProp's running
  estimate instead (``h <- (1 - gamma) h + gamma h_p`` after every example, from the `--samples`
  estimate before the first pass).

`--validation N` trains on all but N of the training digits (a fixed random split, seed 0) and
reports the error on those N where the table says "test": the test digits are not loaded. It is
how `--gamma` was chosen.

Prints one table (mean / min / max test error after the last pass, train error, passes to first
reach `--target` test error, seconds) and writes ``--out`` (JSON: per run the history; the
curvature pass's cost against a gradient pass, measured on this machine).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import _report  # experiments/_report.py: this script's folder is on sys.path
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxcnn
from jaxcnn import datasets, models, sdlm, train

SGD_LR = 0.005  # experiments/lecun1989.py's DEFAULT_LR
# Chosen by a small sweep on seeds 0-2 (23 passes, mu 0.02, test error): constant eps 0.0002 5.15% (seed 0),
# 0.00025 4.93% (3 seeds), 0.0003 5.08% (2 seeds), 0.0004 6.37% (3), 0.0005 9.2% (1), 0.001 12.6% (1);
# LeCun et al. 1998's stepped schedule from 0.0006 5.28% (3), from 0.001 5.25% (1), 0.0015 7.2% (2),
# 0.002 8.6% (1); from 0.001 with mu 0.05 5.6% (2), from 0.003 with mu 0.1 6.1% (2); with --activation
# scaled_tanh (the paper's, targets inside its range): eps 0.0005 6.37% (3), 0.001 10.8% (3).
SDLM_EPS = 0.00025
SDLM_SCHEDULE = "constant"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=10, help="seeds 0 .. N-1")
    p.add_argument("--epochs", type=int, default=23)
    p.add_argument("--optimizers", nargs="+", choices=("sgd", "sdlm"), default=["sgd", "sdlm"])
    p.add_argument("--lr", type=float, default=SGD_LR, help="SGD learning rate")
    p.add_argument("--eps", type=float, default=SDLM_EPS, help="SDLM global rate epsilon")
    p.add_argument("--mu", type=float, default=sdlm.DEFAULT_MU)
    p.add_argument("--schedule", choices=("constant", "lecun"), default=SDLM_SCHEDULE,
                   help="SDLM rate: constant, or LeCun et al. 1998's steps (eps x 1, .4, .2, .1, .02)")
    p.add_argument("--samples", type=int, default=sdlm.DEFAULT_SAMPLES, help="curvature examples per pass")
    p.add_argument("--gamma", type=float, default=None,
                   help="SDLM running curvature estimate with this gamma (default: per-pass estimate)")
    p.add_argument("--validation", type=int, default=0,
                   help="hold out N training digits as the evaluation set (the test set is not used)")
    p.add_argument("--activation", choices=("tanh", "scaled_tanh"), default="tanh",
                   help="lecun1989's activation")
    p.add_argument("--target", type=float, default=0.055, help="test error whose first pass is reported")
    p.add_argument("--train-per-class", type=int, default=300)
    p.add_argument("--test-per-class", type=int, default=200)
    p.add_argument("--no-cost", action="store_true", help="skip the curvature-cost measurement")
    p.add_argument("--out", type=Path, default=Path("runs/sdlm_seeds.json"))
    args = p.parse_args(argv)
    _report.check_args(p, args, counts=("seeds", "epochs", "samples", "train_per_class", "test_per_class"),
                       positive=("lr", "eps", "mu"), files=("out",),
                       per_class=("train_per_class", "test_per_class"))
    if args.gamma is not None and not 0 < args.gamma <= 1:
        p.error(f"--gamma must be in (0, 1], got {args.gamma}")
    if not 0 <= args.validation < 10 * args.train_per_class:  # ten classes
        p.error(f"--validation must be in [0, {10 * args.train_per_class}), got {args.validation}")
    return args


def passes_to(history: list[dict[str, Any]], target: float) -> int | None:
    """The first pass whose test error is <= target (None: never)."""
    return next((h["epoch"] for h in history if h["test_error"] <= target), None)


def run(optimizer: str, seed: int, args: argparse.Namespace, data: tuple) -> dict[str, Any]:
    x_tr, t_tr, x_te, t_te = data
    model = models.lecun1989(activation=args.activation)
    params = model.init(jax.random.key(seed))
    common = dict(epochs=args.epochs, seed=seed, eval_sets={"train": (x_tr, t_tr), "test": (x_te, t_te)},
                  progress=False)
    if optimizer == "sgd":
        result = train.fit(model.apply, jaxcnn.squared_error, optax.sgd(args.lr), params, (x_tr, t_tr),
                           batch_size=None, **common)
    else:
        rate = args.eps if args.schedule == "constant" else sdlm.lecun_schedule(args.eps, len(x_tr))
        optimizer_ = sdlm.sdlm(rate, mu=args.mu)
        result = sdlm.fit(model.apply, jaxcnn.squared_error, optimizer_, params, (x_tr, t_tr),
                          samples=args.samples, gamma=args.gamma, **common)
    last = result.history[-1]
    return {"optimizer": optimizer, "seed": seed, "train_error": last["train_error"],
            "test_error": last["test_error"], "passes_to_target": passes_to(result.history, args.target),
            "train_seconds": result.train_seconds, "history": result.history}


def curvature_cost(data: tuple, args: argparse.Namespace, repeats: int = 50) -> dict[str, float]:
    """Seconds (jitted, the fastest of `repeats`: the machine is shared, the minimum is the least
    disturbed) of the curvature pass against the gradient pass of
    lecun1989: on one example, on a batch of 500 (Eq 9 summed: one pass over the batch each), and
    of a whole training pass (SGD: the per-example updates; SDLM: the curvature estimate on
    `args.samples` examples, vmapped per example, then the same per-example updates)."""
    x_tr, t_tr = jnp.asarray(data[0]), jnp.asarray(data[1])
    model = models.lecun1989(activation=args.activation)
    params = model.init(jax.random.key(0))

    def loss(p, x, t):
        return jaxcnn.squared_error(model.apply(p, x), t)

    grad = jax.jit(jax.grad(loss))
    curv = jax.jit(lambda p, x, t: jaxcnn.curvature.diag_gauss_newton(loss, p, x, t))

    def clock(f, *a, repeats=repeats):
        jax.block_until_ready(f(*a))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(f(*a))
            times.append(time.perf_counter() - t0)
        return min(times)

    out = {"gradient_1": clock(grad, params, x_tr[:1], t_tr[:1]),
           "curvature_1": clock(curv, params, x_tr[:1], t_tr[:1]),
           "gradient_500": clock(grad, params, x_tr[:500], t_tr[:500]),
           "curvature_500": clock(curv, params, x_tr[:500], t_tr[:500])}
    order = train.epoch_permutation(0, 0, len(x_tr))
    sample = sdlm.curvature_sample(0, 0, len(x_tr), args.samples)
    sgd_epoch = train.make_sgd_epoch(model.apply, jaxcnn.squared_error, optax.sgd(args.lr))
    opt = sdlm.sdlm(args.eps, mu=args.mu)
    sdlm_epoch = sdlm.make_sdlm_epoch(model.apply, jaxcnn.squared_error, opt)
    estimate = sdlm._estimator(model.apply, jaxcnn.squared_error)

    def copy(tree):  # the epochs donate their params and state
        return jax.tree.map(jnp.array, tree)

    out["estimate_per_pass"] = clock(estimate, params, x_tr[sample], t_tr[sample])
    out["sgd_pass"] = clock(lambda p: sgd_epoch(copy(p), optax.sgd(args.lr).init(p), x_tr, t_tr, order)[2],
                            params, repeats=7)
    out["sdlm_pass"] = clock(lambda p: sdlm_epoch(copy(p), opt.init(p), x_tr, t_tr, order, sample)[2],
                             params, repeats=7)
    if args.gamma is not None:
        running_epoch = sdlm.make_sdlm_epoch(model.apply, jaxcnn.squared_error, opt, gamma=args.gamma)
        out["sdlm_running_pass"] = clock(
            lambda p: running_epoch(copy(p), opt.init(p), x_tr, t_tr, order)[2], params, repeats=7)
        out["ratio_running_pass"] = out["sdlm_running_pass"] / out["sgd_pass"]
    out["ratio_1"] = out["curvature_1"] / out["gradient_1"]
    out["ratio_500"] = out["curvature_500"] / out["gradient_500"]
    out["ratio_pass"] = out["sdlm_pass"] / out["sgd_pass"]
    return out


def summary(runs: list[dict[str, Any]], optimizer: str) -> dict[str, Any]:
    rs = [r for r in runs if r["optimizer"] == optimizer]
    test = [r["test_error"] for r in rs]
    reached = [r["passes_to_target"] for r in rs if r["passes_to_target"] is not None]
    return {"optimizer": optimizer, "seeds": len(rs), "test_mean": float(np.mean(test)),
            "test_min": min(test), "test_max": max(test),
            "train_mean": float(np.mean([r["train_error"] for r in rs])),
            "reached_target": len(reached),
            "passes_to_target_mean": float(np.mean(reached)) if reached else None,
            "passes_to_target_median": float(np.median(reached)) if reached else None,
            "train_seconds_mean": float(np.mean([r["train_seconds"] for r in rs]))}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    x_tr, y_tr, x_te, y_te = datasets.lecun1989_data(train_per_class=args.train_per_class,
                                                     test_per_class=args.test_per_class)
    if args.validation:  # evaluate on held-out training digits; the test digits are dropped
        perm = np.random.default_rng(0).permutation(len(x_tr))
        held, kept = perm[: args.validation], perm[args.validation:]
        x_tr, y_tr, x_te, y_te = x_tr[kept], y_tr[kept], x_tr[held], y_tr[held]
        print(f"validation split: training on {len(x_tr)}, 'test' columns are {len(x_te)} held-out "
              "training digits", flush=True)
    data = (x_tr, datasets.one_hot_pm1(y_tr), x_te, datasets.one_hot_pm1(y_te))
    runs, diverged = [], None
    for seed, opt in ((seed, opt) for seed in range(args.seeds) for opt in args.optimizers):
        try:
            r = run(opt, seed, args, data)
        except train.NonFiniteLossError as err:  # the runs before it are kept: written below
            diverged = {"optimizer": opt, "seed": seed, "message": str(err)}
            print(f"error: seed {seed} {opt}: {err}; the sweep stops here", file=sys.stderr, flush=True)
            break
        runs.append(r)
        print(f"seed {seed} {opt:4s}: test {r['test_error']:.2%} train {r['train_error']:.2%} passes to "
              f"{args.target:.1%}: {r['passes_to_target']}  ({r['train_seconds']:.1f} s)", flush=True)
    summaries = [summary(runs, opt) for opt in args.optimizers if any(r["optimizer"] == opt for r in runs)]
    rows = [("optimizer", "seeds", "test mean", "test min", "test max", "train mean",
             f"passes to {args.target:.1%} (mean/median, reached)", "train s")]
    for s in summaries:
        to = "-" if s["passes_to_target_mean"] is None else (
            f"{s['passes_to_target_mean']:.1f}/{s['passes_to_target_median']:.0f}, "
            f"{s['reached_target']}/{s['seeds']}")
        rows.append((s["optimizer"], str(s["seeds"]), f"{s['test_mean']:.2%}", f"{s['test_min']:.2%}",
                     f"{s['test_max']:.2%}", f"{s['train_mean']:.2%}", to, f"{s['train_seconds_mean']:.1f}"))
    print()
    print(_report.format_table(rows))
    cost = None if args.no_cost or diverged else curvature_cost(data, args)
    if cost is not None:
        print(f"\ncurvature pass / gradient pass: {cost['ratio_1']:.2f}x on one example, "
              f"{cost['ratio_500']:.2f}x on a batch of 500; a training pass: SDLM {cost['sdlm_pass']:.3f} s "
              "(of which the curvature "
              f"estimate on {args.samples} examples {cost['estimate_per_pass']:.3f} s) vs SGD "
              f"{cost['sgd_pass']:.3f} s = {cost['ratio_pass']:.2f}x")
        if "sdlm_running_pass" in cost:
            print(f"a running-estimate SDLM pass (gamma {args.gamma}): {cost['sdlm_running_pass']:.3f} s = "
                  f"{cost['ratio_running_pass']:.2f}x an SGD pass")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result = {"settings": settings, "summaries": summaries, "curvature_cost_seconds": cost, "runs": runs,
              **({"diverged": diverged} if diverged else {}),
              "machine": _report.machine_info(),
              "command": " ".join(["python", "experiments/sdlm_seeds.py",
                                   *(sys.argv[1:] if argv is None else argv)])}
    _report.write_json(args.out, result)
    print(f"wrote {args.out}")
    return 1 if diverged else 0


if __name__ == "__main__":
    sys.exit(main())
