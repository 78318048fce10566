"""jaxcnn.sdlm: the SDLM update against a hand computation, the curvature estimate, an epoch that
lowers the loss, fit/resume, and the experiment scripts on tiny settings."""

from __future__ import annotations

import importlib.util
import json
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


def test_lecun_schedule_ratios(standard_promotion):
    sched = sdlm.lecun_schedule(5e-4, steps_per_pass=10)
    got = [float(sched(10 * p)) for p in range(14)]  # first update of passes 1..14
    want = [5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 2
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("bad", [0.0, -1.0, True])
def test_bad_mu(bad):
    with pytest.raises(ValueError, match="`sdlm`: `mu` must be a positive number"):
        sdlm.sdlm(0.1, mu=bad)


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


@pytest.fixture
def experiments_path(monkeypatch):
    """The scripts import experiments/_report.py from their folder (on sys.path when run)."""
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_experiment_{name}", ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
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


def test_lecun1989_sdlm_tiny(tmp_path, standard_promotion, experiments_path):
    out = tmp_path / "run"
    code = _load("lecun1989").main(["--optimizer", "sdlm", "--epochs", "2", "--train-per-class", "4",
                                    "--test-per-class", "2", "--sdlm-samples", "8", "--out", str(out),
                                    "--no-progress"])
    assert code == 0  # both paths (custom and reference gradients, custom curvature) agree
    results = json.loads((out / "results.json").read_text())
    assert all("SDLM" in r["optimizer"] and len(r["history"]) == 2 for r in results["runs"])
