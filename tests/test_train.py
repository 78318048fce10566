"""jaxcnn.train: steps, the per-example scan epoch, evaluation, checkpoints, fit/resume, NaN stops,
the progress hook, and data parallelism over 4 fake CPU devices (in a subprocess: the device count
is fixed at start)."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxcnn
from jaxcnn import models, train
from tests.tolerances import assert_close, normal

MODEL = models.lecun1989()
APPLY = MODEL.apply  # ops=jaxcnn: the custom rules
N = 12  # training examples of the fit tests (one shape: compiled once for the module)
# Shared optimizer objects: the same (apply, loss, optimizer) gives the same jitted step, so the
# tests below compile each step/epoch once.
SGD = optax.sgd(0.01)
ADAM = optax.adam(3e-3)
MOMENTUM = optax.sgd(0.02, momentum=0.9)


def _data(n, seed=0):
    x = jnp.tanh(normal(seed, (n, 16, 16, 1), jnp.float32))
    labels = jnp.asarray(np.random.default_rng(seed).integers(0, 10, n), jnp.int32)
    t = jnp.where(labels[:, None] == jnp.arange(10, dtype=jnp.int32)[None, :], 1.0, -1.0)
    return x, labels, t.astype(jnp.float32)


def _params(seed=0):
    return MODEL.init(jax.random.key(seed))


def _equal(a, b):
    return all(np.array_equal(np.asarray(u), np.asarray(v))
               for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True))


def _mean_se(y, t):
    return jaxcnn.squared_error(y, t, reduction="mean")


@pytest.fixture
def standard_promotion():
    """optax's Adam computes ``decay ** count`` (a Python float and an int32), which strict dtype
    promotion refuses; tests that use Adam run with JAX's default (standard) promotion."""
    with jax.numpy_dtype_promotion("standard"):
        yield


# ------------------------------------------------------------------------------ train steps
@pytest.mark.parametrize("optimizer", [MOMENTUM, ADAM], ids=["sgd-momentum", "adam"])
def test_train_step_lowers_loss_with_any_optimizer(optimizer, standard_promotion):
    x, _, t = _data(8)
    step = train.make_train_step(APPLY, _mean_se, optimizer)
    params = _params()
    opt_state = optimizer.init(params)
    losses = []
    for _ in range(12):
        params, opt_state, loss = step(params, opt_state, x, t)
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0]
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, _params())


def test_train_step_donates_params_and_state(standard_promotion):
    x, _, t = _data(8)
    params = _params()
    opt_state = ADAM.init(params)
    step = train.make_train_step(APPLY, _mean_se, ADAM)
    new_params, new_state, _ = step(params, opt_state, x, t)
    assert params["H1"]["w"].is_deleted() and opt_state[0].mu["H1"]["w"].is_deleted()
    assert not new_params["H1"]["w"].is_deleted()


def test_make_train_step_rejects_non_optimizer():
    with pytest.raises(TypeError, match="`make_train_step`: `optimizer` must be an optax"):
        train.make_train_step(APPLY, _mean_se, 0.1)


def test_sgd_epoch_equals_python_loop_of_single_example_steps():
    x, _, t = _data(N)
    order = jnp.asarray([3, 0, 7, 11, 1, 5, 2, 9, 4, 10, 6, 8], jnp.int32)
    epoch = train.make_sgd_epoch(APPLY, jaxcnn.squared_error, SGD)
    p_scan, _, losses = epoch(_params(), SGD.init(_params()), x, t, order)

    step = train.make_train_step(APPLY, jaxcnn.squared_error, SGD)
    params, state = _params(), SGD.init(_params())
    loop_losses = []
    for i in np.asarray(order):
        params, state, loss = step(params, state, x[i : i + 1], t[i : i + 1])
        loop_losses.append(loss)
    assert losses.shape == (N,)
    assert_close(losses, jnp.stack(loop_losses))
    assert_close(p_scan, params)

    # the plain rule w <- w - lr * dE/dw, written out
    grad = jax.jit(jax.grad(lambda p, xi, ti: jaxcnn.squared_error(APPLY(p, xi), ti)))
    p = _params()
    for i in np.asarray(order):
        g = grad(p, x[i : i + 1], t[i : i + 1])
        p = jax.tree.map(lambda w, d: w - 0.01 * d, p, g)
    assert_close(p_scan, p)


