"""Reporting for the experiment scripts: machine info, text tables, training curves, a tqdm bar, and
what lecun1989.py and lenet5.py share around `jaxcnn.train.fit` (the two backward paths, a run's
JSON record, their comparison, the results file).

Not part of the library (``jaxcnn`` has no tqdm or matplotlib dependency): the scripts beside this
file import it as ``_report`` (``python experiments/lecun1989.py`` puts this folder on sys.path).
`TqdmProgress` is a `jaxcnn.train.Progress`: pass it as ``fit(..., progress=...)``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import jax
import jax.numpy as jnp

import jaxcnn
from jaxcnn import train
from jaxcnn._io import unwritable
from jaxcnn.datasets import _MNIST_5K_PER_CLASS

__all__ = ["LABELS", "OPS", "TqdmProgress", "bound_apply", "check_args", "finish", "fit_record",
           "format_table", "machine_info", "measured", "param_diffs", "plot_history", "progress", "save_png",
           "write_json"]

# The two backward paths a script trains: the article's rules, and JAX's autodiff of the reference.
OPS = {"custom": jaxcnn, "reference": jaxcnn.reference}
LABELS = {"custom": "jaxcnn (custom VJP)", "reference": "jaxcnn.reference (autodiff)"}


class TqdmProgress:
    """A tqdm bar (`jaxcnn.train.Progress`): one tick per step (per epoch for per-example SGD); after
    each epoch the postfix shows `jaxcnn.train.epoch_summary`, error rates first, so a narrow
    terminal cuts the losses, never the test error."""

    def __init__(self, *, file: IO[str] | None = None, ncols: int | None = None) -> None:
        self.file, self.ncols, self.bar = file, ncols, None

    def start(self, *, desc: str, total: int, initial: int, unit: str) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.file or sys.stderr,
                        ncols=self.ncols, dynamic_ncols=self.ncols is None)

    def advance(self, n: int) -> None:
        self.bar.update(n)

    def epoch_done(self, record: Mapping[str, Any], epochs: int) -> None:
        self.bar.set_postfix_str(train.epoch_summary(record), refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace, *, counts: Sequence[str] = (),
               positive: Sequence[str] = (), nonnegative: Sequence[str] = (), files: Sequence[str] = (),
               folders: Sequence[str] = (), per_class: Sequence[str] = ()) -> None:
    """argparse's error (the usage line, exit status 2), each setting named by its flag
    (``"batch_size"`` is ``--batch-size``), for a count in `counts` below 1, a number in `positive`
    not finite and above 0, one in `nonnegative` not finite and >= 0 (seeds, a weight decay), an
    output file in `files` or folder in `folders` that cannot be written (`jaxcnn._io.unwritable`),
    the embedded digits' per-class counts in `per_class` summing past the 500 of each class. Before
    any work: a bad setting found later could cost a finished run."""
    def flag(name: str) -> str:
        return f"--{name.replace('_', '-')}"

    for name in counts:
        if getattr(args, name) < 1:
            parser.error(f"{flag(name)} must be >= 1, got {getattr(args, name)}")
    for name in positive:
        if not 0 < getattr(args, name) < math.inf:
            parser.error(f"{flag(name)} must be finite and > 0, got {getattr(args, name)}")
    for name in nonnegative:
        if not 0 <= getattr(args, name) < math.inf:
            parser.error(f"{flag(name)} must be finite and >= 0, got {getattr(args, name)}")
    for name in files:
        why = unwritable(getattr(args, name))
        if why is not None:
            parser.error(f"{flag(name)} {str(getattr(args, name))!r} cannot be written: {why}")
    for name in folders:
        why = unwritable(Path(getattr(args, name)) / "results.json")
        if why is not None:
            parser.error(f"{flag(name)} {str(getattr(args, name))!r} cannot hold the outputs: {why}")
    if per_class and sum(getattr(args, name) for name in per_class) > _MNIST_5K_PER_CLASS:
        given = " + ".join(str(getattr(args, name)) for name in per_class)
        parser.error(f"{' + '.join(flag(n) for n in per_class)} must be at most the {_MNIST_5K_PER_CLASS} "
                     f"embedded digits of each class, got {given}")


def progress(enabled: bool) -> bool | train.Progress:
    """What the scripts pass to `jaxcnn.train.fit`: a `TqdmProgress` when tqdm is installed, else
    the library's one line per epoch; False with ``--no-progress``."""
    if not enabled:
        return False
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return True
    return TqdmProgress()


