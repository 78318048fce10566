r"""Stochastic diagonal Levenberg-Marquardt: the training method of LeCun et al. (1989).

LeCun et al. (1989) trained the zip-code network with "a special version of Newton's algorithm
that uses a positive, diagonal approximation of the Hessian matrix" (Becker & LeCun 1988). LeCun,
Bottou, Orr & Mueller ("Efficient BackProp", 1998, section 9.1) call it the *stochastic diagonal
Levenberg-Marquardt* method, and LeCun, Bottou, Bengio & Haffner (1998, Appendix C) give the recipe
used for LeNet-5: every parameter ``w_k`` takes per-example steps

.. math::
    \Delta w_k = -\frac{\epsilon}{\mu + \bar h_{kk}} \frac{\partial E^p}{\partial w_k}

with ``h_kk`` the Gauss-Newton diagonal (the curvature pass, `jaxcnn.curvature`) averaged over a
few hundred training examples *before each pass* and held fixed during the pass, ``mu = 0.02``
(which bounds the step where the curvature is tiny), and a global rate ``epsilon`` lowered by
steps over the passes (LeNet-5: 5e-4 for passes 1-2, 2e-4 for 3-5, 1e-4 for 6-8, 5e-5 for 9-12,
1e-5 after; `lecun_schedule` keeps those ratios). The papers' text was not at hand here: these
numbers are the published ones as commonly quoted, and the defaults below (``epsilon``, sample
count) were chosen for `jaxcnn.models.lecun1989` on the embedded digits (see
``experiments/sdlm_seeds.py``).

The pieces:

* `sdlm` — the optax ``GradientTransformation`` ``u = -lr * g / (mu + h)``; its state holds the
  current ``h`` (`SDLMState`), set by `set_curvature` (zero at init: plain SGD with rate
  ``lr / mu``);
* `estimate_curvature` — ``h`` averaged over examples: one curvature pass per example (vmapped);
* `running_curvature` — Efficient BackProp's (section 9.1) *running* estimate, after example ``p``
  ``h <- (1 - gamma) h + gamma h_p``;
* `make_sdlm_epoch` — one pass: estimate ``h`` on the given samples, set it, then per-example
  steps through `jaxcnn.train.make_sgd_epoch` (the same jitted ``lax.scan``); with ``gamma``,
  every step also takes the example's curvature and updates ``h`` by `running_curvature`;
* `fit` — `jaxcnn.train.fit`'s per-example protocol (same order of the examples, evaluation,
  history, checkpoints and resume) with the curvature re-estimated before each pass (or, with
  ``gamma``, estimated once before the first pass and then kept as the running average).

Curvature must come from a network of jaxcnn ops (see `jaxcnn.curvature` for the limits); with
``ops=jaxcnn.reference`` the "curvature" would silently be a gradient.
"""

from __future__ import annotations

import math
import numbers
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn import curvature, train
from jaxcnn._checks import check_array, check_int, fail, is_int
from jaxcnn.train import loop as _loop
from jaxcnn.train import steps as _steps

__all__ = [
    "DEFAULT_MU",
    "DEFAULT_SAMPLES",
    "SDLMState",
    "curvature_sample",
    "estimate_curvature",
    "fit",
    "lecun_schedule",
    "make_sdlm_epoch",
    "running_curvature",
    "sdlm",
    "set_curvature",
]

ApplyFn = Callable[[Any, jax.Array], jax.Array]
LossFn = Callable[[jax.Array, jax.Array], jax.Array]
DEFAULT_MU = 0.02  # LeCun et al. 1998, Appendix C
DEFAULT_SAMPLES = 500  # examples the curvature is averaged over before each pass (ibid.)
_LECUN_RATIOS = ((2, 1.0), (5, 0.4), (8, 0.2), (12, 0.1), (None, 0.02))  # (last pass, eps / eps_0)


class SDLMState(NamedTuple):
    """`sdlm`'s state: the number of updates so far and the current diagonal curvature ``h``."""

    count: jax.Array  # int32 scalar
    hessian: Any  # pytree like the params: h_kk >= 0


