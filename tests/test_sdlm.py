"""jaxcnn.sdlm: the SDLM update against a hand computation, the curvature estimate, an epoch that
lowers the loss, fit/resume, and the experiment scripts on tiny settings."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxcnn
from jaxcnn import curvature, sdlm, train
from tests.tolerances import assert_close, normal

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def standard_promotion():
    """optax's schedules mix int counts and float rates: JAX's default promotion (see test_train)."""
    with jax.numpy_dtype_promotion("standard"):
        yield


def test_update_matches_hand_computation():
    params = {"a": jnp.array([1.0, 2.0]), "b": jnp.array(3.0)}
    grads = {"a": jnp.array([0.5, -1.0]), "b": jnp.array(2.0)}
    hess = {"a": jnp.array([0.48, 0.0]), "b": jnp.array(1.98)}
    opt = sdlm.sdlm(0.1, mu=0.02)
    state = sdlm.set_curvature(opt.init(params), hess)
    updates, state = opt.update(grads, state, params)
    # -eps / (mu + h) * g: -0.1/0.5*0.5, -0.1/0.02*(-1), -0.1/2*2
    assert_close(updates, {"a": jnp.array([-0.1, 5.0]), "b": jnp.array(-0.1)})
    assert int(state.count) == 1
    assert_close(state.hessian, hess)


def test_before_any_estimate_it_is_sgd_with_rate_eps_over_mu():
    params = {"w": jnp.array([1.0, -2.0])}
    opt = sdlm.sdlm(0.001, mu=0.02)
    updates, _ = opt.update({"w": jnp.array([3.0, 4.0])}, opt.init(params))
    assert_close(updates["w"], -0.05 * jnp.array([3.0, 4.0]))


def test_schedule_and_chain(standard_promotion):
    params = {"w": jnp.ones(2)}
    opt = optax.chain(optax.clip(10.0), sdlm.sdlm(optax.piecewise_constant_schedule(1.0, {1: 0.5}), mu=1.0))
    state = sdlm.set_curvature(opt.init(params), {"w": jnp.array([1.0, 3.0])})
    g = {"w": jnp.array([2.0, 2.0])}
    u1, state = opt.update(g, state, params)
    u2, _ = opt.update(g, state, params)
    assert_close(u1["w"], jnp.array([-1.0, -0.5]))  # -1/(1+h)*2
    assert_close(u2["w"], jnp.array([-0.5, -0.25]))  # the rate halved after one update


def test_curvature_set_wherever_the_state_holds_it(standard_promotion):
    """`optax.named_chain` keeps its states in a dict, which `set_curvature` did not look into: h
    stayed 0 and the "SDLM" run was plain SGD at rate eps/mu. A state holding no `SDLMState` was
    returned unchanged, and `sdlm.fit` took an optimizer without one."""
    params = {"w": jnp.ones(2)}
    named = optax.named_chain(("clip", optax.clip(10.0)), ("sdlm", sdlm.sdlm(1.0, mu=1.0)))
    state = sdlm.set_curvature(named.init(params), {"w": jnp.array([1.0, 3.0])})
    u, _ = named.update({"w": jnp.array([2.0, 2.0])}, state, params)
    assert_close(u["w"], jnp.array([-1.0, -0.5]))  # -1/(1+h)*2, h set inside the dict
    running = sdlm.running_curvature(state, {"w": jnp.array([3.0, 5.0])}, 0.5)
    assert_close(running["sdlm"].hessian["w"], jnp.array([2.0, 4.0]))
    with pytest.raises(ValueError, match=r"`set_curvature`: `opt_state` holds no `SDLMState`"):
        sdlm.set_curvature(optax.sgd(0.1).init(params), params)
    with pytest.raises(ValueError, match=r"`sdlm.fit`: `optimizer` must be an `sdlm` or a chain holding one"):
        sdlm.fit(lambda p, x: x * p["w"], jaxcnn.squared_error, optax.sgd(0.1), params,
                 (jnp.ones((3, 2)), jnp.ones((3, 2))), epochs=1, progress=False)


def test_a_negative_curvature_is_refused(standard_promotion):
    """h = -0.03 with mu = 0.02 made the step +eps/0.01 * g: uphill, silently (an audit's finding; the
    documented trap, a curvature estimated through jaxcnn.reference ops, gives such signed values).
    A NaN propagates as in JAX; traced values are not inspected."""
    params, opt = {"w": jnp.ones(3)}, sdlm.sdlm(0.1)
    for call in (lambda h: sdlm.set_curvature(opt.init(params), h),
                 lambda h: sdlm.running_curvature(opt.init(params), h, 1.0)):
        with pytest.raises(ValueError, match=r"`hessian`\['w'\] has negative entries \(min -0.03\)|"
                                             r"`h_p`\['w'\] has negative entries \(min -0.03\)"):
            call({"w": jnp.array([-0.02, -0.03, jnp.nan])})
        h = call({"w": jnp.array([0.0, 1.0, jnp.nan])})
        assert np.isnan(jax.tree.leaves(h)[-1][-1])
        assert jax.jit(call)({"w": jnp.array([-1.0, 0.0, 0.0])}) is not None  # traced: not checked


def test_lecun_schedule_ratios(standard_promotion):
    sched = sdlm.lecun_schedule(5e-4, steps_per_pass=10)
    got = [float(sched(10 * p)) for p in range(14)]  # first update of passes 1..14
    want = [5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 2
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("bad", [0.0, -1.0, True])
def test_bad_mu(bad):
    with pytest.raises(ValueError, match="`sdlm`: `mu` must be a positive number"):
        sdlm.sdlm(0.1, mu=bad)


@pytest.mark.parametrize("call, match", [
    (lambda: sdlm.lecun_schedule(-1.0, 10), "`lecun_schedule`: `epsilon` must be a positive finite number"),
    (lambda: sdlm.lecun_schedule("a", 10), "`lecun_schedule`: `epsilon` must be"),
    (lambda: sdlm.lecun_schedule(1e-3, 0), "`lecun_schedule`: `steps_per_pass` must be a positive int"),
    (lambda: sdlm.lecun_schedule(1e-3, 2.5), "`steps_per_pass` must be a positive int"),
    (lambda: sdlm.curvature_sample(0, 0, -1, 5), "`curvature_sample`: `n` must be an int >= 1"),
    (lambda: sdlm.curvature_sample(0, 0, 10, 0), "`samples` must be an int >= 1"),
    (lambda: sdlm.curvature_sample("a", 0, 10, 5), r"`seed` must be an int in \[0, 2\*\*32\)"),
    (lambda: sdlm.curvature_sample(0, -1, 10, 5), r"`epoch` must be an int in \[0, 2\*\*32\)"),
    (lambda: sdlm.curvature_sample(2**64, 0, 10, 5), r"`seed` must be an int in \[0, 2\*\*32\), got 1844"),
    # epoch_permutation: an OverflowError, an empty order for n = -1 and 2 examples of n = 2.7 before
    (lambda: train.epoch_permutation(-1, 0, 5), r"`epoch_permutation`: `seed` must be an int in \[0, 2"),
    (lambda: train.epoch_permutation(0, 2**32, 5), r"`epoch` must be an int in \[0, 2\*\*32\), got 42949"),
    (lambda: train.epoch_permutation(0, 0, -1), "`epoch_permutation`: `n` must be an int >= 0, got -1"),
    (lambda: train.epoch_permutation(0, 0, 2.7), "`n` must be an int >= 0, got 2.7"),
])
def test_schedule_and_sample_arguments_are_checked(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_estimate_curvature_needs_matching_nonempty_examples():
    apply, params, x, t = _mlp()
    with pytest.raises(ValueError, match="`estimate_curvature`: `x` and `y` must hold the same number"):
        sdlm.estimate_curvature(apply, jaxcnn.squared_error, params, x[:0], t[:0])  # the mean of none: NaN
    with pytest.raises(ValueError, match=r"got shapes \(4, 4\) and \(3, 3\)"):
        sdlm.estimate_curvature(apply, jaxcnn.squared_error, params, x[:4], t[:3])
    labels = [0, 1, 1, 0]  # vmapped element by element: vmap's own error about a rank-0 argument (audit)
    with pytest.raises(TypeError, match=r"`estimate_curvature`: `y` must be an array, got a list; wrap it"):
        sdlm.estimate_curvature(apply, jaxcnn.softmax_cross_entropy, params, x[:4], labels)


def _mlp():
    def apply(p, x):
        return jaxcnn.tanh(jaxcnn.dense(jaxcnn.tanh(jaxcnn.dense(x, p["w1"], p["b1"])), p["w2"], p["b2"]))

    params = {"w1": normal(0, (4, 6), jnp.float32) * 0.5, "b1": jnp.zeros(6),
              "w2": normal(1, (6, 3), jnp.float32) * 0.5, "b2": jnp.zeros(3)}
    x = normal(2, (32, 4), jnp.float32)
    t = jnp.where(normal(3, (32, 3), jnp.float32) > 0, 1.0, -1.0)
    return apply, params, x, t


def test_estimate_is_the_mean_of_per_example_curvatures():
    apply, params, x, t = _mlp()
    estimate = jax.jit(sdlm.estimate_curvature, static_argnums=(0, 1))
    got = estimate(apply, jaxcnn.squared_error, params, x[:5], t[:5])
    one = jax.jit(lambda p, xi, ti: curvature.diag_gauss_newton(
        lambda p: jaxcnn.squared_error(apply(p, xi[None]), ti[None]), p))
    per = [one(params, x[i], t[i]) for i in range(5)]
    assert_close(got, jax.tree.map(lambda *h: sum(h) / 5, *per))
    # with Eq 9 summed over the batch it is also one batched curvature pass divided by the count
    batch = jax.jit(lambda p: curvature.diag_gauss_newton(
        lambda p: jaxcnn.squared_error(apply(p, x[:5]), t[:5]), p))(params)
    assert_close(got, jax.tree.map(lambda h: h / 5, batch))
    assert all(bool(jnp.all(h >= 0)) for h in jax.tree.leaves(got))


def test_sdlm_epoch_lowers_the_loss():
    apply, params, x, t = _mlp()
    opt = sdlm.sdlm(0.002)
    epoch = sdlm.make_sdlm_epoch(apply, jaxcnn.squared_error, opt)
    state = opt.init(params)

    def loss(p):
        return float(jaxcnn.squared_error(apply(p, x), t))

    before = loss(params)
    p = jax.tree.map(jnp.array, params)
    for e in range(5):
        p, state, _ = epoch(p, state, x, t, train.epoch_permutation(0, e, 32), jnp.arange(16))
    assert loss(p) < 0.8 * before
    assert float(jnp.max(state.hessian["b2"])) > 0  # the curvature was set


def test_fit_resume_reproduces_an_uninterrupted_run(tmp_path):
    apply, params, x, t = _mlp()
    kw = dict(epochs=3, seed=1, samples=8, eval_sets={"train": (x, t)}, progress=False)
    full = sdlm.fit(apply, jaxcnn.squared_error, sdlm.sdlm(0.002), params, (x, t), **kw)
    ckpt = tmp_path / "c.npz"
    sdlm.fit(apply, jaxcnn.squared_error, sdlm.sdlm(0.002), params, (x, t), checkpoint=ckpt,
             **{**kw, "epochs": 2})
    resumed = sdlm.fit(apply, jaxcnn.squared_error, sdlm.sdlm(0.002), params, (x, t), checkpoint=ckpt, **kw)
    assert resumed.start_epoch == 2 and len(resumed.history) == 3
    assert_close(resumed.params, full.params)
    assert full.history[-1]["train_loss"] < full.history[0]["train_loss"]
    with pytest.raises(ValueError, match="`sdlm.fit`: `batch_size` must be None"):
        sdlm.fit(apply, jaxcnn.squared_error, sdlm.sdlm(0.002), params, (x, t), batch_size=4, **kw)
    for seed, says in ((-1, "an int >= 0, got -1"), (2**32, "below 2\\*\\*32")):  # once OverflowErrors
        with pytest.raises(ValueError, match=f"`sdlm.fit`: `seed` must be {says}"):
            sdlm.fit(apply, jaxcnn.squared_error, sdlm.sdlm(0.002), params, (x, t), **{**kw, "seed": seed})
    # fewer epochs than the checkpoint holds: refused as by train.fit (it returned 3 epochs for 2)
    with pytest.raises(ValueError, match=r"`sdlm.fit`: checkpoint '.*c.npz' has 3 epochs, `epochs` is 2"):
        sdlm.fit(apply, jaxcnn.squared_error, sdlm.sdlm(0.002), params, (x, t), checkpoint=ckpt,
                 **{**kw, "epochs": 2})


def test_fit_stops_on_a_non_finite_evaluation_loss(tmp_path):
    """A NaN evaluation loss stops the run as `train.fit` does (it was recorded, and checkpointed,
    silently); the checkpoint keeps the last finite epoch."""
    apply, params, x, t = _mlp()
    ckpt = tmp_path / "c.npz"
    kw = dict(seed=1, samples=8, progress=False, checkpoint=ckpt)
    sdlm.fit(apply, jaxcnn.squared_error, sdlm.sdlm(0.002), params, (x, t), epochs=1,
             eval_sets={"test": (x, t)}, **kw)
    with pytest.raises(train.NonFiniteLossError, match="evaluation set 'test' became nan at epoch 2") as err:
        sdlm.fit(apply, jaxcnn.squared_error, sdlm.sdlm(0.002), params, (x, t), epochs=3,
                 eval_sets={"test": (x.at[0, 0].set(jnp.nan), t)}, **kw)
    assert err.value.kept_epoch == 1 and [h["epoch"] for h in err.value.history] == [1]


def _one_curvature(apply):
    return jax.jit(lambda p, xi, ti: curvature.diag_gauss_newton(
        lambda p: jaxcnn.squared_error(apply(p, xi[None]), ti[None]), p))


def _running_by_hand(apply, params, h0, x, t, order, eps, mu, gamma):
    """A Python loop of the running SDLM: the curvatures h_p met on the way, the final params and h."""
    one = _one_curvature(apply)
    grad = jax.jit(jax.grad(lambda p, xi, ti: jaxcnn.squared_error(apply(p, xi[None]), ti[None])))
    p, h, seen = params, h0, []
    for i in order:
        h_p = one(p, x[i], t[i])
        seen.append(h_p)
        h = jax.tree.map(lambda a, b: (1 - gamma) * a + gamma * b, h, h_p)
        g = grad(p, x[i], t[i])
        p = jax.tree.map(lambda w, gw, hw: w - eps / (mu + hw) * gw, p, g, h)
    return seen, p, h


def test_running_estimate_is_the_exponential_average_of_per_example_curvatures():
    apply, params, x, t = _mlp()
    gamma, eps, mu, order = 0.3, 0.002, 0.02, [5, 1, 7, 2, 9, 0]
    h0 = jax.tree.map(lambda w: jnp.full_like(w, 0.25), params)
    opt = sdlm.sdlm(eps, mu=mu)
    epoch = sdlm.make_sdlm_epoch(apply, jaxcnn.squared_error, opt, gamma=gamma)
    state = jax.tree.map(jnp.array, sdlm.set_curvature(opt.init(params), h0))  # donated: a copy
    p, state, losses = epoch(jax.tree.map(jnp.array, params), state, x, t, jnp.array(order))
    seen, p_hand, h_hand = _running_by_hand(apply, params, h0, x, t, order, eps, mu, gamma)
    k = len(order)  # closed form: (1-g)^k h0 + sum_j g (1-g)^(k-1-j) h_j
    closed = jax.tree.map(lambda a, *hs: (1 - gamma) ** k * a + sum(
        gamma * (1 - gamma) ** (k - 1 - j) * hj for j, hj in enumerate(hs)), h0, *seen)
    assert_close(state.hessian, closed)
    assert_close(h_hand, closed)
    assert_close(p, p_hand)  # each step used the h updated with its own example
    assert losses.shape == (k,) and int(state.count) == k
    assert not np.allclose(np.asarray(state.hessian["w2"]), 0.25)


def test_running_estimate_with_gamma_one_is_the_last_examples_curvature():
    apply, params, x, t = _mlp()
    opt = sdlm.sdlm(0.002)
    epoch = sdlm.make_sdlm_epoch(apply, jaxcnn.squared_error, opt, gamma=1.0)
    order = jnp.array([3, 4, 8])
    # `sample` resets h to the estimate first; with gamma = 1 nothing of it survives a step
    p, state, _ = epoch(jax.tree.map(jnp.array, params), opt.init(params), x, t, order, jnp.arange(16))
    h0 = sdlm.estimate_curvature(apply, jaxcnn.squared_error, params, x[:16], t[:16])
    seen, p_hand, _ = _running_by_hand(apply, params, h0, x, t, [3, 4, 8], 0.002, sdlm.DEFAULT_MU, 1.0)
    assert_close(state.hessian, seen[-1])
    assert_close(p, p_hand)
    # the pure helper alone, also inside a chain
    chain = optax.chain(optax.identity(), sdlm.sdlm(0.1))
    s = sdlm.running_curvature(sdlm.set_curvature(chain.init(params), h0), seen[0], 1.0)
    assert_close(s[1].hessian, seen[0])
    s = sdlm.running_curvature(sdlm.set_curvature(chain.init(params), h0), seen[0], 0.5)
    assert_close(s[1].hessian, jax.tree.map(lambda a, b: (a + b) / 2, h0, seen[0]))


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan"), True, "0.1"])
def test_bad_gamma(bad):
    apply, params, x, t = _mlp()
    opt = sdlm.sdlm(0.002)
    with pytest.raises(ValueError, match=r"`make_sdlm_epoch`: `gamma` must be a float in \(0, 1\]"):
        sdlm.make_sdlm_epoch(apply, jaxcnn.squared_error, opt, gamma=bad)
    with pytest.raises(ValueError, match="`sdlm.fit`: `gamma` must be"):
        sdlm.fit(apply, jaxcnn.squared_error, opt, params, (x, t), epochs=1, gamma=bad, progress=False)
    with pytest.raises(ValueError, match="`running_curvature`: `gamma` must be"):
        sdlm.running_curvature(opt.init(params), params, bad)


def test_fit_running_resumes_exactly_and_differs_from_the_per_pass_estimate(tmp_path):
    apply, params, x, t = _mlp()
    kw = dict(epochs=3, seed=1, samples=8, gamma=0.05, eval_sets={"train": (x, t)}, progress=False)
    full = sdlm.fit(apply, jaxcnn.squared_error, sdlm.sdlm(0.002), params, (x, t), **kw)
    ckpt = tmp_path / "c.npz"
    sdlm.fit(apply, jaxcnn.squared_error, sdlm.sdlm(0.002), params, (x, t), checkpoint=ckpt,
             **{**kw, "epochs": 2})
    resumed = sdlm.fit(apply, jaxcnn.squared_error, sdlm.sdlm(0.002), params, (x, t), checkpoint=ckpt, **kw)
    assert_close(resumed.params, full.params)
    assert_close(resumed.opt_state.hessian, full.opt_state.hessian)  # h_bar travels in the checkpoint
    assert full.history[-1]["train_loss"] < full.history[0]["train_loss"]
    per_pass = sdlm.fit(apply, jaxcnn.squared_error, sdlm.sdlm(0.002), params, (x, t),
                        **{**kw, "gamma": None})
    assert not np.allclose(np.asarray(per_pass.params["w1"]), np.asarray(full.params["w1"]))
    with pytest.raises(ValueError, match="sdlm_gamma"):  # a checkpoint of the other variant
        sdlm.fit(apply, jaxcnn.squared_error, sdlm.sdlm(0.002), params, (x, t), checkpoint=ckpt,
                 **{**kw, "gamma": None})


@pytest.fixture
def experiments_path(monkeypatch):
    """The scripts import experiments/_report.py from their folder (on sys.path when run)."""
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_experiment_{name}", ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # figures.py's dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_sdlm_seeds_script_tiny(tmp_path, capsys, standard_promotion, experiments_path):
    out = tmp_path / "s.json"
    code = _load("sdlm_seeds").main(["--seeds", "1", "--epochs", "2", "--train-per-class", "4",
                                     "--test-per-class", "2", "--no-cost", "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert [s["optimizer"] for s in result["summaries"]] == ["sgd", "sdlm"]
    assert [len(r["history"]) for r in result["runs"]] == [2, 2]
    assert "sdlm" in capsys.readouterr().out
    # the running estimate on a held-out part of the training digits
    code = _load("sdlm_seeds").main(["--seeds", "1", "--epochs", "2", "--train-per-class", "4",
                                     "--test-per-class", "2", "--optimizers", "sdlm", "--gamma", "0.1",
                                     "--validation", "10", "--no-cost", "--out", str(out)])
    result = json.loads(out.read_text())
    assert code == 0 and result["settings"]["gamma"] == 0.1 and len(result["runs"]) == 1
    assert "training on 30" in capsys.readouterr().out


def test_sdlm_seeds_keeps_the_finished_runs_when_one_diverges(tmp_path, capsys, standard_promotion,
                                                              experiments_path):
    """A run whose loss became non-finite ended the script with a traceback and no file: every
    finished seed was lost. Now the sweep stops there, writes what it has (strict JSON), exits 1."""
    out, script = tmp_path / "s.json", _load("sdlm_seeds")
    run = script.run

    def diverging(optimizer, seed, args, data):  # as fit reports a NaN loss (epoch 0, no checkpoint)
        if optimizer == "sgd":
            raise train.NonFiniteLossError("fit: the training loss became nan in epoch 0", epoch=0,
                                           kept_epoch=None, checkpoint=None, history=[])
        return run(optimizer, seed, args, data)

    script.run = diverging
    code = script.main(["--seeds", "2", "--epochs", "1", "--train-per-class", "4", "--test-per-class", "2",
                        "--optimizers", "sdlm", "sgd", "--no-cost", "--out", str(out)])
    result = json.loads(out.read_text(), parse_constant=lambda token: pytest.fail(f"bare {token}"))
    assert code == 1 and [r["optimizer"] for r in result["runs"]] == ["sdlm"]
    assert result["diverged"]["optimizer"] == "sgd" and result["diverged"]["seed"] == 0
    assert [s["optimizer"] for s in result["summaries"]] == ["sdlm"]
    assert "error: seed 0 sgd: " in capsys.readouterr().err


@pytest.mark.parametrize("script, argv, says", [
    ("sdlm_seeds", ["--seeds", "0"], "--seeds must be >= 1, got 0"),
    ("sdlm_seeds", ["--epochs", "0"], "--epochs must be >= 1, got 0"),
    ("sdlm_seeds", ["--samples", "0"], "--samples must be >= 1, got 0"),
    ("sdlm_seeds", ["--eps", "nan"], "--eps must be finite and > 0, got nan"),
    ("sdlm_seeds", ["--lr", "inf"], "--lr must be finite and > 0, got inf"),  # NonFiniteLossError after
    # seed 0's runs: the finished runs lost
    ("sdlm_seeds", ["--gamma", "1.5"], "--gamma must be in (0, 1], got 1.5"),
    ("sdlm_seeds", ["--validation", "40", "--train-per-class", "4"],
     "--validation must be in [0, 40), got 40"),
    ("sdlm_figure", ["--examples", "0"], "--examples must be >= 1, got 0"),
    ("sdlm_figure", ["--passes", "0"], "--passes must be >= 1, got 0"),
    ("sdlm_figure", ["--mu", "0"], "--mu must be finite and > 0, got 0.0"),
    ("sdlm_figure", ["--train-per-class", "301"],  # named a --test-per-class the script did not have
     "--train-per-class + --test-per-class must be at most the 500 embedded digits of each class, "
     "got 301 + 200"),
    ("lecun1989", ["--lr", "nan"], "--lr must be finite and > 0, got nan"),  # trained, wrote "lr": NaN
    ("lecun1989", ["--train-size", "-5"], "--train-size must be >= 1, got -5"),  # NumPy's error, late
    ("lecun1989", ["--train-per-class", "600"], "must be at most the 500 embedded digits of each class"),
    ("lecun1989", ["--seed", "-1"], "--seed must be finite and >= 0, got -1"),
    ("lenet5", ["--weight-decay", "nan"], "--weight-decay must be finite and >= 0, got nan"),  # accepted
    ("lenet5", ["--train-per-class", "0"], "--train-per-class must be >= 1, got 0"),  # blamed --batch-size
    ("lenet5", ["--max-shift", "3000000000"], "--max-shift must be below the digits' 28 pixels"),  # JAX's
    # OverflowError
    ("sdlm_figure", ["--examples", "501", "--train-per-class", "50"],
     "--examples must be at most the 500 training digits, got 501"),
    ("sdlm_figure", ["--train-per-class", "4"], "--samples must be at most the 40 training digits, got 500"),
])
def test_scripts_refuse_bad_settings_before_any_work(script, argv, says, capsys, experiments_path):
    """argparse's usage error (exit status 2), before a single pass is trained: `--seeds 0` used to
    end in ``min() arg is an empty sequence`` after the work, `--gamma 1.5` in sdlm.fit's error
    after a whole SGD run, `--examples 0` in NaN results."""
    with pytest.raises(SystemExit) as exit_info:
        _load(script).parse_args(argv)
    assert exit_info.value.code == 2 and says in capsys.readouterr().err


def test_scripts_refuse_outputs_they_cannot_write_before_any_work(tmp_path, capsys, experiments_path):
    """Each was found when the results were written, after the work: NotADirectoryError after
    lecun1989's first epoch, FileExistsError after sdlm_figure's runs, IsADirectoryError after every
    sdlm_seeds run and every benchmark row; benchmark's --only matching no row ran nothing and
    overwrote the default results file with an empty table."""
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    file_, folder = str(tmp_path / "file"), str(tmp_path / "dir")
    cases = [("lecun1989", ["--out", file_], "--out '" + file_ + "' cannot hold the outputs: '"),
             ("lenet5", ["--out", f"{file_}/run"], "is not a folder"),
             ("sdlm_figure", ["--out", file_], "cannot hold the outputs"),
             ("figures", ["--out", file_], "cannot hold the outputs"),
             ("sdlm_seeds", ["--out", folder], "--out '" + folder + "' cannot be written: '"),
             ("benchmark", ["--json", folder], "exists and is not a file"),
             ("benchmark", ["--only", "zzz"], "--only 'zzz' matches no row of the suite: resnet 3x3"),
             ("benchmark", ["--only", ","], "--only ',' matches no row"),
             ("benchmark", ["--suite", "legacy", "--only", "LeNet"],
              "--only selects rows of the shapes suite")]
    for script, argv, says in cases:
        module = _load(script)
        with pytest.raises(SystemExit) as exit_info:
            (module.main if script == "benchmark" else module.parse_args)(argv)
        assert exit_info.value.code == 2 and says in capsys.readouterr().err, (script, argv)
    assert (tmp_path / "file").read_text() == "x" and not any((tmp_path / "dir").iterdir())


def test_lecun1989_sdlm_tiny(tmp_path, monkeypatch, standard_promotion, experiments_path):
    out = tmp_path / "run"
    code = _load("lecun1989").main(["--optimizer", "sdlm", "--epochs", "2", "--train-per-class", "4",
                                    "--test-per-class", "2", "--sdlm-samples", "8", "--out", str(out),
                                    "--no-progress"])
    assert code == 0  # both paths (custom and reference gradients, custom curvature) agree
    results = json.loads((out / "results.json").read_text())
    assert all("SDLM" in r["optimizer"] and len(r["history"]) == 2 for r in results["runs"])
    # figures.py --run reads its checkpoint too (it knew SGD's optimizer states only); registered, as
    # its dataclasses look their module up
    spec = importlib.util.spec_from_file_location("_experiment_figures", ROOT / "experiments" / "figures.py")
    figures = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, figures)
    spec.loader.exec_module(figures)
    params, activation, note = figures._load_run(out)
    assert activation == "tanh" and "pass 2" in note and params["H1"]["w"].shape == (5, 5, 1, 12)
