"""Train steps, per-example SGD epochs, evaluation, data order and data parallelism.

- `make_train_step` — ``step(params, opt_state, x, y) -> (params, opt_state, loss)``, jit-compiled,
  for any optax optimizer; `params` and `opt_state` buffers are donated. Given a `data_mesh` of
  several devices the same step runs data-parallel (batch sharded, parameters replicated).
- `make_sgd_epoch` — one pass of per-example SGD (LeCun et al. 1989's protocol) as a single jitted
  ``lax.scan`` over the examples, in an order you pass in; the optimizer is applied after every
  example (``optax.sgd(lr)`` is the plain rule ``w <- w - lr * dE/dw``; a schedule is allowed).
- `evaluate` — mean per-example loss and error rate (argmax against the label) in fixed-size batches.
- `epoch_permutation` — the data order of an epoch, a function of ``(seed, epoch)`` only.
- `data_mesh`, `replicate`, `shard_batch` — a 1-D ``"data"`` mesh and the placement of a step's inputs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxcnn._checks import check_int, fail

__all__ = [
    "ApplyFn",
    "Evaluation",
    "LossFn",
    "data_mesh",
    "epoch_permutation",
    "evaluate",
    "make_sgd_epoch",
    "make_train_step",
    "replicate",
    "shard_batch",
]

ApplyFn = Callable[[Any, jax.Array], jax.Array]
LossFn = Callable[[jax.Array, jax.Array], jax.Array]


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


def _build_sgd_epoch(apply_fn: ApplyFn, loss_fn: LossFn, optimizer: optax.GradientTransformation,
                     prepare: Callable[[Any, Any, jax.Array, jax.Array], Any] | None = None) -> Callable:
    """The jitted per-example scan; `prepare` ``(params, opt_state, x_i, y_i) -> opt_state`` runs
    before each example's update (`jaxcnn.sdlm`'s running curvature estimate)."""
    def epoch(params: Any, opt_state: Any, x: jax.Array, y: jax.Array, order: jax.Array):
        def body(carry, i):
            p, s = carry
            xi = lax.dynamic_index_in_dim(x, i, keepdims=True)
            yi = lax.dynamic_index_in_dim(y, i, keepdims=True)
            if prepare is not None:
                s = prepare(p, s, xi, yi)
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


@functools.partial(jax.jit, static_argnums=2)
def _permutation(seed: jax.Array, epoch: jax.Array, n: int) -> jax.Array:
    key = jax.random.fold_in(jax.random.key(seed), epoch)
    return jax.random.permutation(key, n)


def epoch_permutation(seed: int, epoch: int, n: int) -> jax.Array:
    """The data order of `epoch`: a permutation of ``range(n)`` from ``fold_in(key(seed), epoch)``.

    It depends on nothing but its arguments, so a run resumed at any epoch sees the same order.
    `seed` and `epoch` are ints in ``[0, 2**32)``, `n` an int >= 0 (ValueError otherwise).
    """
    fn = "epoch_permutation"
    seed, epoch = check_int(fn, "seed", seed, uint32=True), check_int(fn, "epoch", epoch, uint32=True)
    return _permutation(jnp.uint32(seed), jnp.uint32(epoch), check_int(fn, "n", n))


def _augment_key(seed: int, epoch: int) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), epoch), 0x5EED)


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