def sdlm(learning_rate: float | optax.Schedule, *, mu: float = DEFAULT_MU) -> optax.GradientTransformation:
    r"""The stochastic diagonal Levenberg-Marquardt step, ``u_k = -lr / (mu + h_k) * g_k``.

    Args:
      learning_rate: ``epsilon``, a float or an optax schedule of the update count.
      mu: the Levenberg-Marquardt damping, > 0 (0.02 in LeCun et al. 1998): the largest step is
        ``lr / mu`` (where ``h = 0``).

    Returns:
      An optax ``GradientTransformation``; its state is `SDLMState` with ``h = 0`` until
      `set_curvature` sets it (typically before each pass, from `estimate_curvature`).
    """
    if _positive(mu) is None:
        raise fail("sdlm", f"`mu` must be a positive number (finite), got {mu!r}")
    if not callable(learning_rate) and _positive(learning_rate) is None:
        raise fail("sdlm", f"`learning_rate` must be positive (finite) or a schedule, got {learning_rate!r}")

    def init(params: Any) -> SDLMState:
        return SDLMState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update(grads: Any, state: SDLMState, params: Any = None) -> tuple[Any, SDLMState]:
        del params
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        updates = jax.tree.map(lambda g, h: (-lr / (mu + h)).astype(g.dtype) * g, grads, state.hessian)
        return updates, SDLMState(optax.safe_int32_increment(state.count), state.hessian)

    return optax.GradientTransformation(init, update)


def set_curvature(opt_state: Any, hessian: Any) -> Any:
    """`opt_state` with the ``h`` of every `SDLMState` in it (also inside an ``optax.chain`` or
    ``optax.named_chain``) replaced by `hessian` (a pytree like the params); ValueError when it
    holds none."""
    fn = "set_curvature"
    return _map_curvature(fn, opt_state, lambda old: _like(fn, "hessian", hessian, old))


def running_curvature(opt_state: Any, h_p: Any, gamma: float) -> Any:
    r"""`opt_state` with every `SDLMState`'s ``h`` moved towards one example's curvature `h_p`.

    .. math::
        \bar h_{kk} \leftarrow (1 - \gamma)\, \bar h_{kk} + \gamma\, h^p_{kk}

    (LeCun, Bottou, Orr & Mueller 1998, section 9.1: the running estimate, updated after every
    example). `set_curvature` applied to the average; pure, so it runs inside ``jit``/``scan``.

    Args:
      opt_state: a state holding an `SDLMState` (also inside an ``optax.chain``).
      h_p: a pytree like the params (each leaf the shape of its parameter): the example's diagonal
        Gauss-Newton curvature (`jaxcnn.curvature.diag_gauss_newton` on a batch of one).
      gamma: the averaging constant, a float in ``(0, 1]`` (1: ``h`` becomes ``h_p``).
    """
    gamma = _check_gamma("running_curvature", gamma)
    return _map_curvature("running_curvature", opt_state, lambda old: jax.tree.map(
        lambda h, hp: (1.0 - gamma) * h + gamma * jnp.asarray(hp, h.dtype), old,
        _like("running_curvature", "h_p", h_p, old)))


def _like(fn: str, name: str, tree: Any, like: Any) -> Any:
    """`tree` when it has the structure and leaf shapes of `like` (the ``h`` it replaces or updates),
    else the library's ValueError: a wrong shape was stored as is (or met a broadcasting error)."""
    got, want = jax.tree.structure(tree), jax.tree.structure(like)
    if got != want:
        raise fail(fn, f"`{name}` must be a pytree like the params ({want}), got {got}")
    pairs = zip(jax.tree_util.tree_leaves_with_path(like), jax.tree.leaves(tree), strict=True)
    for (path, leaf), given in pairs:
        if jnp.shape(given) != jnp.shape(leaf):
            raise fail(fn, f"`{name}`{jax.tree_util.keystr(path)} has shape {jnp.shape(given)}; expected "
                       f"{jnp.shape(leaf)}, its parameter's")
        values = None if isinstance(given, jax.core.Tracer) else np.asarray(given)  # concrete ones only
        if values is not None and np.any(values < 0):
            raise fail(fn, f"`{name}`{jax.tree_util.keystr(path)} has negative entries (min "
                       f"{float(np.nanmin(values)):.3g}): a diagonal Gauss-Newton curvature is >= 0, and "
                       "mu + h < mu turns steps uphill (a curvature estimated through jaxcnn.reference ops "
                       "is a gradient: use jaxcnn's)")
    return tree


