r"""Training: an optax train step, per-example SGD epochs, evaluation, a fit loop, data parallelism.

The pieces, each usable alone:

- `make_train_step` — ``step(params, opt_state, x, y) -> (params, opt_state, loss)``, jit-compiled,
  for any optax optimizer; `params` and `opt_state` buffers are donated. Given a `data_mesh` of
  several devices the same step runs data-parallel (batch sharded, parameters replicated).
- `make_sgd_epoch` — one pass of per-example SGD (LeCun et al. 1989's protocol) as a single jitted
  ``lax.scan`` over the examples, in an order you pass in; the optimizer is applied after every
  example (``optax.sgd(lr)`` is the plain rule ``w <- w - lr * dE/dw``; a schedule is allowed).
- `evaluate` — mean per-example loss and error rate (argmax against the label) in fixed-size batches.
- `save_checkpoint` / `load_checkpoint` — ``.npz`` of the flattened leaves keyed by their tree
  paths plus a JSON entry, written atomically (temporary file + ``os.replace``), no pickle, and
  validated against a template on load.
- `fit` — epochs with a progress bar (tqdm when installed), per-epoch history, a checkpoint after
  every epoch, resume that reproduces an uninterrupted run exactly (the data order of epoch ``e``
  is `epoch_permutation` ``(seed, e)``, a function of nothing else), and a stop with
  `NonFiniteLossError` when the training loss becomes NaN or infinite (the last good checkpoint
  is kept).

``apply_fn(params, x) -> y`` is a model's apply with its ``ops`` bound (for a `jaxcnn.models.Model`
use ``model.apply`` or ``functools.partial(model.apply, ops=jaxcnn.reference)``);
``loss_fn(y, targets) -> scalar`` is e.g. `jaxcnn.squared_error` or `jaxcnn.softmax_cross_entropy`.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import sys
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxcnn._checks import fail
from jaxcnn._io import atomic_write

__all__ = [
    "atomic_write",
    "CHECKPOINT_FORMAT",
    "Evaluation",
    "FitResult",
    "NonFiniteLossError",
    "data_mesh",
    "epoch_permutation",
    "evaluate",
    "fit",
    "format_table",
    "load_checkpoint",
    "machine_info",
    "make_sgd_epoch",
    "make_train_step",
    "plot_history",
    "replicate",
    "save_checkpoint",
    "shard_batch",
]

ApplyFn = Callable[[Any, jax.Array], jax.Array]
LossFn = Callable[[jax.Array, jax.Array], jax.Array]
CHECKPOINT_FORMAT = "jaxcnn-checkpoint-v1"
_META_KEY = "__meta__"


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; training stopped (the last checkpoint is kept)."""