def machine_info() -> dict[str, Any]:
    """Where a run happened: OS, CPU model and cores, Python, JAX version, backend and devices."""
    import platform

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
    }


def run_row(label: str, run: Mapping[str, Any], loss_format: str) -> tuple[str, ...]:
    """One experiment run as a table row: train/test error, train/test loss (`loss_format`, e.g.
    ``".2e"``), train and compile seconds; "-" for what the run did not measure, "DIVERGED" when
    it stopped on a non-finite loss."""
    label += " DIVERGED" if "diverged" in run else ""
    f = run["final"]
    if f is None:
        return (label, "-", "-", "-", "-", f"{run['train_seconds']:.1f}", "-")
    compile_s = f"{run['compile_seconds']:.1f}" if "compile_seconds" in run else "-"
    return (label, f"{f['train_error']:.2%}", f"{f['test_error']:.2%}", format(f["train_loss"], loss_format),
            format(f["test_loss"], loss_format), f"{run['train_seconds']:.1f}", compile_s)


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned, a rule under
    the first (header) row. Every row has the header's number of cells."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(cells)

    lines = [line(row) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def plot_history(
    runs: Mapping[str, Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    title: str,
    x_label: str,
    loss_label: str,
    hlines: Sequence[tuple[str, float, str, str]] = (),
) -> None:
    """Write a PNG of per-epoch error (%) and loss curves, train and test, one line style per run.

    Args:
      runs: name ("custom" solid, "reference" dashed) -> a run with ``"history"``, a list of
        ``{"epoch", "train_error", "test_error", "train_loss", "test_loss"}`` (errors as fractions).
      path: the PNG, written atomically.
      title, x_label, loss_label: the figure title and axis labels.
      hlines: reference lines ``(panel, y, color, label)``, panel ``"error"`` (y in %) or ``"loss"``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_err, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"custom": "-", "reference": "--"}
    for name, r in runs.items():
        ep = [h["epoch"] for h in r["history"]]
        for split, color in (("train", "tab:blue"), ("test", "tab:orange")):
            ax_err.plot(ep, [100 * h[f"{split}_error"] for h in r["history"]], styles[name], color=color,
                        label=f"{split}, {name}")
            ax_loss.plot(ep, [h[f"{split}_loss"] for h in r["history"]], styles[name], color=color,
                         label=f"{split}, {name}")
    panels = {"error": ax_err, "loss": ax_loss}
    for panel, y, color, label in hlines:
        panels[panel].axhline(y, color=color, lw=0.8, ls=":", label=label)
    ax_err.set(xlabel=x_label, ylabel="error (%)", yscale="log", title="error rate")
    ax_loss.set(xlabel=x_label, ylabel=loss_label, yscale="log", title="loss")
    for ax in (ax_err, ax_loss):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_png(fig, path, dpi=110)
    plt.close(fig)


def _finite(value: Any) -> Any:
    """`value` with every non-finite float as the string "nan", "inf" or "-inf" (JSON has no such
    numbers: ``json.dumps`` writes bare NaN tokens that strict readers refuse)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(path: Path, value: Any) -> None:
    """`value` as indented, strict JSON (non-finite numbers as strings), written atomically."""
    text = json.dumps(_finite(value), indent=2, allow_nan=False)
    train.atomic_write(path, (text + "\n").encode())


def save_png(fig: Any, path: Path, **options: Any) -> None:
    """``fig.savefig(path, **options)`` as a PNG written atomically (rendered in memory first: an
    interrupted run leaves the old file, never a truncated one)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **options)
    train.atomic_write(path, buffer.getvalue())


@functools.cache
def bound_apply(model: Any, name: str) -> Callable[[Any, jax.Array], jax.Array]:
    """``model.apply`` with the ops of path `name` bound (one object per pair: jit caches are shared)."""
    return functools.partial(model.apply, ops=OPS[name])


def fit_record(name: str, record: Mapping[str, Any], run_fit: Callable[[], train.FitResult],
               n_train: int, n_test: int, *, running: str = "train_loss_running") -> dict[str, Any]:
    """The JSON record of training path `name` by ``run_fit()`` (a `jaxcnn.train.fit` call): its name
    and label, `record`, what `fit` measured (`measured`), its seconds and its final params under
    "_params"; when a loss became NaN or infinite, the epochs measured before it, ``"diverged"``
    (the message, also printed) and the epoch of the checkpoint kept, and no "_params"."""
    record = {"ops": name, "backward": LABELS[name], **record}
    try:
        result = run_fit()
    except train.NonFiniteLossError as err:
        print(f"\n{LABELS[name]}: {err}", file=sys.stderr, flush=True)
        return {**record, **measured(err.history, n_train, n_test, running=running), "diverged": str(err),
                "checkpoint_epoch": err.kept_epoch}
    return {
        **record,
        **measured(result.history, n_train, n_test, running=running),
        "train_seconds": result.train_seconds,
        "compile_seconds": result.compile_seconds,
        "eval_seconds": result.eval_seconds,
        "resumed_from_epoch": result.start_epoch,
        "_params": result.params,
    }


def measured(fit_history: Sequence[Mapping[str, Any]], n_train: int, n_test: int, *,
             running: str = "train_loss_running") -> dict[str, Any]:
    """History (fit's running training loss under the key `running`), final numbers and error counts
    and training seconds of the epochs `fit` recorded (None where none was)."""
    keys = ("epoch", "train_loss", "train_error", "test_loss", "test_error", "train_loss_running", "seconds")
    history = [{(running if k == "train_loss_running" else k): h[k] for k in keys} for h in fit_history]
    last = history[-1] if history else None
    return {
        "history": history,
        "final": None if last is None else
        {k: last[k] for k in ("train_error", "test_error", "train_loss", "test_loss")},
        "final_errors": None if last is None else
        {"train": round(last["train_error"] * n_train), "test": round(last["test_error"] * n_test)},
        "train_seconds": sum(h["seconds"] for h in history),
    }


def param_diffs(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """Custom vs reference after training: the largest parameter difference, per layer and in all,
    and whether the final error counts are the same (None unless both paths ran to the end)."""
    if set(runs) != {"custom", "reference"} or any("diverged" in r for r in runs.values()):
        return None
    diffs = jax.tree.map(lambda u, v: float(jnp.max(jnp.abs(u - v))),
                         runs["custom"]["_params"], runs["reference"]["_params"])
    return {"max_param_abs_diff": max(jax.tree_util.tree_leaves(diffs)),
            "per_layer_max_abs_diff": diffs,
            "same_final_error_counts": runs["custom"]["final_errors"] == runs["reference"]["final_errors"]}


def finish(out: Path, results: Mapping[str, Any], plotted: bool, diverged: Sequence[str]) -> bool:
    """Write ``out/results.json`` (atomically) and say what was written; with `diverged` paths, say
    so on stderr. Whether every path ran to the end."""
    write_json(out / "results.json", results)
    written = [out / "results.json", *([out / "curves.png"] if plotted else [])]
    print(f"\nwrote {' and '.join(map(str, written))} ({results['wall_seconds']:.1f} s in all)")
    if diverged:
        print(f"error: the loss became non-finite on the {', '.join(diverged)} path(s); see results.json",
              file=sys.stderr)
    return not diverged