def _real(value: Any) -> float | None:
    """`value` as a float when it is one real number (Python, NumPy, or a concrete 0-d JAX array;
    not a bool, not a string), else None: the callers raise their ValueError naming the argument."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        return None
    if not isinstance(value, numbers.Real):
        dtype, shape = getattr(value, "dtype", None), getattr(value, "shape", None)
        if dtype is None or shape != () or not (jnp.issubdtype(dtype, jnp.floating)
                                                or jnp.issubdtype(dtype, jnp.integer)):
            return None
    try:
        return float(value)
    except (TypeError, OverflowError, jax.errors.ConcretizationTypeError):  # 10**400, a tracer
        return None


def _positive(value: Any) -> float | None:
    """`_real`'s float when it is positive and finite (a rate, `mu`), else None."""
    real = _real(value)
    return real if real is not None and 0 < real < math.inf else None


def _check_gamma(fn: str, gamma: Any) -> float:
    gamma_ = _real(gamma)
    if gamma_ is None or not 0 < gamma_ <= 1:
        raise fail(fn, f"`gamma` must be a float in (0, 1], got {gamma!r}")
    return gamma_


def _is_sdlm(state: Any) -> bool:
    return isinstance(state, SDLMState)


def _map_curvature(fn: str, opt_state: Any, new_h: Callable[[Any], Any]) -> Any:
    """`opt_state` with the ``h`` of every `SDLMState` replaced by ``new_h(h)`` (cast to h's dtypes),
    wherever it is in the state's pytree (a chain's tuple, ``optax.named_chain``'s dict, ...); a state
    without one is refused (nothing would be set)."""
    if not _holds_sdlm(opt_state):
        raise fail(fn, f"`opt_state` holds no `SDLMState` (the state of `sdlm`), got {opt_state!s:.120}")

    def one(state: Any) -> Any:
        if not _is_sdlm(state):
            return state
        return state._replace(hessian=jax.tree.map(lambda old, new: jnp.asarray(new, old.dtype),
                                                   state.hessian, new_h(state.hessian)))

    return jax.tree.map(one, opt_state, is_leaf=_is_sdlm)


def _holds_sdlm(opt_state: Any) -> bool:
    return any(_is_sdlm(s) for s in jax.tree.leaves(opt_state, is_leaf=_is_sdlm))


def estimate_curvature(apply_fn: ApplyFn, loss_fn: LossFn, params: Any, x: jax.Array,
                       y: jax.Array) -> Any:
    r"""The diagonal Gauss-Newton curvature per example, averaged over the examples of ``(x, y)``.

    .. math::
        \bar h_{kk} = \frac{1}{P} \sum_{p} \frac{\partial^2 E^p}{\partial w_k^2}\Big|_{\text{GN diag}}

    ``E^p = loss_fn(apply_fn(params, x[p:p+1]), y[p:p+1])``, each term one curvature pass
    (`jaxcnn.curvature.diag_gauss_newton`), vmapped over the examples.

    Args:
      apply_fn: ``apply_fn(params, x) -> y`` built from jaxcnn ops.
      loss_fn: ``loss_fn(y, targets) -> scalar`` on a batch of one (`jaxcnn.squared_error`, ...).
      params: the parameters.
      x, y: ``(P, ...)`` examples and their targets.

    Returns:
      A pytree like `params`, ``>= 0``.
    """
    for name, a in (("x", x), ("y", y)):  # a list was vmapped element by element (vmap's error)
        check_array("estimate_curvature", name, a)
    n_x, n_y = (jnp.shape(a)[0] if jnp.ndim(a) else None for a in (x, y))
    if not n_x or n_x != n_y:
        raise fail("estimate_curvature", f"`x` and `y` must hold the same number (>= 1) of examples on their "
                   f"first axis, got shapes {jnp.shape(x)} and {jnp.shape(y)}")

    def one(xi: jax.Array, yi: jax.Array) -> Any:
        return curvature.diag_gauss_newton(lambda p: loss_fn(apply_fn(p, xi[None]), yi[None]), params)

    return jax.tree.map(lambda h: jnp.mean(h, axis=0), jax.vmap(one)(x, y))