# ------------------------------------------------------------------------- data parallelism
def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over `devices` (default: all local devices)."""
    devs = list(jax.local_devices() if devices is None else devices)
    if not devs:
        raise fail("data_mesh", "`devices` must not be empty")
    return Mesh(np.array(devs), ("data",))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf of `tree` whole on every device of `mesh` (parameters, optimizer state)."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(tree: Any, mesh: Mesh) -> Any:
    """Split every leaf of `tree` along its first (batch) axis over the ``"data"`` axis of `mesh`."""
    for leaf in jax.tree_util.tree_leaves(tree):
        n = jnp.shape(leaf)[0] if jnp.ndim(leaf) else None
        if n is None or n % mesh.size:
            raise fail(
                "shard_batch",
                f"the batch axis ({n}) of a leaf of shape {jnp.shape(leaf)} must be divisible by "
                f"the {mesh.size} devices of the mesh",
            )
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec("data")))


# ----------------------------------------------------------------------------- train steps
def _check_optimizer(fn: str, optimizer: Any) -> None:
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise fail(
            fn, f"`optimizer` must be an optax GradientTransformation, got {optimizer!r}", TypeError
        )


def _update(apply_fn: ApplyFn, loss_fn: LossFn, optimizer: optax.GradientTransformation,
            params: Any, opt_state: Any, x: jax.Array, y: jax.Array) -> tuple[Any, Any, jax.Array]:
    """One optimizer update on the batch ``(x, y)``; the shared body of steps and epochs."""
    loss, grads = jax.value_and_grad(lambda p: loss_fn(apply_fn(p, x), y))(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def make_train_step(
    apply_fn: ApplyFn,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    mesh: Mesh | None = None,
) -> Callable[[Any, Any, jax.Array, jax.Array], tuple[Any, Any, jax.Array]]:
    """A jit-compiled training step for any optax optimizer.

    ``step(params, opt_state, x, y)`` computes ``loss = loss_fn(apply_fn(params, x), y)`` and its
    gradient, applies ``optimizer``, and returns ``(new_params, new_opt_state, loss)``. The
    `params` and `opt_state` arguments are donated: their buffers are reused for the results, so
    do not read them after the call.

    Args:
      apply_fn: ``apply_fn(params, x) -> y``.
      loss_fn: ``loss_fn(y, targets) -> scalar``; a batch mean keeps the step size independent
        of the batch size.
      optimizer: an optax ``GradientTransformation``.
      mesh: None (one device), or a `data_mesh`: with more than one device the step is compiled
        with the batch sharded over ``"data"`` and parameters/state/loss replicated (the
        gradient is reduced across devices by XLA). Place the inputs with `replicate` and
        `shard_batch`. A one-device mesh gives the plain step.

    Returns:
      The jitted ``step``; the same arguments give the same function (compiled once per shape).
    """
    _check_optimizer("make_train_step", optimizer)
    if mesh is not None and mesh.size == 1:
        mesh = None  # one device: the plain step
    return _memoized(_build_train_step, apply_fn, loss_fn, optimizer, mesh)


def _memoized(builder: Callable, *args: Any) -> Any:
    """``builder(*args)``, cached on the arguments when they are hashable (the same functions give
    the same jitted callable, so repeated `fit` calls compile once per input shape)."""
    try:
        return _cached_build(builder, *args)
    except TypeError:  # an unhashable argument: build afresh
        return builder(*args)


@functools.lru_cache(maxsize=64)
def _cached_build(builder: Callable, *args: Any) -> Any:
    return builder(*args)


def _build_train_step(apply_fn: ApplyFn, loss_fn: LossFn, optimizer: optax.GradientTransformation,
                      mesh: Mesh | None) -> Callable:
    def step(params: Any, opt_state: Any, x: jax.Array, y: jax.Array) -> tuple[Any, Any, jax.Array]:
        return _update(apply_fn, loss_fn, optimizer, params, opt_state, x, y)

    if mesh is None:
        return jax.jit(step, donate_argnums=(0, 1))
    rep = NamedSharding(mesh, PartitionSpec())
    data = NamedSharding(mesh, PartitionSpec("data"))
    return jax.jit(
        step, donate_argnums=(0, 1), in_shardings=(rep, rep, data, data), out_shardings=(rep, rep, rep)
    )


def make_sgd_epoch(
    apply_fn: ApplyFn,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
) -> Callable[[Any, Any, jax.Array, jax.Array, jax.Array], tuple[Any, Any, jax.Array]]:
    """One pass of per-example SGD as a single jitted ``lax.scan``.

    ``epoch(params, opt_state, x, y, order)`` visits the examples ``x[order[0]], x[order[1]],
    ...`` one at a time (a batch of one, ``x[i:i+1]``) and applies `optimizer` after each; it
    returns ``(params, opt_state, losses)`` with ``losses[k]`` the loss of the k-th example before
    its update. With ``optax.sgd(lr)`` each update is ``w <- w - lr * dE/dw`` (LeCun et al.
    1989's per-pattern rule); ``optax.sgd(schedule)`` decays the rate per example. This equals a
    Python loop of `make_train_step` calls on single examples. `params` and `opt_state` are
    donated.

    Args:
      apply_fn: ``apply_fn(params, x) -> y``.
      loss_fn: ``loss_fn(y, targets) -> scalar`` on a batch of one.
      optimizer: an optax ``GradientTransformation``.

    Returns:
      The jitted ``epoch``; `order` is an integer array of example indices (any length). The same
      arguments give the same function (compiled once per shape).
    """
    _check_optimizer("make_sgd_epoch", optimizer)
    return _memoized(_build_sgd_epoch, apply_fn, loss_fn, optimizer)


def _build_sgd_epoch(apply_fn: ApplyFn, loss_fn: LossFn, optimizer: optax.GradientTransformation) -> Callable:
    def epoch(params: Any, opt_state: Any, x: jax.Array, y: jax.Array, order: jax.Array):
        def body(carry, i):
            p, s = carry
            xi = lax.dynamic_index_in_dim(x, i, keepdims=True)
            yi = lax.dynamic_index_in_dim(y, i, keepdims=True)
            p, s, loss = _update(apply_fn, loss_fn, optimizer, p, s, xi, yi)
            return (p, s), loss

        (params, opt_state), losses = lax.scan(body, (params, opt_state), order)
        return params, opt_state, losses

    return jax.jit(epoch, donate_argnums=(0, 1))


# ------------------------------------------------------------------------------- evaluation
class Evaluation(NamedTuple):
    """`evaluate`'s result: mean per-example loss, error rate (a fraction), error count, size."""

    loss: float
    error: float
    errors: int
    count: int


def _labels_of(y: jax.Array) -> jax.Array:
    """Integer labels ``(N,)`` as given, or the argmax of targets ``(N, K)`` (one-hot, +-1)."""
    return y if jnp.ndim(y) == 1 else jnp.argmax(y, axis=-1)


def _evaluator(apply_fn: ApplyFn, loss_fn: LossFn, batch_size: int) -> Callable:
    """Jitted ``(params, x, y) -> (loss_sum, error_count)`` over padded fixed-size batches."""
    return _memoized(_build_evaluator, apply_fn, loss_fn, batch_size)


def _build_evaluator(apply_fn: ApplyFn, loss_fn: LossFn, batch_size: int) -> Callable:

    def run(params: Any, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        n = x.shape[0]
        bs = min(batch_size, n)
        nb = -(-n // bs)
        pad = nb * bs - n

        def padded(a: jax.Array) -> jax.Array:
            a = jnp.concatenate([a, jnp.zeros((pad, *a.shape[1:]), a.dtype)]) if pad else a
            return a.reshape(nb, bs, *a.shape[1:])

        def one_batch(batch):
            xb, yb = batch
            out = apply_fn(params, xb)
            losses = jax.vmap(lambda o, t: loss_fn(o[None], t[None]))(out, yb)
            wrong = jnp.argmax(out, axis=-1) != _labels_of(yb)
            return losses, wrong

        losses, wrong = lax.map(one_batch, (padded(x), padded(y)))
        valid = (jnp.arange(nb * bs) < n).reshape(nb, bs)
        loss_sum = jnp.sum(jnp.where(valid, losses, jnp.zeros_like(losses)))
        return loss_sum, jnp.sum(wrong & valid)

    return jax.jit(run)


def _check_eval_args(fn: str, x: Any, y: Any, batch_size: Any) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise fail(fn, f"`batch_size` must be a positive int, got {batch_size!r}")
    n = jnp.shape(x)[0] if jnp.ndim(x) else 0
    if n < 1:
        raise fail(fn, f"`x` must hold at least one example, got shape {jnp.shape(x)}")
    if jnp.ndim(y) not in (1, 2) or jnp.shape(y)[0] != n:
        raise fail(
            fn, f"`y` must be labels ({n},) or targets ({n}, K) to match `x`, got shape {jnp.shape(y)}"
        )


def evaluate(
    apply_fn: ApplyFn,
    loss_fn: LossFn,
    params: Any,
    x: jax.Array,
    y: jax.Array,
    *,
    batch_size: int = 1000,
) -> Evaluation:
    """Mean per-example loss and error rate of a model on ``(x, y)``.

    The examples go through ``apply_fn`` in batches of `batch_size` (the last one padded and
    masked, so one compilation serves any size). The loss of an example is ``loss_fn`` on a
    batch of that one example; `loss` is their mean. An example is an error when the argmax of
    the output differs from its label: `y` is integer labels ``(N,)`` or targets ``(N, K)``
    (one-hot or +-1) whose argmax is the label.

    Args:
      apply_fn: ``apply_fn(params, x) -> (N, K)``.
      loss_fn: ``loss_fn(y, targets) -> scalar``.
      params: the model parameters.
      x: inputs ``(N, ...)``.
      y: labels ``(N,)`` or targets ``(N, K)`` (what `loss_fn` takes).
      batch_size: examples per forward pass.

    Returns:
      `Evaluation` ``(loss, error, errors, count)``; `error` is the fraction ``errors / count``.
    """
    _check_eval_args("evaluate", x, y, batch_size)
    loss_sum, errors = _evaluator(apply_fn, loss_fn, int(batch_size))(params, x, y)
    n = int(jnp.shape(x)[0])
    return Evaluation(float(loss_sum) / n, int(errors) / n, int(errors), n)


# ------------------------------------------------------------------------------ checkpoints
def _key_name(entry: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _flatten(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``{"params/H1/w": array, ...}``: every leaf keyed by its tree path."""
    flat: dict[str, np.ndarray] = {}
    for top, tree in state.items():
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            key = "/".join([top, *(_key_name(e) for e in path)])
            if key in flat or key == _META_KEY:
                raise fail("save_checkpoint", f"two leaves share the key {key!r}")
            flat[key] = np.asarray(jax.device_get(leaf))
    return flat


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Write `state` (named pytrees of arrays) and `meta` (JSON-able) to one ``.npz``, atomically.

    Leaves are stored under their tree paths (``"params/H1/w"``), `meta` as a JSON string under
    ``"__meta__"`` (with ``"format": CHECKPOINT_FORMAT`` added); nothing is pickled. The file is
    written to a temporary file in the same directory, flushed to disk and moved over `path` with
    ``os.replace``: a crash leaves either the old checkpoint or the new one, never a partial file.

    Args:
      path: the ``.npz`` file; its directory is created if needed.
      state: e.g. ``{"params": params, "opt_state": opt_state}``.
      meta: e.g. ``{"epoch": 3, "seed": 0, "history": [...]}``.
    """
    flat = _flatten(state)
    flat[_META_KEY] = np.array(json.dumps({"format": CHECKPOINT_FORMAT, **meta}))
    buffer = io.BytesIO()
    np.savez(buffer, **flat)
    atomic_write(path, buffer.getvalue())


def load_checkpoint(
    path: str | os.PathLike[str], template: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a `save_checkpoint` file into the structure of `template`, validating everything.

    Args:
      path: the ``.npz`` file.
      template: named pytrees with the expected structure, shapes and dtypes (e.g. freshly
        initialised ``{"params": ..., "opt_state": ...}``).

    Returns:
      ``(state, meta)``: `state` like `template` with the stored arrays (as ``jax.Array``), and
      the JSON metadata.

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: the file is not a readable checkpoint, or its keys, shapes or dtypes differ
        from the template's; the message names the file.
    """
    path = Path(path)
    where = f"checkpoint '{path}'"
    if not path.is_file():
        raise fail("load_checkpoint", f"{where} does not exist", FileNotFoundError)
    expected = {k: np.asarray(jax.device_get(v)) for k, v in _flatten(template).items()}
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as archive:
            stored = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise fail("load_checkpoint", f"{where} is not a readable .npz checkpoint: {err}") from err
    try:
        meta = json.loads(str(stored.pop(_META_KEY)[()]))
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise fail("load_checkpoint", f"{where} has no valid {_META_KEY!r} entry: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise fail("load_checkpoint", f"{where} is not a {CHECKPOINT_FORMAT} file")
    missing, extra = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if missing or extra:
        raise fail(
            "load_checkpoint",
            f"{where} does not match the template: missing keys {missing}, unexpected keys {extra}",
        )
    for key, want in expected.items():
        got = stored[key]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise fail(
                "load_checkpoint",
                f"{where}: {key!r} has shape {got.shape} and dtype {got.dtype}; the template "
                f"expects {want.shape} {want.dtype}",
            )
    state = {}
    for top, tree in template.items():
        paths, treedef = jax.tree_util.tree_flatten_with_path(tree)
        leaves = [jnp.asarray(stored["/".join([top, *(_key_name(e) for e in p)])]) for p, _ in paths]
        state[top] = jax.tree_util.tree_unflatten(treedef, leaves)
    return state, meta


# ------------------------------------------------------------------------------------- fit
class FitResult(NamedTuple):
    """`fit`'s result.

    Attributes:
      params, opt_state: after the last epoch.
      history: one dict per epoch (those restored from a checkpoint included): ``epoch``,
        ``train_loss_running`` (mean loss of the training steps), ``{name}_loss`` and
        ``{name}_error`` for every evaluation set, ``seconds`` (that epoch's training time).
      compile_seconds: ahead-of-time compilation of the epoch/step and evaluation functions.
      train_seconds: training steps only (this run's epochs; no evaluation, no compilation).
      eval_seconds: evaluation after each epoch.
      start_epoch: epochs restored from the checkpoint (0 for a fresh run).
    """

    params: Any
    opt_state: Any
    history: list[dict[str, Any]]
    compile_seconds: float
    train_seconds: float
    eval_seconds: float
    start_epoch: int


@functools.partial(jax.jit, static_argnums=2)
def _permutation(seed: jax.Array, epoch: jax.Array, n: int) -> jax.Array:
    key = jax.random.fold_in(jax.random.key(seed), epoch)
    return jax.random.permutation(key, n)


def epoch_permutation(seed: int, epoch: int, n: int) -> jax.Array:
    """The data order of `epoch`: a permutation of ``range(n)`` from ``fold_in(key(seed), epoch)``.

    It depends on nothing but its arguments, so a run resumed at any epoch sees the same order.
    """
    return _permutation(jnp.uint32(seed), jnp.uint32(epoch), int(n))


def _augment_key(seed: int, epoch: int) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), epoch), 0x5EED)


class _Progress:
    """tqdm when installed (and wanted), else one plain line per epoch."""

    def __init__(self, enabled: bool, total: int, initial: int, desc: str, unit: str, per_epoch: int):
        self.enabled, self.per_epoch = enabled, per_epoch
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)
        self.desc = desc

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def epoch_done(self, record: Mapping[str, Any], epochs: int) -> None:
        shown = {k: v for k, v in record.items() if k.endswith(("_loss", "_error", "running"))}
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=True)
        elif self.enabled:
            text = " ".join(f"{k}={v:.4g}" for k, v in shown.items())
            print(f"{self.desc} epoch {record['epoch']}/{epochs} {text}", file=sys.stdout, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _check_fit_args(fn: str, x: Any, y: Any, epochs: Any, batch_size: Any, seed: Any) -> int:
    for name, value, minimum in (("epochs", epochs, 0), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise fail(fn, f"`{name}` must be an int >= {minimum}, got {value!r}")
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
    progress: bool = True,
    desc: str = "train",
    config: Mapping[str, Any] | None = None,
) -> FitResult:
    """Train for `epochs` passes over `train`, evaluating, checkpointing and resuming.

    Every epoch ``e`` (0-based) visits the training set in the order `epoch_permutation` ``(seed,
    e)``: with ``batch_size=None`` one example at a time through `make_sgd_epoch` (one jitted scan
    per epoch); otherwise in minibatches of `batch_size` through `make_train_step` (the last
    ``n % batch_size`` examples of the order are dropped that epoch). After each epoch the model
    is evaluated on every set of `eval_sets` (`evaluate`) and, when `checkpoint` is given,
    params, optimizer state, epoch and history are written there (`save_checkpoint`). A later
    call with the same arguments resumes after the last saved epoch and ends with exactly the
    parameters an uninterrupted run would have (`augment` keys, like the order, come from
    ``(seed, epoch)``).

    Args:
      apply_fn: ``apply_fn(params, x) -> y``.
      loss_fn: the training loss ``loss_fn(y, targets) -> scalar``.
      optimizer: an optax ``GradientTransformation``; its state is created here (or restored).
      params: initial parameters (copied: the caller's arrays are not donated).
      train: ``(x, y)`` training inputs and targets (what `loss_fn` takes).
      epochs: total number of epochs, restored ones included.
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
      progress: show a progress bar (tqdm) or, without tqdm, print one line per epoch.
      desc: label of the progress bar.
      config: JSON-able settings that define the run (learning rate, model, ...); stored in the
        checkpoint, and a resume with different settings is refused.

    Returns:
      `FitResult`.

    Raises:
      NonFiniteLossError: a training loss became NaN or infinite; the checkpoint of the last good
        epoch is left in place.
      ValueError: bad arguments, or a checkpoint that does not match (see `load_checkpoint`) or
        was written with another seed, batch size, training-set size or `config`.
    """
    fn = "fit"
    _check_optimizer(fn, optimizer)
    x_train, y_train = train
    n = _check_fit_args(fn, x_train, y_train, epochs, batch_size, seed)
    if batch_size is None and (augment is not None or data_parallel):
        raise fail(fn, "`augment` and `data_parallel` need minibatches (`batch_size` is None)")
    eval_sets = dict(eval_sets or {})
    eval_loss_fn = loss_fn if eval_loss_fn is None else eval_loss_fn
    for name, (ex, ey) in eval_sets.items():
        _check_eval_args(f"{fn}: eval set {name!r}", ex, ey, eval_batch_size)

    mesh = data_mesh() if data_parallel else None
    if mesh is not None and mesh.size == 1:
        mesh = None
    if mesh is not None and batch_size % mesh.size:
        raise fail(fn, f"`batch_size` (={batch_size}) must be divisible by the {mesh.size} devices")

    params = jax.tree.map(jnp.array, params)  # a private copy: its buffers are donated
    opt_state = optimizer.init(params)
    history: list[dict[str, Any]] = []
    start = 0
    saved_epoch = None  # the epoch of the checkpoint this run wrote or resumed from
    meta_run = {"seed": int(seed), "batch_size": batch_size, "n_train": n,
                "config": json.loads(json.dumps(dict(config or {})))}
    ckpt = None if checkpoint is None else Path(checkpoint)
    if ckpt is not None and resume and ckpt.exists():
        state, meta = load_checkpoint(ckpt, {"params": params, "opt_state": opt_state})
        for key, value in meta_run.items():
            if meta.get(key) != value:
                raise fail(
                    fn,
                    f"checkpoint '{ckpt}' was written with {key}={meta.get(key)!r}, this run has "
                    f"{key}={value!r}; resume would not reproduce the run (use another path or resume=False)",
                )
        params, opt_state = state["params"], state["opt_state"]
        history, start = list(meta["history"]), int(meta["epoch"])
        saved_epoch = start
    x_train, y_train = jnp.asarray(x_train), jnp.asarray(y_train)
    eval_data = {k: (jnp.asarray(a), jnp.asarray(b)) for k, (a, b) in eval_sets.items()}
    if mesh is not None:
        params, opt_state = replicate(params, mesh), replicate(opt_state, mesh)
        x_train, y_train = replicate(x_train, mesh), replicate(y_train, mesh)
        eval_data = {k: replicate(d, mesh) for k, d in eval_data.items()}

    # Compile everything ahead of time, so that the clock of the epochs measures training only.
    t0 = time.perf_counter()
    order0 = epoch_permutation(seed, 0, n)
    if batch_size is None:
        run_epoch = make_sgd_epoch(apply_fn, loss_fn, optimizer).lower(
            params, opt_state, x_train, y_train, order0).compile()
        steps_per_epoch = 1
    else:
        steps_per_epoch = n // batch_size
        step = make_train_step(apply_fn, loss_fn, optimizer, mesh=mesh)
        prepare = _memoized(_make_prepare, augment, mesh)
        idx0 = order0[:batch_size]
        xb, yb = prepare(x_train, y_train, idx0, _augment_key(seed, 0))
        prepare_c = prepare.lower(x_train, y_train, idx0, _augment_key(seed, 0)).compile()
        step_c = step.lower(params, opt_state, xb, yb).compile()
    evaluators = {
        k: _evaluator(apply_fn, eval_loss_fn, int(eval_batch_size)).lower(params, *d).compile()
        for k, d in eval_data.items()
    }
    compile_seconds = time.perf_counter() - t0

    train_seconds = eval_seconds = 0.0
    bar = _Progress(progress, epochs * steps_per_epoch, start * steps_per_epoch, desc,
                    "epoch" if batch_size is None else "step", steps_per_epoch)
    try:
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            order = epoch_permutation(seed, epoch, n)
            if batch_size is None:
                params, opt_state, losses = run_epoch(params, opt_state, x_train, y_train, order)
                bar_steps = 1
            else:
                batches = order[: steps_per_epoch * batch_size].reshape(steps_per_epoch, batch_size)
                key = _augment_key(seed, epoch)
                losses = []
                for b in range(steps_per_epoch):
                    xb, yb = prepare_c(x_train, y_train, batches[b], jax.random.fold_in(key, b))
                    params, opt_state, loss = step_c(params, opt_state, xb, yb)
                    losses.append(loss)
                    bar.advance(1)
                losses = jnp.stack(losses)
                bar_steps = 0
            losses = np.asarray(jax.device_get(losses))
            seconds = time.perf_counter() - t0
            train_seconds += seconds
            bad = np.flatnonzero(~np.isfinite(losses))
            if bad.size:
                if saved_epoch is not None:
                    saved = f"the last good checkpoint '{ckpt}' (epoch {saved_epoch}) is kept"
                else:
                    saved = "no checkpoint was written"
                raise NonFiniteLossError(
                    f"`fit`: the training loss became {losses[bad[0]]} at epoch {epoch + 1}, step "
                    f"{int(bad[0]) + 1} of {losses.size}; training stopped and {saved}. Lower the "
                    "learning rate or check the data."
                )
            record: dict[str, Any] = {"epoch": epoch + 1, "train_loss_running": float(losses.mean())}
            t0 = time.perf_counter()
            for name, (ex, ey) in eval_data.items():
                loss_sum, errors = evaluators[name](params, ex, ey)
                count = int(ex.shape[0])
                record[f"{name}_loss"] = float(loss_sum) / count
                record[f"{name}_error"] = int(errors) / count
            eval_seconds += time.perf_counter() - t0
            record["seconds"] = seconds
            history.append(record)
            if ckpt is not None:
                save_checkpoint(
                    ckpt, {"params": params, "opt_state": opt_state},
                    {"epoch": epoch + 1, "history": history, **meta_run},
                )
                saved_epoch = epoch + 1
            bar.advance(bar_steps)
            bar.epoch_done(record, epochs)
    finally:
        bar.close()
    return FitResult(params, opt_state, history, compile_seconds, train_seconds, eval_seconds, start)


def _make_prepare(augment: Callable | None, mesh: Mesh | None) -> Callable:
    """Jitted ``(x, y, idx, key) -> (x[idx] (augmented), y[idx])``, sharded over `mesh` if given."""

    def prepare(x: jax.Array, y: jax.Array, idx: jax.Array, key: jax.Array):
        xb, yb = jnp.take(x, idx, axis=0), jnp.take(y, idx, axis=0)
        if augment is not None:
            xb = augment(key, xb)
        return xb, yb

    if mesh is None:
        return jax.jit(prepare)
    data = NamedSharding(mesh, PartitionSpec("data"))
    return jax.jit(prepare, out_shardings=(data, data))


# ------------------------------------------------------------------------- run bookkeeping


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
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buffer.getvalue())