# ------------------------------------------------------------------------------- evaluation
def test_evaluate_hand_made_case():
    logits = jnp.asarray(
        [[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.5]],
        jnp.float32,
    )
    labels = jnp.asarray([0, 1, 2, 2, 0], jnp.int32)  # the last two are wrong
    identity = lambda params, x: x  # noqa: E731

    def expected_loss():
        z = np.asarray(logits, np.float64)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        return float(-logp[np.arange(5), np.asarray(labels)].mean())

    for bs in (1, 2, 5, 64):  # 5 = 2 + 2 + 1 exercises the padded, masked last batch
        ev = train.evaluate(identity, jaxcnn.softmax_cross_entropy, {}, logits, labels, batch_size=bs)
        assert ev.errors == 2 and ev.count == 5 and ev.error == pytest.approx(0.4)
        assert ev.loss == pytest.approx(expected_loss(), rel=1e-6)
    # +-1 targets: the label is the argmax of the target row
    targets = jnp.where(labels[:, None] == jnp.arange(3, dtype=jnp.int32)[None, :], 1.0, -1.0)
    ev = train.evaluate(identity, jaxcnn.squared_error, {}, logits, targets.astype(jnp.float32), batch_size=2)
    assert ev.errors == 2
    per_example = 0.5 * ((np.asarray(logits) - np.asarray(targets)) ** 2).sum(1)
    assert ev.loss == pytest.approx(per_example.mean(), rel=1e-6)
    with pytest.raises(ValueError, match="`evaluate`: `y` must be labels"):
        train.evaluate(identity, jaxcnn.softmax_cross_entropy, {}, logits, labels[:3])


# ------------------------------------------------------------------------------ checkpoints
def _state():
    optimizer = optax.adam(1e-3)
    params = _params()
    return {"params": params, "opt_state": optimizer.init(params)}


def test_checkpoint_round_trip(tmp_path, standard_promotion):
    state = _state()
    path = tmp_path / "sub" / "ckpt.npz"
    train.save_checkpoint(path, state, {"epoch": 3, "history": [{"a": 1.5}]})
    loaded, meta = train.load_checkpoint(path, _state())
    assert meta["epoch"] == 3 and meta["history"] == [{"a": 1.5}]
    assert meta["format"] == train.CHECKPOINT_FORMAT
    assert jax.tree.structure(loaded) == jax.tree.structure(state)
    assert _equal(loaded, state)
    assert jax.tree.map(lambda a: a.dtype, loaded) == jax.tree.map(lambda a: a.dtype, state)
    with np.load(path, allow_pickle=False) as archive:  # readable without pickle, keyed by tree path
        assert "params/H1/w" in archive.files