def lecun_schedule(epsilon: float, steps_per_pass: int) -> optax.Schedule:
    """LeCun et al. (1998)'s piecewise-constant global rate over passes, scaled to start at
    `epsilon`: ``epsilon`` for passes 1-2, ``0.4 epsilon`` for 3-5, ``0.2`` for 6-8, ``0.1`` for
    9-12, ``0.02`` after (5e-4, 2e-4, 1e-4, 5e-5, 1e-5 for LeNet-5)."""
    if _positive(epsilon) is None:
        raise fail("lecun_schedule", f"`epsilon` must be a positive finite number, got {epsilon!r}")
    if not is_int(steps_per_pass) or steps_per_pass < 1:
        raise fail("lecun_schedule", f"`steps_per_pass` must be a positive int, got {steps_per_pass!r}")
    boundaries, previous = {}, 1.0
    for (last, _), (_, ratio) in zip(_LECUN_RATIOS[:-1], _LECUN_RATIOS[1:], strict=True):
        boundaries[last * steps_per_pass] = ratio / previous
        previous = ratio
    return optax.piecewise_constant_schedule(epsilon, boundaries)


def make_sdlm_epoch(apply_fn: ApplyFn, loss_fn: LossFn, optimizer: optax.GradientTransformation,
                    *, gamma: float | None = None) -> Callable:
    r"""One SDLM pass: ``epoch(params, opt_state, x, y, order, sample) -> (params, opt_state, losses)``.

    ``gamma=None`` (LeCun et al. 1998, Appendix C): first the curvature is averaged over the
    examples ``x[sample]`` (`estimate_curvature`) and set in `opt_state` (`set_curvature`); then
    `jaxcnn.train.make_sgd_epoch` visits ``x[order]`` one example at a time with `optimizer` (an
    `sdlm`), ``h`` held fixed.

    ``gamma`` a float in ``(0, 1]`` (Efficient BackProp, section 9.1, the running estimate): each
    step of the per-example scan takes the example's gradient and its curvature ``h_p``
    (`jaxcnn.curvature.diag_gauss_newton` on the same batch of one), updates
    ``h <- (1 - gamma) h + gamma h_p`` (`running_curvature`), then steps
    ``-eps / (mu + h) * g`` with the updated ``h``. ``h`` is carried in `opt_state` from pass to
    pass; `sample` (``(S,)`` indices) first resets it to `estimate_curvature` on ``x[sample]``
    (`fit` does so before the first pass only), ``sample=None`` continues from `opt_state`'s.

    ``x`` is ``(N, ...)``, ``y`` ``(N, ...)``, ``order`` ``(T,)`` indices; ``losses`` is ``(T,)``,
    each example's loss before its update. `params` and `opt_state` are donated to the scan.
    """
    estimate = _estimator(apply_fn, loss_fn)

    def reset(params, opt_state, x, y, sample):  # h <- its average over x[sample]
        h = estimate(params, jnp.take(x, sample, axis=0), jnp.take(y, sample, axis=0))
        return set_curvature(opt_state, h)

    if gamma is None:
        sgd_epoch = train.make_sgd_epoch(apply_fn, loss_fn, optimizer)

        def epoch(params, opt_state, x, y, order, sample):
            return sgd_epoch(params, reset(params, opt_state, x, y, sample), x, y, order)

        return epoch
    _check_gamma("make_sdlm_epoch", gamma)
    running = _running_epoch(apply_fn, loss_fn, apply_fn, loss_fn, optimizer, float(gamma))

    def running_epoch(params, opt_state, x, y, order, sample=None):
        if sample is not None:
            opt_state = reset(params, opt_state, x, y, sample)
        return running(params, opt_state, x, y, order)

    return running_epoch


