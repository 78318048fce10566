"""The fit loop: epochs, evaluation, a checkpoint per epoch, resume, and a stop on a non-finite loss.

`fit` trains for a number of epochs, evaluates after each, writes a checkpoint after each, resumes
from it reproducing an uninterrupted run exactly (the data order of epoch ``e`` is
`epoch_permutation` ``(seed, e)``, a function of nothing else), and stops with `NonFiniteLossError`
when a loss (or a parameter) becomes NaN or infinite, leaving in the checkpoint the epoch of the
best finite evaluation. Progress goes to a small `Progress` hook: `PrintProgress` (one line per epoch) by
default; the experiments pass a tqdm bar (``experiments/_report.py``). No tqdm here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from jaxcnn._checks import fail, is_int
from jaxcnn._io import unwritable
from jaxcnn.train.checkpoints import flatten, load_checkpoint, save_checkpoint
from jaxcnn.train.steps import (
    ApplyFn,
    LossFn,
    _augment_key,
    _check_eval_args,
    _check_optimizer,
    _evaluator,
    _make_prepare,
    _memoized,
    data_mesh,
    epoch_permutation,
    make_sgd_epoch,
    make_train_step,
    replicate,
)

__all__ = ["FitResult", "NonFiniteLossError", "PrintProgress", "Progress", "epoch_summary", "fit"]
# Not public, shared with `jaxcnn.sdlm.fit` (its epoch differs, its loop is this one): pair,
# check_fit_args, begin, Compiled, compile_evaluators, run_epochs.


class NonFiniteLossError(FloatingPointError):
    """A training or evaluation loss became NaN or infinite; `fit` stopped.

    Attributes:
      epoch: the (1-based) epoch in which it happened.
      kept_epoch: the epoch the checkpoint holds now, the best finite evaluation; None when no
        checkpoint was written.
      checkpoint: the checkpoint path, or None.
      history: the records of every epoch that ended finite (restored ones included): what was
        measured before the stop.
    """

    def __init__(self, message: str, *, epoch: int, kept_epoch: int | None, checkpoint: Path | None,
                 history: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.epoch, self.kept_epoch, self.checkpoint, self.history = epoch, kept_epoch, checkpoint, history


class FitResult(NamedTuple):
    """`fit`'s result.

    Attributes:
      params, opt_state: after the last epoch.
      history: one dict per epoch (those restored from a checkpoint included): ``epoch``,
        ``train_loss_running`` (mean loss of the training steps), ``{name}_loss`` and
        ``{name}_error`` for every evaluation set, ``seconds`` (that epoch's training time).
      compile_seconds: ahead-of-time compilation of the epoch/step and evaluation functions.
      train_seconds: training steps of every epoch, restored ones included (the checkpoint
        carries the running total); no evaluation, no compilation.
      eval_seconds: evaluation after each epoch of this call.
      start_epoch: epochs restored from the checkpoint (0 for a fresh run).
    """

    params: Any
    opt_state: Any
    history: list[dict[str, Any]]
    compile_seconds: float
    train_seconds: float
    eval_seconds: float
    start_epoch: int


# ---------------------------------------------------------------------------------- progress
@runtime_checkable
class Progress(Protocol):
    """What `fit` reports to: `start` once, `advance` after every minibatch step (after every
    epoch for per-example SGD), `epoch_done` after each epoch's evaluation, `close` at the end
    (errors included)."""

    def start(self, *, desc: str, total: int, initial: int, unit: str) -> None: ...
    def advance(self, n: int) -> None: ...
    def epoch_done(self, record: Mapping[str, Any], epochs: int) -> None: ...
    def close(self) -> None: ...


def epoch_summary(record: Mapping[str, Any]) -> str:
    """An epoch's record in one short line, error rates first (a narrow display cuts the end).

    >>> epoch_summary({"epoch": 3, "train_loss_running": 0.0121, "train_loss": 0.00253,
    ...                "train_error": 0.0014, "test_loss": 0.0183, "test_error": 0.05, "seconds": 1.0})
    'test 5.00% train 0.14% loss test 0.0183 train 0.00253 run 0.0121'
    """
    names = (k.removesuffix("_error") for k in record if k.endswith("_error"))
    sets = sorted(names, key=lambda s: s == "train")  # held-out sets first
    parts = [f"{s} {record[f'{s}_error']:.2%}" for s in sets]
    losses = [f"{s} {record[f'{s}_loss']:.3g}" for s in sets if f"{s}_loss" in record]
    if "train_loss_running" in record:
        losses.append(f"run {record['train_loss_running']:.3g}")
    return " ".join(parts + (["loss", *losses] if losses else []))


class PrintProgress:
    """One line per epoch: ``train epoch 3/23 test 5.00% train 0.14% loss ...`` (`epoch_summary`)."""

    def __init__(self, file: IO[str] | None = None) -> None:
        self.file, self.desc = file, ""

    def start(self, *, desc: str, total: int, initial: int, unit: str) -> None:
        self.desc = desc

    def advance(self, n: int) -> None:
        pass

    def epoch_done(self, record: Mapping[str, Any], epochs: int) -> None:
        print(f"{self.desc} epoch {record['epoch']}/{epochs} {epoch_summary(record)}",
              file=self.file or sys.stdout, flush=True)

    def close(self) -> None:
        pass


class _Silent(PrintProgress):
    def epoch_done(self, record: Mapping[str, Any], epochs: int) -> None:
        pass


def _progress(fn: str, progress: Any) -> Progress:
    """`fit`'s `progress` argument as a `Progress`: True the printed lines, False or None silence."""
    if progress is True:
        return PrintProgress()
    if progress is False or progress is None:
        return _Silent()
    if isinstance(progress, Progress):
        return progress
    raise fail(fn, f"`progress` must be a bool or a Progress (start, advance, epoch_done, close), "
                   f"got {progress!r}", TypeError)


# ------------------------------------------------------------------------------- run state
class _Snapshot(NamedTuple):
    """A host copy of the run at its best finite evaluation: what a divergence falls back to."""

    epoch: int
    metric: str
    score: float
    state: dict[str, Any]
    meta: dict[str, Any]


@dataclasses.dataclass
class _Run:
    """The state of a run between epochs."""

    params: Any
    opt_state: Any
    history: list[dict[str, Any]]
    epoch: int = 0  # epochs done, restored ones included
    start: int = 0  # epochs restored from the checkpoint
    train_seconds: float = 0.0  # every epoch's, restored ones included
    eval_seconds: float = 0.0  # this call's
    saved: int | None = None  # the epoch the checkpoint file holds
    best: _Snapshot | None = None


def _score(record: Mapping[str, Any]) -> tuple[str, float]:
    """What "best" means: the loss on the first evaluation set, else the running training loss."""
    metric = next((k for k in record if k.endswith("_loss") and k != "train_loss_running"),
                  "train_loss_running")
    return metric, float(record.get(metric, math.nan))


def _remember_if_best(run: _Run, record: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    metric, score = _score(record)
    if math.isfinite(score) and (run.best is None or score < run.best.score):
        state = jax.tree.map(np.array, {"params": run.params, "opt_state": run.opt_state})  # copies
        run.best = _Snapshot(run.epoch, metric, score, state, {**meta, "history": list(meta["history"])})


_RECORD_KEYS = {"format", "epoch", "history", "train_seconds"}  # a checkpoint's meta beside the settings


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_record(entry: Any) -> bool:
    """A history entry as `_train_epoch` writes it: a dict of numbers (None for no value)."""
    return isinstance(entry, dict) and all(_is_number(v) or v is None for v in entry.values())


def _count(history: Any) -> str:
    return f"{len(history)} history entries" if isinstance(history, list) else f"history={history!r}"[:80]


def _start(fn: str, optimizer: optax.GradientTransformation, params: Any, ckpt: Path | None,
           meta_run: Mapping[str, Any], epochs: int) -> _Run:
    """A fresh run, or the one saved in `ckpt` (validated against this call's settings)."""
    params = jax.tree.map(jnp.array, params)  # a private copy: its buffers are donated
    run = _Run(params, optimizer.init(params), [])
    if ckpt is None or not ckpt.exists():
        return run
    state, meta = load_checkpoint(ckpt, {"params": run.params, "opt_state": run.opt_state})
    done, history = meta.get("epoch"), meta.get("history")
    if (not is_int(done) or done < 0 or not isinstance(history, list) or len(history) != done
            or not all(_is_record(h) for h in history) or not _is_number(meta.get("train_seconds", 0.0))):
        raise fail(fn, f"checkpoint '{ckpt}' has no training record (an epoch count, one history entry of "
                       f"numbers per epoch and the training seconds), got epoch={done!r} and "
                       f"{_count(history)}: not a checkpoint of `fit`")
    unknown = sorted(set(meta) - set(meta_run) - _RECORD_KEYS)
    if unknown:  # e.g. a `jaxcnn.sdlm.fit` checkpoint (its settings) resumed by `fit`
        raise fail(fn, f"checkpoint '{ckpt}' was written with settings this run does not have: {unknown}; "
                       "resume would not reproduce the run (use another path or resume=False)")
    if done > epochs:
        raise fail(fn, f"checkpoint '{ckpt}' has {done} epochs, `epochs` is {epochs}; pass epochs >= {done} "
                       "or start without resume (resume=False)")
    for key, value in meta_run.items():
        if meta.get(key) != value:
            raise fail(
                fn,
                f"checkpoint '{ckpt}' was written with {key}={meta.get(key)!r}, this run has "
                f"{key}={value!r}; resume would not reproduce the run (use another path or resume=False)",
            )
    run.params, run.opt_state = state["params"], state["opt_state"]
    run.history = list(history)
    run.epoch = run.start = run.saved = done
    run.train_seconds = float(meta.get("train_seconds", sum(h.get("seconds", 0.0) for h in run.history)))
    if run.history:
        _remember_if_best(run, run.history[-1], meta)
    return run


def _diverged(fn: str, run: _Run, ckpt: Path | None, epoch: int, what: str) -> NonFiniteLossError:
    """Put the best finite epoch back into the checkpoint and build the error that says so."""
    kept = None
    if ckpt is None:
        where, advice = "no checkpoint was written (checkpoint=None)", "Lower the learning rate."
    else:
        if run.best is not None and run.best.epoch != run.saved:
            save_checkpoint(ckpt, run.best.state, run.best.meta)
            run.saved = run.best.epoch
        kept = run.saved
        if kept is None:
            where = "no checkpoint was written"
        elif run.best is not None:
            where = (f"checkpoint '{ckpt}' keeps epoch {kept}, the best finite evaluation "
                     f"({run.best.metric} {run.best.score:.4g})")
        else:
            where = f"checkpoint '{ckpt}' keeps epoch {kept}"
        advice = "Lower the learning rate." if kept is None else (
            "Lower the learning rate and start again without resume (resume=False, or no --resume): "
            "a resumed run repeats the same epochs and diverges again.")
    return NonFiniteLossError(f"`{fn}`: {what}; training stopped and {where}. {advice}", epoch=epoch,
                              kept_epoch=kept, checkpoint=ckpt, history=list(run.history))


# ---------------------------------------------------------------------------------- epochs
class _Data(NamedTuple):
    x: jax.Array
    y: jax.Array
    evals: dict[str, tuple[jax.Array, jax.Array]]


class Compiled(NamedTuple):
    run_epoch: Callable[[Any, Any, int, Callable[[int], None]], tuple[Any, Any, jax.Array]]
    evaluators: dict[str, Callable[..., Any]]
    seconds: float
    steps: int  # progress steps per epoch
    unit: str


def _compile(apply_fn: ApplyFn, loss_fn: LossFn, eval_loss_fn: LossFn, eval_batch_size: int,
             optimizer: optax.GradientTransformation, run: _Run, data: _Data, *, seed: int,
             batch_size: int | None, augment: Callable | None, mesh: Mesh | None) -> Compiled:
    """Compile the epoch (or step) and the evaluations ahead of time, so that the clock of the
    epochs measures training only."""
    t0 = time.perf_counter()
    n = int(data.x.shape[0])
    order0 = epoch_permutation(seed, 0, n)
    if batch_size is None:
        sgd = make_sgd_epoch(apply_fn, loss_fn, optimizer).lower(
            run.params, run.opt_state, data.x, data.y, order0).compile()

        def run_epoch(params: Any, opt_state: Any, epoch: int, advance: Callable[[int], None]):
            out = sgd(params, opt_state, data.x, data.y, epoch_permutation(seed, epoch, n))
            advance(1)
            return out

        steps, unit = 1, "epoch"
    else:
        steps, unit = n // batch_size, "step"
        prepare = _memoized(_make_prepare, augment, mesh)
        idx0, key0 = order0[:batch_size], _augment_key(seed, 0)
        xb, yb = prepare(data.x, data.y, idx0, key0)
        prepare_c = prepare.lower(data.x, data.y, idx0, key0).compile()
        step_c = make_train_step(apply_fn, loss_fn, optimizer, mesh=mesh).lower(
            run.params, run.opt_state, xb, yb).compile()

        def run_epoch(params: Any, opt_state: Any, epoch: int, advance: Callable[[int], None]):
            batches = epoch_permutation(seed, epoch, n)[: steps * batch_size].reshape(steps, batch_size)
            key = _augment_key(seed, epoch)
            losses = []
            for b in range(steps):
                xb, yb = prepare_c(data.x, data.y, batches[b], jax.random.fold_in(key, b))
                params, opt_state, loss = step_c(params, opt_state, xb, yb)
                losses.append(loss)
                advance(1)
            return params, opt_state, jnp.stack(losses)

    evaluators = compile_evaluators(apply_fn, eval_loss_fn, eval_batch_size, run, data)
    return Compiled(run_epoch, evaluators, time.perf_counter() - t0, steps, unit)


def compile_evaluators(apply_fn: ApplyFn, eval_loss_fn: LossFn, eval_batch_size: int, run: _Run,
                       data: _Data) -> dict[str, Callable[..., Any]]:
    """The evaluation of every set of ``data.evals``, compiled for the run's parameters."""
    evaluator = _evaluator(apply_fn, eval_loss_fn, int(eval_batch_size))
    return {k: evaluator.lower(run.params, *d).compile() for k, d in data.evals.items()}


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _train_epoch(fn: str, compiled: Compiled, run: _Run, data: _Data, epoch: int,
                 progress: Progress, ckpt: Path | None, meta_run: Mapping[str, Any]) -> dict[str, Any]:
    """Epoch `epoch` (0-based): train, evaluate, checkpoint; its history record."""
    t0 = time.perf_counter()
    run.params, run.opt_state, losses = compiled.run_epoch(run.params, run.opt_state, epoch, progress.advance)
    losses = np.asarray(jax.device_get(losses))
    seconds = time.perf_counter() - t0
    run.train_seconds += seconds
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        raise _diverged(fn, run, ckpt, epoch + 1, f"the training loss became {losses[bad[0]]} at epoch "
                                                  f"{epoch + 1}, step {int(bad[0]) + 1} of {losses.size}")
    if not _all_finite(run.params):  # a finite loss with an infinite gradient (the last step's)
        raise _diverged(fn, run, ckpt, epoch + 1, f"a parameter became NaN or infinite at epoch {epoch + 1} "
                                                  "while the training loss stayed finite")
    record: dict[str, Any] = {"epoch": epoch + 1, "train_loss_running": float(losses.mean())}
    t0 = time.perf_counter()
    for name, (ex, ey) in data.evals.items():
        loss_sum, errors = compiled.evaluators[name](run.params, ex, ey)
        record[f"{name}_loss"] = float(loss_sum) / int(ex.shape[0])
        record[f"{name}_error"] = int(errors) / int(ex.shape[0])
    run.eval_seconds += time.perf_counter() - t0
    record["seconds"] = seconds
    for key in (k for k in data.evals if not math.isfinite(record[f"{k}_loss"])):
        raise _diverged(fn, run, ckpt, epoch + 1, f"the loss on the evaluation set {key!r} became "
                                                  f"{record[f'{key}_loss']} at epoch {epoch + 1}")
    run.history.append(record)
    run.epoch = epoch + 1
    if ckpt is not None:
        meta = {"epoch": run.epoch, "history": run.history, "train_seconds": run.train_seconds, **meta_run}
        save_checkpoint(ckpt, {"params": run.params, "opt_state": run.opt_state}, meta)
        run.saved = run.epoch
        _remember_if_best(run, record, meta)
    return record


# -------------------------------------------------------------------------------------- fit
def pair(fn: str, name: str, value: Any) -> tuple[Any, Any]:
    """`value` as ``(x, y)``: a tuple or list of two (a triple was a bare unpacking error)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        sequence = isinstance(value, (tuple, list))
        what = f"{type(value).__name__} of {len(value) if sequence else f'shape {np.shape(value)}'}"
        raise fail(fn, f"`{name}` must be a pair (x, y), got {what}")
    return value[0], value[1]


def check_fit_args(fn: str, x: Any, y: Any, epochs: Any, batch_size: Any, seed: Any) -> int:
    """The training set's size, after `fit`'s checks of its arguments (`jaxcnn.sdlm.fit`'s too)."""
    for name, value, minimum in (("epochs", epochs, 0), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise fail(fn, f"`{name}` must be an int >= {minimum}, got {value!r}")
    if seed >= 2**32:  # the data order's key is folded from a uint32 (`epoch_permutation`)
        raise fail(fn, f"`seed` must be below 2**32, got {seed!r}")
    n = jnp.shape(x)[0] if jnp.ndim(x) else 0
    if n < 1 or jnp.ndim(y) < 1 or jnp.shape(y)[0] != n:
        raise fail(
            fn, f"`train` must be (x, y) with one row per example, got shapes {jnp.shape(x)}, {jnp.shape(y)}"
        )
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise fail(fn, f"`batch_size` must be None (per-example SGD) or an int >= 1, got {batch_size!r}")
        if batch_size > n:
            raise fail(fn, f"`batch_size` (={batch_size}) exceeds the {n} training examples")
    return int(n)


def _mesh(fn: str, data_parallel: bool, batch_size: int | None) -> Mesh | None:
    mesh = data_mesh() if data_parallel else None
    if mesh is None or mesh.size == 1:
        return None
    if batch_size % mesh.size:
        raise fail(fn, f"`batch_size` (={batch_size}) must be divisible by the {mesh.size} devices")
    return mesh


def fit(
    apply_fn: ApplyFn,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    params: Any,
    train: tuple[Any, Any],
    *,
    epochs: int,
    batch_size: int | None = None,
    seed: int = 0,
    eval_sets: Mapping[str, tuple[Any, Any]] | None = None,
    eval_loss_fn: LossFn | None = None,
    eval_batch_size: int = 1000,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = True,
    augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    data_parallel: bool = False,
    progress: bool | Progress = True,
    desc: str = "train",
    config: Mapping[str, Any] | None = None,
) -> FitResult:
    """Train for `epochs` passes over `train`, evaluating, checkpointing and resuming.

    Every epoch ``e`` (0-based) visits the training set in the order `epoch_permutation` ``(seed,
    e)``: with ``batch_size=None`` one example at a time through `make_sgd_epoch` (one jitted scan
    per epoch); otherwise in minibatches of `batch_size` through `make_train_step` (the last
    ``n % batch_size`` examples of the order are dropped that epoch). After each epoch the model
    is evaluated on every set of `eval_sets` (`evaluate`) and, when `checkpoint` is given,
    params, optimizer state, epoch, history and the training seconds so far are written there
    (`save_checkpoint`). A later call with the same arguments resumes after the last saved epoch
    and ends with exactly the parameters an uninterrupted run would have (`augment` keys, like
    the order, come from ``(seed, epoch)``).

    Args:
      apply_fn: ``apply_fn(params, x) -> y``.
      loss_fn: the training loss ``loss_fn(y, targets) -> scalar``.
      optimizer: an optax ``GradientTransformation``; its state is created here (or restored).
      params: initial parameters (copied: the caller's arrays are not donated).
      train: ``(x, y)`` training inputs and targets (what `loss_fn` takes).
      epochs: total number of epochs, restored ones included (at least the checkpoint's).
      batch_size: None for per-example SGD, else the minibatch size.
      seed: data order and augmentation seed.
      eval_sets: ``{name: (x, y)}`` evaluated after each epoch (`y` labels or targets).
      eval_loss_fn: loss reported by the evaluation (default `loss_fn`).
      eval_batch_size: batch size of the evaluation.
      checkpoint: ``.npz`` path written after each epoch; None for no checkpoints.
      resume: continue from `checkpoint` when it exists.
      augment: optional ``augment(key, x_batch) -> x_batch`` applied to each minibatch (jitted).
      data_parallel: shard each minibatch over all local devices (`data_mesh`), parameters
        replicated; `batch_size` must be divisible by the device count. One device: plain step.
      progress: True: `PrintProgress` (a line per epoch on stdout); False: nothing; or any
        `Progress` (``experiments/_report.py`` passes a tqdm bar).
      desc: label of the progress display.
      config: JSON-able settings that define the run (learning rate, model, ...); stored in the
        checkpoint, and a resume with different settings is refused.

    Returns:
      `FitResult`.

    Raises:
      NonFiniteLossError: a training or evaluation loss, or a parameter (after an epoch whose
        losses stayed finite), became NaN or infinite. The checkpoint
        then holds the epoch of the best finite evaluation (lowest loss on the first evaluation
        set, else lowest running training loss) among those this call saved or restored, so an
        epoch that had already exploded is not what is kept; the error's ``history`` holds
        every finite epoch.
      ValueError: bad arguments (a `checkpoint` path that is not a file, a `config` that JSON
        cannot hold, a state a checkpoint cannot hold: checked before training); a checkpoint that
        does not match (see `load_checkpoint`), was written with another seed, batch size,
        training-set size or `config` or with settings this run does not have, or whose training
        record is malformed; a checkpoint with more epochs than `epochs`.
    """
    fn = "fit"
    _check_optimizer(fn, optimizer)
    x_train, y_train = pair(fn, "train", train)
    n = check_fit_args(fn, x_train, y_train, epochs, batch_size, seed)
    if batch_size is None and (augment is not None or data_parallel):
        raise fail(fn, "`augment` and `data_parallel` need minibatches (`batch_size` is None)")
    mesh = _mesh(fn, data_parallel, batch_size)
    run, data, reporter, ckpt, meta_run = begin(
        fn, optimizer, params, (x_train, y_train), n, epochs=epochs, seed=seed, batch_size=batch_size,
        eval_sets=eval_sets, eval_batch_size=eval_batch_size, checkpoint=checkpoint, resume=resume,
        progress=progress, config=config)
    if mesh is not None:
        run.params, run.opt_state = replicate(run.params, mesh), replicate(run.opt_state, mesh)
        data = replicate(data, mesh)
    compiled = _compile(apply_fn, loss_fn, loss_fn if eval_loss_fn is None else eval_loss_fn, eval_batch_size,
                        optimizer, run, data, seed=seed, batch_size=batch_size, augment=augment, mesh=mesh)

    return run_epochs(fn, compiled, run, data, epochs, reporter, ckpt, meta_run, desc)


def begin(fn: str, optimizer: optax.GradientTransformation, params: Any, train: tuple[Any, Any], n: int, *,
          epochs: int, seed: int, batch_size: int | None, eval_sets: Mapping[str, tuple[Any, Any]] | None,
          eval_batch_size: int, checkpoint: str | os.PathLike[str] | None, resume: bool, progress: Any,
          config: Mapping[str, Any] | None, **meta: Any,
          ) -> tuple[_Run, _Data, Progress, Path | None, dict[str, Any]]:
    """What `fit` and `jaxcnn.sdlm.fit` start from, the evaluation sets checked: the run (fresh, or
    resumed from `checkpoint`), the data, the progress reporter, the checkpoint's path and the
    settings a checkpoint must match (seed, batch size, training-set size, `config`, and `meta`)."""
    if eval_sets is not None and not isinstance(eval_sets, Mapping):
        raise fail(fn, f"`eval_sets` must be None or a dict of name: (x, y), got {type(eval_sets).__name__}")
    eval_sets = {name: pair(fn, f"eval_sets[{name!r}]", v) for name, v in (eval_sets or {}).items()}
    if not is_int(eval_batch_size) or eval_batch_size < 1:
        raise fail(fn, f"`eval_batch_size` must be a positive int, got {eval_batch_size!r}")
    for name, (ex, ey) in eval_sets.items():
        _check_eval_args(f"{fn}: eval set {name!r}", ex, ey, eval_batch_size)
    reporter = _progress(fn, progress)
    if config is not None and not isinstance(config, Mapping):
        raise fail(fn, f"`config` must be None or a dict of JSON values, got {type(config).__name__}")
    try:  # NumPy scalars as their Python values
        config = json.loads(json.dumps(dict(config or {}), default=_python))
    except (TypeError, ValueError) as err:
        raise fail(fn, f"`config` must be None or a dict of JSON values: {err}") from err
    meta_run = {"seed": int(seed), "batch_size": None if batch_size is None else int(batch_size),
                "n_train": n, **meta, "config": config}
    ckpt = None if checkpoint is None else Path(checkpoint)
    why = None if ckpt is None else unwritable(ckpt)
    if why is not None:
        raise fail(fn, f"`checkpoint` must be a file path that can be written, got '{ckpt}': {why}")
    run = _start(fn, optimizer, params, ckpt if resume else None, meta_run, epochs)
    if ckpt is not None:  # what the checkpoint cannot hold is refused now, not after an epoch
        flatten(fn, {"params": run.params, "opt_state": run.opt_state})
    data = _Data(jnp.asarray(train[0]), jnp.asarray(train[1]),
                {k: (jnp.asarray(a), jnp.asarray(b)) for k, (a, b) in eval_sets.items()})
    return run, data, reporter, ckpt, meta_run


def _python(value: Any) -> Any:
    """A NumPy scalar as its Python value (`json.dumps`'s default hook for `config`)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} {value!r} is not a JSON value")


def run_epochs(fn: str, compiled: Compiled, run: _Run, data: _Data, epochs: int, reporter: Progress,
               ckpt: Path | None, meta_run: Mapping[str, Any], desc: str) -> FitResult:
    """Epochs ``run.epoch .. epochs - 1`` of a started run (`begin`) with its compiled epoch:
    `fit`'s loop, and `jaxcnn.sdlm.fit`'s (training and evaluation losses checked, checkpoints,
    the best finite epoch kept on a divergence)."""
    reporter.start(desc=desc, total=epochs * compiled.steps, initial=run.epoch * compiled.steps,
                   unit=compiled.unit)
    try:
        for epoch in range(run.epoch, epochs):
            record = _train_epoch(fn, compiled, run, data, epoch, reporter, ckpt, meta_run)
            reporter.epoch_done(record, epochs)
    finally:
        reporter.close()
    return FitResult(run.params, run.opt_state, run.history, compiled.seconds, run.train_seconds,
                     run.eval_seconds, run.start)