def test_checkpoint_of_bfloat16_and_float8_leaves_loads_back(tmp_path):
    """NumPy's .npz keeps only the raw bytes of bfloat16 and float8 (dtype ``|V2``, ``|V1``): such a
    checkpoint was written but refused on load ("dtype |V2; the template expects bfloat16")."""
    path = tmp_path / "low.npz"
    state = {"params": {"w": jnp.arange(6, dtype=jnp.bfloat16).reshape(2, 3) / 3,
                        "s": jnp.full((4,), 1.5, jnp.float8_e4m3fn), "b": jnp.ones(3, jnp.float32)}}
    train.save_checkpoint(path, state, {"epoch": 1})
    loaded, meta = train.load_checkpoint(path, state)
    assert jax.tree.map(lambda a: a.dtype, loaded) == jax.tree.map(lambda a: a.dtype, state)
    assert _equal(loaded, state) and meta == {"format": train.CHECKPOINT_FORMAT, "epoch": 1}
    other = {"params": {**state["params"], "w": jnp.zeros((2, 3), jnp.float16)}}  # same width, not the same
    with pytest.raises(ValueError, match="low.npz.*'params/w' has shape \\(2, 3\\) and dtype bfloat16"):
        train.load_checkpoint(path, other)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch, standard_promotion):
    path = tmp_path / "ckpt.npz"
    train.save_checkpoint(path, _state(), {"epoch": 1})
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    state = _state()
    state["params"]["H1"]["w"] = state["params"]["H1"]["w"] + 1
    with pytest.raises(OSError, match="simulated crash"):
        train.save_checkpoint(path, state, {"epoch": 2})
    assert path.read_bytes() == before  # the old checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]  # no temporary file left
    with pytest.raises(OSError):
        train.save_checkpoint(tmp_path / "new.npz", state, {"epoch": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]


def test_checkpoint_corrupt_or_mismatched_raises_naming_the_file(tmp_path, standard_promotion):
    bad = tmp_path / "garbage.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="garbage.npz"):
        train.load_checkpoint(bad, _state())

    path = tmp_path / "ckpt.npz"
    train.save_checkpoint(path, _state(), {"epoch": 1})
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated.npz"):
        train.load_checkpoint(truncated, _state())

    other = _state()
    other["params"]["H3"]["w"] = jnp.zeros((192, 31), jnp.float32)
    with pytest.raises(ValueError, match=r"ckpt.npz.*'params/H3/w' has shape \(192, 30\)"):
        train.load_checkpoint(path, other)
    other = _state()
    other["params"]["out"]["b"] = jnp.zeros((10,), jnp.bfloat16)
    with pytest.raises(ValueError, match="ckpt.npz.*dtype float32"):
        train.load_checkpoint(path, other)
    other = _state()
    other["params"]["extra"] = {"w": jnp.zeros((2,), jnp.float32)}
    with pytest.raises(ValueError, match=r"ckpt.npz.*missing keys \['params/extra/w'\]"):
        train.load_checkpoint(path, other)
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        train.load_checkpoint(tmp_path / "nowhere.npz", _state())


def test_checkpoint_holds_prng_keys_and_refuses_python_objects(tmp_path):
    """A typed PRNG key in the optimizer state (`optax.add_noise`) made NumPy's TypeError at the first
    save, after an epoch of training; a Python object leaf was pickled by `np.savez` despite "no
    pickle", and failed only on load."""
    noisy = optax.chain(optax.add_noise(0.01, 0.5, 0), optax.sgd(0.1))
    params = {"w": jnp.ones((3, 2), jnp.float32)}
    state = {"params": params, "opt_state": noisy.init(params)}
    path = tmp_path / "keys.npz"
    train.save_checkpoint(path, state, {"epoch": 1})
    loaded, _ = train.load_checkpoint(path, state)
    key, want = loaded["opt_state"][0].rng_key, state["opt_state"][0].rng_key
    assert jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    assert jax.random.key_impl(key) == jax.random.key_impl(want)
    np.testing.assert_array_equal(jax.random.key_data(key), jax.random.key_data(want))
    no_key = {"params": params, "opt_state": (noisy.init(params)[0].count,)}  # no key where the file has one
    with pytest.raises(ValueError, match=r"keys.npz' holds PRNG keys \{'opt_state/0/rng_key': 'threefry"):
        train.load_checkpoint(path, no_key)
    with pytest.raises(ValueError, match=r"`save_checkpoint`: leaf 'params/f' must be an array of numbers, "
                                         r"got builtin_function_or_method"):
        train.save_checkpoint(tmp_path / "object.npz", {"params": {"f": print}}, {})
    assert not (tmp_path / "object.npz").exists()


def test_checkpoint_files_of_the_wrong_kind_get_the_librarys_error(tmp_path):
    """Each was a raw AttributeError, TypeError or MemoryError (or a false "does not exist")."""
    state = {"params": {"w": jnp.ones((3,), jnp.float32)}}
    path = tmp_path / "ckpt.npz"
    train.save_checkpoint(path, state, {"epoch": 1})
    with np.load(path) as archive:
        entries = dict(archive)
    np.savez(tmp_path / "dtypes.npz", **{**entries, "__dtypes__": np.array("[1]")})
    with pytest.raises(ValueError, match=r"dtypes.npz' has no valid '__dtypes__' entry: expected a JSON"):
        train.load_checkpoint(tmp_path / "dtypes.npz", state)
    with open(tmp_path / "plain.npz", "wb") as f:  # a .npy file under a checkpoint's name
        np.save(f, np.zeros(3))
    with pytest.raises(ValueError, match=r"plain.npz' is not a readable .npz checkpoint"):
        train.load_checkpoint(tmp_path / "plain.npz", state)
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(ValueError, match=r"dir.npz' is not a file"):
        train.load_checkpoint(tmp_path / "dir.npz", state)
    with pytest.raises(ValueError, match=r"`fit`: `checkpoint` must be a file path that can be written, got "
                                         r"'.*dir.npz': '.*dir.npz' exists and is not a file"):
        _fit(tmp_path, 1, checkpoint_path=tmp_path / "dir.npz")
    # under a file (a script's --out naming a file): NotADirectoryError after the first epoch before
    with pytest.raises(ValueError, match=r"`checkpoint` must be a file path that can be written, got "
                                         r"'.*plain.npz/run/c.npz': '.*plain.npz' is not a folder"):
        _fit(tmp_path, 1, checkpoint_path=tmp_path / "plain.npz" / "run" / "c.npz")


# ---------------------------------------------------------------------------------- fit
def _noise(key, xb):
    """A seeded augmentation (module level: one compilation for every fit below)."""
    return xb + 0.05 * jax.random.normal(key, xb.shape)


def _fit(tmp_path, epochs, *, minibatch=False, checkpoint=True, x=None, checkpoint_path=None, **kwargs):
    xs, labels, t = _data(N)
    x = xs if x is None else x
    if minibatch:  # minibatches, Adam, and a seeded augmentation
        kwargs = {"batch_size": 4, "augment": _noise, **kwargs}
        optimizer, loss_fn = ADAM, _mean_se
    else:
        optimizer, loss_fn = SGD, jaxcnn.squared_error
    return train.fit(
        APPLY, loss_fn, optimizer, _params(), (x, t), epochs=epochs, seed=3,
        eval_sets={"test": (xs[:7], t[:7])}, eval_loss_fn=_mean_se,
        checkpoint=(checkpoint_path or tmp_path / "ckpt.npz") if checkpoint else None,
        **{"progress": False, **kwargs},
    )


@pytest.mark.parametrize("minibatch", [False, True], ids=["per-example", "minibatch-augment"])
def test_resume_reproduces_uninterrupted_run_exactly(tmp_path, minibatch, standard_promotion):
    full = _fit(tmp_path, 3, minibatch=minibatch, checkpoint=False)
    first = _fit(tmp_path, 2, minibatch=minibatch)
    assert first.start_epoch == 0 and len(first.history) == 2
    resumed = _fit(tmp_path, 3, minibatch=minibatch)
    assert resumed.start_epoch == 2
    assert _equal(resumed.params, full.params)
    assert _equal(resumed.opt_state, full.opt_state)
    drop = lambda h: {k: v for k, v in h.items() if k != "seconds"}  # noqa: E731
    assert [drop(h) for h in resumed.history] == [drop(h) for h in full.history]
    assert [h["epoch"] for h in full.history] == [1, 2, 3]
    assert set(full.history[0]) == {"epoch", "train_loss_running", "test_loss", "test_error", "seconds"}
    assert full.history[-1]["train_loss_running"] < full.history[0]["train_loss_running"]


def test_resume_refuses_a_different_run(tmp_path):
    _fit(tmp_path, 1, config={"lr": 0.01})
    with pytest.raises(ValueError, match="ckpt.npz' was written with config="):
        _fit(tmp_path, 2, config={"lr": 0.02})
    with pytest.raises(ValueError, match="written with seed=3"):
        train.fit(APPLY, jaxcnn.squared_error, SGD, _params(), _data(N)[::2], epochs=2, seed=1,
                  checkpoint=tmp_path / "ckpt.npz", config={"lr": 0.01}, progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    good = _fit(tmp_path, 1)
    # the same run, continued on data with one NaN pixel: epoch 2 meets it and stops
    x, _, _ = _data(N)
    poisoned = x.at[5, 3, 4, 0].set(jnp.nan)
    message = r"became nan at epoch 2.*ckpt.npz' keeps epoch 1, the best finite evaluation"
    with pytest.raises(train.NonFiniteLossError, match=message) as caught:
        _fit(tmp_path, 3, x=poisoned)
    assert issubclass(train.NonFiniteLossError, FloatingPointError)
    assert caught.value.epoch == 2 and caught.value.kept_epoch == 1 and len(caught.value.history) == 1
    template = {"params": _params(), "opt_state": SGD.init(_params())}
    state, meta = train.load_checkpoint(tmp_path / "ckpt.npz", template)
    assert meta["epoch"] == 1 and len(meta["history"]) == 1
    assert _equal(state["params"], good.params)
    # without a checkpoint the message says so
    with pytest.raises(train.NonFiniteLossError, match="no checkpoint was written"):
        _fit(tmp_path, 1, x=poisoned, checkpoint=False)


def test_resume_with_fewer_epochs_than_the_checkpoint_is_refused(tmp_path):
    """It used to train nothing, warn nothing and return the checkpoint's longer history."""
    _fit(tmp_path, 3)
    with pytest.raises(ValueError, match=r"`fit`: checkpoint '.*ckpt.npz' has 3 epochs, `epochs` is 2; "
                                         r"pass epochs >= 3 or start without resume"):
        _fit(tmp_path, 2)
    assert len(_fit(tmp_path, 2, resume=False).history) == 2  # starting afresh is allowed
    assert _fit(tmp_path, 2).start_epoch == 2  # the fresh run's checkpoint resumes
    # a checkpoint of the right arrays without fit's record: the library's error (a bare KeyError)
    state = {"params": _params(), "opt_state": SGD.init(_params())}
    for meta, says in (({"epoch": 1}, "epoch=1 and history=None"), ({"epoch": 2, "history": [{}]},
                                                                      "epoch=2 and 1 history entries")):
        train.save_checkpoint(tmp_path / "ckpt.npz", state, meta)
        pattern = f"`fit`: checkpoint '.*ckpt.npz' has no training record.*{says}"
        with pytest.raises(ValueError, match=pattern):
            _fit(tmp_path, 3)


def test_numpy_settings_are_saved_as_their_values(tmp_path, standard_promotion):
    """A NumPy int `batch_size` or NumPy scalars in `config` passed the checks, then made json's
    TypeError at the first save, after an epoch of training."""
    result = _fit(tmp_path, 1, minibatch=True, batch_size=np.int64(4), config={"lr": np.float32(0.5)})
    assert len(result.history) == 1
    template = {"params": _params(), "opt_state": ADAM.init(_params())}
    _, meta = train.load_checkpoint(tmp_path / "ckpt.npz", template)
    assert meta["batch_size"] == 4 and meta["config"] == {"lr": 0.5}
    assert _fit(tmp_path, 2, minibatch=True, config={"lr": 0.5}).start_epoch == 1  # the same run, resumed
    with pytest.raises(ValueError, match=r"`fit`: `config` must be None or a dict of JSON values: .*object"):
        _fit(tmp_path, 1, config={"f": object()}, checkpoint=False)
    with pytest.raises(ValueError, match=r"`fit`: `config` must be None or a dict of JSON values, got list"):
        _fit(tmp_path, 1, config=[1, 2], checkpoint=False)


def test_resume_refuses_a_malformed_record_or_settings_it_does_not_have(tmp_path):
    """A history entry that is not a dict of numbers was an AttributeError or float()'s ValueError on
    resume; a checkpoint with settings this run lacks (`jaxcnn.sdlm.fit`'s, say) resumed silently."""
    first = _fit(tmp_path, 1)
    template = {"params": _params(), "opt_state": SGD.init(_params())}
    state, meta = train.load_checkpoint(tmp_path / "ckpt.npz", template)
    for bad in ({"history": [1]}, {"history": [{"train_loss_running": "abc"}]}, {"train_seconds": "x"}):
        train.save_checkpoint(tmp_path / "ckpt.npz", state, {**meta, **bad})
        with pytest.raises(ValueError, match="ckpt.npz' has no training record"):
            _fit(tmp_path, 2)
    train.save_checkpoint(tmp_path / "ckpt.npz", state, {**meta, "sdlm_gamma": 0.1})
    with pytest.raises(ValueError, match=r"ckpt.npz' was written with settings this run does not have: "
                                         r"\['sdlm_gamma'\]"):
        _fit(tmp_path, 2)
    train.save_checkpoint(tmp_path / "ckpt.npz", state, meta)
    assert _equal(_fit(tmp_path, 1).params, first.params)  # the checkpoint as written resumes


def test_data_and_evaluation_arguments_are_checked_before_training(tmp_path):
    """A triple was a bare "too many values to unpack", an eval set of one array the same, and a bad
    `eval_batch_size` without eval sets int()'s error; `save_checkpoint`'s meta could overwrite
    its format, writing a file it then refused."""
    x, _, t = _data(N)
    fit = functools.partial(train.fit, APPLY, jaxcnn.squared_error, SGD, _params(), epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"`fit`: `train` must be a pair \(x, y\), got tuple of 3"):
        fit((x, t, t))
    with pytest.raises(ValueError, match=r"`fit`: `eval_sets\['t'\]` must be a pair \(x, y\), got ArrayImpl "
                                         r"of shape \(12, 16, 16, 1\)"):
        fit((x, t), eval_sets={"t": x})
    with pytest.raises(ValueError, match="`fit`: `eval_sets` must be None or a dict"):
        fit((x, t), eval_sets=[(x, t)])
    with pytest.raises(ValueError, match="`fit`: `eval_batch_size` must be a positive int, got 'x'"):
        fit((x, t), eval_batch_size="x")
    state = {"params": {"w": jnp.ones(2, jnp.float32)}}
    train.save_checkpoint(tmp_path / "f.npz", state, {"format": "mine", "epoch": 1})
    assert train.load_checkpoint(tmp_path / "f.npz", state)[1]["format"] == train.CHECKPOINT_FORMAT


def test_non_finite_parameters_under_a_finite_loss_stop_the_run(tmp_path):
    """sqrt(|y - t|) at y == t: the loss is 0, its gradient infinite. The run returned, and saved,
    infinite parameters with a training loss of 0."""
    x = jnp.ones((4, 3), jnp.float32)
    params = {"w": jnp.zeros((3, 2), jnp.float32)}

    def linear(p, xb):
        return xb @ p["w"]

    def root_loss(y, t):
        return jnp.mean(jnp.sqrt(jnp.abs(y - t)))

    with pytest.raises(train.NonFiniteLossError, match=r"a parameter became NaN or infinite at epoch 1 "
                                                       r"while the training loss stayed finite"):
        train.fit(linear, root_loss, optax.sgd(0.1), params, (x, jnp.zeros((4, 2), jnp.float32)), epochs=1,
                  batch_size=4, checkpoint=tmp_path / "root.npz", progress=False)
    assert not (tmp_path / "root.npz").exists()


def test_resumed_train_seconds_count_every_epoch(tmp_path):
    first = _fit(tmp_path, 2)
    resumed = _fit(tmp_path, 3)
    assert resumed.start_epoch == 2 and resumed.train_seconds > first.train_seconds
    assert resumed.train_seconds == pytest.approx(sum(h["seconds"] for h in resumed.history), rel=1e-9)
    template = {"params": _params(), "opt_state": SGD.init(_params())}
    _, meta = train.load_checkpoint(tmp_path / "ckpt.npz", template)
    assert meta["train_seconds"] == pytest.approx(resumed.train_seconds, rel=1e-9)


def _exploding_fit(tmp_path):
    """A linear model whose learning rate jumps from 0.05 to 1.5 after the first epoch: the loss
    grows by ~1e5 per epoch (1e31 at epoch 6, 90% wrong) until it overflows at epoch 7."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((12, 4)).astype(np.float32))
    t = jnp.asarray(rng.standard_normal((12, 3)).astype(np.float32))
    params = {"w": jnp.zeros((4, 3), jnp.float32), "b": jnp.zeros((3,), jnp.float32)}
    optimizer = optax.sgd(lambda count: jnp.where(count < 12, jnp.float32(0.05), jnp.float32(1.5)))

    def linear(p, xb):
        return jaxcnn.dense(xb, p["w"], p["b"])

    run = functools.partial(train.fit, linear, jaxcnn.squared_error, optimizer, params, (x, t), seed=0,
                            eval_sets={"train": (x, t)}, checkpoint=tmp_path / "ckpt.npz", progress=False)
    return run, {"params": params, "opt_state": optimizer.init(params)}


def test_divergence_keeps_the_best_finite_checkpoint(tmp_path):
    """The last checkpoint before a non-finite loss can hold an exploded model (loss 1e31); the one
    kept is the epoch of the best finite evaluation, and the message says which and what to do."""
    run, template = _exploding_fit(tmp_path)
    first = run(epochs=1, checkpoint=None)
    with pytest.raises(train.NonFiniteLossError) as caught:
        run(epochs=12)
    err = caught.value
    losses = [h["train_loss"] for h in err.history]
    assert err.epoch == len(losses) + 1 and len(losses) >= 4  # several finite epochs, then a stop
    assert losses[-1] > 1e20 * losses[0]  # the last finite epoch had exploded
    assert err.kept_epoch == 1 and err.checkpoint == tmp_path / "ckpt.npz"
    message = str(err)
    assert f"epoch {err.epoch}" in message
    assert "keeps epoch 1, the best finite evaluation (train_loss" in message
    assert "Lower the learning rate" in message and "without resume" in message
    state, meta = train.load_checkpoint(tmp_path / "ckpt.npz", template)
    assert meta["epoch"] == 1 and [h["epoch"] for h in meta["history"]] == [1]
    assert _equal(state["params"], first.params)


def test_fit_progress_and_timings(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # the library never needs tqdm
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    x, labels, t = _data(N)
    result = train.fit(APPLY, jaxcnn.squared_error, SGD, _params(), (x, t), epochs=2, seed=3,
                       eval_sets={"test": (x[:7], t[:7])}, eval_loss_fn=_mean_se, desc="tiny")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" test ")[0] for line in lines] == ["tiny epoch 1/2", "tiny epoch 2/2"]
    assert all(re.fullmatch(r"tiny epoch \d/2 test \d+\.\d\d% loss test \S+ run \S+", line) for line in lines)
    assert result.compile_seconds >= 0 and result.train_seconds > 0
    with pytest.raises(ValueError, match="`fit`: `batch_size` \\(=13\\) exceeds"):
        train.fit(APPLY, jaxcnn.squared_error, SGD, _params(), (x, t), epochs=1, batch_size=13)
    with pytest.raises(ValueError, match="`fit`: `augment` and `data_parallel` need minibatches"):
        train.fit(APPLY, jaxcnn.squared_error, SGD, _params(), (x, t), epochs=1, augment=_noise)
    with pytest.raises(ValueError, match=r"`fit`: `seed` must be below 2\*\*32, got 4294967296"):
        train.fit(APPLY, jaxcnn.squared_error, SGD, _params(), (x, t), epochs=1, seed=2**32)  # OverflowError


class _Recorder:
    """A `train.Progress` that records what it is told."""

    def __init__(self):
        self.calls = []

    def start(self, **kw):
        self.calls.append(("start", kw))

    def advance(self, n):
        self.calls.append(("advance", n))

    def epoch_done(self, record, epochs):
        self.calls.append(("epoch", record["epoch"], epochs))

    def close(self):
        self.calls.append(("close",))


def test_fit_reports_to_a_progress_hook(tmp_path, standard_promotion):
    recorder = _Recorder()
    _fit(tmp_path, 2, minibatch=True, checkpoint=False, progress=recorder, desc="hook")
    assert recorder.calls[0] == ("start", {"desc": "hook", "total": 6, "initial": 0, "unit": "step"})
    others = [c for c in recorder.calls[1:] if c[0] != "advance"]
    assert others == [("epoch", 1, 2), ("epoch", 2, 2), ("close",)]
    assert sum(c[1] for c in recorder.calls if c[0] == "advance") == 6  # 3 steps of 4 per epoch
    with pytest.raises(TypeError, match="`fit`: `progress` must be a bool or a Progress"):
        _fit(tmp_path, 1, checkpoint=False, progress="tqdm")


def test_epoch_summary_puts_error_rates_first():
    record = {"epoch": 3, "train_loss_running": 0.0121, "train_loss": 0.00253, "train_error": 0.0014,
              "test_loss": 0.0183, "test_error": 0.05, "seconds": 1.0}
    assert train.epoch_summary(record) == "test 5.00% train 0.14% loss test 0.0183 train 0.00253 run 0.0121"
    assert train.epoch_summary({"epoch": 1, "train_loss_running": 2.5, "seconds": 1.0}) == "loss run 2.5"


# -------------------------------------------------------------------------- data parallelism
_SHARDED = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, optax
    jax.config.update("jax_numpy_rank_promotion", "raise")
    import jaxcnn
    from jaxcnn import train
    assert len(jax.devices()) == 4, jax.devices()

    # a small conv net made of the custom-VJP layers (cheap to compile four ways)
    def apply(p, x):
        h = jaxcnn.tanh(jaxcnn.conv2d(x, p["w"], p["b"], stride=2, padding=1, pad_value=-1.0))
        return jaxcnn.dense(jaxcnn.flatten(h), p["v"], p["c"])

    def fresh():
        k1, k2 = jax.random.split(jax.random.key(0))
        return {"w": 0.3 * jax.random.normal(k1, (3, 3, 1, 4)), "b": jnp.zeros((4, 4, 4)),
                "v": 0.1 * jax.random.normal(k2, (64, 10)), "c": jnp.zeros((10,))}

    rng = np.random.default_rng(0)
    x = jnp.asarray(np.tanh(rng.standard_normal((16, 8, 8, 1))).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, 10, 16), jnp.int32)
    loss = jaxcnn.softmax_cross_entropy
    opt = optax.adam(1e-2)

    single = train.make_train_step(apply, loss, opt)
    p, s = fresh(), opt.init(fresh())
    for i in range(3):
        p, s, l1 = single(p, s, x[4 * i:4 * i + 8], labels[4 * i:4 * i + 8])

    mesh = train.data_mesh()
    sharded = train.make_train_step(apply, loss, opt, mesh=mesh)
    assert sharded is not single
    q, r = train.replicate(fresh(), mesh), train.replicate(opt.init(fresh()), mesh)
    for i in range(3):
        xb, yb = train.shard_batch((x[4 * i:4 * i + 8], labels[4 * i:4 * i + 8]), mesh)
        assert len(xb.sharding.device_set) == 4 and not xb.sharding.is_fully_replicated
        q, r, l2 = sharded(q, r, xb, yb)
    assert q["w"].sharding.is_fully_replicated and len(q["w"].sharding.device_set) == 4
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(q)))
    assert diff <= 1e-5 and abs(float(l1) - float(l2)) <= 1e-5, (diff, float(l1), float(l2))

    kw = dict(epochs=2, batch_size=8, seed=1, eval_sets={"all": (x, labels)}, progress=False)
    a = train.fit(apply, loss, opt, fresh(), (x, labels), **kw)
    b = train.fit(apply, loss, opt, fresh(), (x, labels), data_parallel=True, **kw)
    leaves = zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params))
    diff2 = max(float(jnp.max(jnp.abs(u - v))) for u, v in leaves)
    assert diff2 <= 1e-5, diff2
    assert [h["all_error"] for h in a.history] == [h["all_error"] for h in b.history]
    try:
        train.fit(apply, loss, opt, fresh(), (x, labels), epochs=1, batch_size=6, data_parallel=True,
                  progress=False)
    except ValueError as err:
        assert "divisible by the 4 devices" in str(err), err
    else:
        raise AssertionError("batch 6 on 4 devices must be refused")
    print("SHARDED-OK", diff, diff2)
    """
)


def test_sharded_step_matches_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-W", "error", "-c", _SHARDED], env=env, cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SHARDED-OK" in proc.stdout


def test_one_device_mesh_is_the_plain_step():
    mesh = train.data_mesh(jax.devices()[:1])
    plain = train.make_train_step(APPLY, _mean_se, ADAM)
    assert train.make_train_step(APPLY, _mean_se, ADAM, mesh=mesh) is plain
    with pytest.raises(ValueError, match="`data_mesh`: `devices` must not be empty"):
        train.data_mesh([])