def _running_epoch(apply_fn: ApplyFn, loss_fn: LossFn, curvature_apply_fn: ApplyFn,
                   curvature_loss_fn: LossFn, optimizer: optax.GradientTransformation,
                   gamma: float) -> Callable:
    """The jitted per-example scan of the running estimate (cached like `make_sgd_epoch`)."""
    return _steps._memoized(_build_running_epoch, apply_fn, loss_fn, curvature_apply_fn,
                                 curvature_loss_fn, optimizer, gamma)


def _build_running_epoch(apply_fn, loss_fn, curvature_apply_fn, curvature_loss_fn, optimizer, gamma):
    def prepare(p, s, xi, yi):  # h <- (1 - gamma) h + gamma h_p, before the example's step
        h_p = curvature.diag_gauss_newton(lambda q: curvature_loss_fn(curvature_apply_fn(q, xi), yi), p)
        return running_curvature(s, h_p, gamma)

    return _steps._build_sgd_epoch(apply_fn, loss_fn, optimizer, prepare)


_ESTIMATORS: dict[tuple[Any, Any], Callable] = {}


def _estimator(apply_fn: ApplyFn, loss_fn: LossFn) -> Callable:
    """Jitted `estimate_curvature` for one (apply, loss) pair (compiled once per shape)."""
    key = (apply_fn, loss_fn)
    if key not in _ESTIMATORS:
        _ESTIMATORS[key] = jax.jit(lambda p, x, y: estimate_curvature(apply_fn, loss_fn, p, x, y))
    return _ESTIMATORS[key]


def curvature_sample(seed: int, epoch: int, n: int, samples: int) -> jax.Array:
    """The examples the curvature of pass `epoch` is averaged over: the first `samples` of a
    permutation drawn from ``(seed, epoch)`` (independent of the pass's own order)."""
    fn = "curvature_sample"
    for name, value in (("seed", seed), ("epoch", epoch)):
        check_int(fn, name, value, uint32=True)
    for name, value in (("n", n), ("samples", samples)):
        check_int(fn, name, value, 1)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), epoch), 0x5D1A)
    return jax.random.permutation(key, n)[: min(samples, n)]


def fit(
    apply_fn: ApplyFn,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    params: Any,
    train_set: tuple[Any, Any],
    *,
    epochs: int,
    batch_size: None = None,
    seed: int = 0,
    samples: int = DEFAULT_SAMPLES,
    gamma: float | None = None,
    curvature_apply_fn: ApplyFn | None = None,
    curvature_loss_fn: LossFn | None = None,
    eval_sets: Mapping[str, tuple[Any, Any]] | None = None,
    eval_loss_fn: LossFn | None = None,
    eval_batch_size: int = 1000,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = True,
    progress: bool | train.Progress = True,
    desc: str = "sdlm",
    config: Mapping[str, Any] | None = None,
) -> train.FitResult:
    """Per-example SDLM training: `jaxcnn.train.fit`'s protocol (``batch_size=None``) with the
    curvature re-estimated on `samples` training examples before every pass, or (``gamma``) kept
    as a running average updated after every example.

    Pass ``e`` visits the examples in `jaxcnn.train.epoch_permutation` ``(seed, e)`` order (the
    order SGD's `fit` uses) and averages the curvature over `curvature_sample` ``(seed, e)``.
    Evaluation, history, checkpoints (params and optimizer state, ``h`` included) and resume are
    `jaxcnn.train.fit`'s; a resumed run ends with the parameters of an uninterrupted one.

    Args:
      apply_fn, loss_fn: the network (jaxcnn ops) and the per-example training loss.
      optimizer: an `sdlm` (or a chain containing one).
      params: initial parameters (copied).
      train_set: ``(x, y)``.
      batch_size: must be None (per-example steps; accepted so that calls of
        `jaxcnn.train.fit` carry over).
      epochs, seed, eval_sets, eval_loss_fn, eval_batch_size, checkpoint, resume, desc, config: as
        in `jaxcnn.train.fit`.
      progress: a `jaxcnn.train.Progress`, True (`jaxcnn.train.PrintProgress`) or False.
      samples: examples per curvature estimate (500 in LeCun et al. 1998).
      gamma: None (the per-pass estimate), or a float in ``(0, 1]``: Efficient BackProp's running
        estimate (`make_sdlm_epoch`), ``h`` estimated on `samples` examples before the first pass
        only, then ``h <- (1 - gamma) h + gamma h_p`` after every example ``p``.
      curvature_apply_fn, curvature_loss_fn: the network and loss the curvature is taken through
        (default `apply_fn`, `loss_fn`): the jaxcnn ones when `apply_fn`/`loss_fn` are their
        `jaxcnn.reference` twins, whose autodiff has no second-order rules.

    Returns:
      `jaxcnn.train.FitResult`; ``compile_seconds`` covers the curvature estimate, the pass and
      the evaluations, ``train_seconds`` the curvature passes and the updates.

    Raises:
      NonFiniteLossError: a training or evaluation loss became NaN or infinite; as in
        `jaxcnn.train.fit`, the checkpoint then holds the epoch of the best finite evaluation.
      ValueError: bad arguments; a checkpoint that does not match, was written with other
        settings (seed, training-set size, `samples`, `gamma`, `config`) or holds more epochs
        than `epochs`.
    """
    fn = "sdlm.fit"
    if batch_size is not None:
        raise fail(fn, f"`batch_size` must be None (per-example steps), got {batch_size!r}")
    _steps._check_optimizer(fn, optimizer)
    state = jax.eval_shape(optimizer.init, params)
    if not _holds_sdlm(state):  # else h is never set: plain SGD at rate eps / mu
        raise fail(fn, "`optimizer` must be an `sdlm` or a chain holding one (its state an `SDLMState`), "
                       f"got one whose state holds none: {state!s:.120}")
    curvature_apply_fn = apply_fn if curvature_apply_fn is None else curvature_apply_fn
    curvature_loss_fn = loss_fn if curvature_loss_fn is None else curvature_loss_fn
    n = _loop.check_fit_args(fn, *_loop.pair(fn, "train_set", train_set), epochs, None, seed)
    if epochs < 1:
        raise fail(fn, f"`epochs` must be a positive int, got {epochs!r}")
    if not is_int(samples) or samples < 1:
        raise fail(fn, f"`samples` must be a positive int, got {samples!r}")
    if gamma is not None:
        _check_gamma(fn, gamma)
    eval_loss_fn = loss_fn if eval_loss_fn is None else eval_loss_fn
    run, data, reporter, ckpt, meta_run = _loop.begin(
        fn, optimizer, params, train_set, n, epochs=epochs, seed=seed, batch_size=None, eval_sets=eval_sets,
        eval_batch_size=eval_batch_size, checkpoint=checkpoint, resume=resume, progress=progress,
        config=config, sdlm_samples=int(samples), sdlm_gamma=None if gamma is None else float(gamma))
    x_train, y_train = data.x, data.y

    t0 = time.perf_counter()
    sample0, order0 = curvature_sample(seed, 0, n, samples), train.epoch_permutation(seed, 0, n)
    estimate = _estimator(curvature_apply_fn, curvature_loss_fn).lower(
        run.params, x_train[sample0], y_train[sample0]).compile()
    if gamma is None:
        one_pass = train.make_sgd_epoch(apply_fn, loss_fn, optimizer)
    else:
        one_pass = _running_epoch(apply_fn, loss_fn, curvature_apply_fn, curvature_loss_fn, optimizer,
                                  float(gamma))
    one_pass = one_pass.lower(run.params, run.opt_state, x_train, y_train, order0).compile()

    def run_epoch(params: Any, opt_state: Any, epoch: int, advance: Callable[[int], None]):
        if gamma is None or epoch == 0:  # running: h_bar starts from pass 1's estimate
            sample = curvature_sample(seed, epoch, n, samples)
            opt_state = set_curvature(opt_state, estimate(params, x_train[sample], y_train[sample]))
        out = one_pass(params, opt_state, x_train, y_train, train.epoch_permutation(seed, epoch, n))
        advance(1)
        return out

    evaluators = _loop.compile_evaluators(apply_fn, eval_loss_fn, eval_batch_size, run, data)
    compiled = _loop.Compiled(run_epoch, evaluators, time.perf_counter() - t0, 1, "epoch")
    return _loop.run_epochs(fn, compiled, run, data, epochs, reporter, ckpt, meta_run, desc)
