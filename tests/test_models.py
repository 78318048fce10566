"""jaxcnn.models: shapes, the lecun1989 connection mask and init, input checks, and the two backward
paths (custom VJP rules vs autodiff of jaxcnn.reference) agreeing on whole networks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn import models, registry
from tests.tolerances import assert_close, assert_dtype, normal

KEY = jax.random.key(0)


def _batch(shape, dtype, n=3, seed=1):
    return jnp.tanh(normal(seed, (n, *shape), dtype))  # inputs in (-1, 1) like the data


# ------------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize("activation", models.LECUN1989_ACTIVATIONS)
def test_lecun1989_shapes(activation):
    model = models.lecun1989(activation=activation)
    params = model.init(KEY)
    shapes = jax.tree.map(jnp.shape, params)
    assert shapes == {
        "H1": {"w": (5, 5, 1, 12), "b": (8, 8, 12)},
        "H2": {"w": (5, 5, 12, 12), "b": (4, 4, 12)},
        "H3": {"w": (192, 30), "b": (30,)},
        "out": {"w": (30, 10), "b": (10,)},
    }
    y = jax.jit(model.apply)(params, _batch(model.input_shape, jnp.float32))
    assert y.shape == (3, 10) and y.dtype == jnp.float32
    assert bool(jnp.all(jnp.abs(y) <= 1.0 if activation == "tanh" else jnp.abs(y) <= 1.7159))


# Every activation and every pooling of the op table (jaxcnn.registry), paired round-robin.
_LENET5_PAIRS = [
    (activation, models.LENET5_POOLINGS[i % len(models.LENET5_POOLINGS)])
    for i, activation in enumerate(models.LENET5_ACTIVATIONS)
]


def test_lenet5_choices_are_the_op_table():
    assert models.LENET5_ACTIVATIONS == registry.ACTIVATIONS
    assert [p + "_pool" for p in models.LENET5_POOLINGS] == list(registry.POOLS)
    assert {pooling for _, pooling in _LENET5_PAIRS} == set(models.LENET5_POOLINGS)


@pytest.mark.parametrize(("activation", "pooling"), _LENET5_PAIRS)
def test_lenet5_shapes(activation, pooling):
    model = models.lenet5(activation=activation, pooling=pooling)
    params = model.init(KEY)
    assert jax.tree.map(jnp.shape, params) == {
        "C1": {"w": (5, 5, 1, 6), "b": (6,)},
        "C3": {"w": (5, 5, 6, 16), "b": (16,)},
        "C5": {"w": (400, 120), "b": (120,)},
        "F6": {"w": (120, 84), "b": (84,)},
        "out": {"w": (84, 10), "b": (10,)},
    }
    y = jax.jit(model.apply)(params, _batch((28, 28, 1), jnp.float32, n=2))
    assert y.shape == (2, 10) and y.dtype == jnp.float32


def test_apply_is_vmap_friendly():
    """Per-example gradients with vmap sum to the batch gradient (squared error is a sum)."""
    model = models.lecun1989()
    params = model.init(KEY)
    x = _batch(model.input_shape, jnp.float32, n=4)
    t = jnp.where(normal(2, (4, 10), jnp.float32) > 0, 1.0, -1.0).astype(jnp.float32)

    def loss(p, x, t):
        return jaxcnn.squared_error(model.apply(p, x), t)

    per_example = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0, 0)))(params, x[:, None], t[:, None])
    assert_close(jax.tree.map(lambda g: g.sum(0), per_example), jax.jit(jax.grad(loss))(params, x, t))


# ------------------------------------------------------------------------ lecun1989 specifics
def test_h2_mask_is_balanced_and_documented():
    mask = models.h2_connection_mask()
    assert mask.shape == (12, 12) and set(np.unique(mask)) == {0.0, 1.0}
    assert np.all(mask.sum(axis=0) == 8), "every H2 map reads 8 H1 maps"
    assert np.all(mask.sum(axis=1) == 8), "every H1 map feeds 8 H2 maps"
    # the documented blocks: H2 maps 0-3 read H1 0-7, maps 4-7 read H1 4-11, maps 8-11 read 0-3 + 8-11
    assert np.flatnonzero(mask[:, 0]).tolist() == list(range(8))
    assert np.flatnonzero(mask[:, 5]).tolist() == list(range(4, 12))
    assert np.flatnonzero(mask[:, 11]).tolist() == [0, 1, 2, 3, 8, 9, 10, 11]


def test_lecun1989_init_mask_and_bounds():
    params = models.lecun1989().init(KEY)
    w2 = np.asarray(params["H2"]["w"])
    # 8 nonzero input-map weights per H2 map at every one of the 25 tap positions
    assert np.all((w2 != 0).sum(axis=2) == 8)
    assert np.all(w2[:, :, models.h2_connection_mask() == 0] == 0)
    for name, fan_in in (("H1", 25), ("H2", 200), ("H3", 192), ("out", 30)):
        w = np.abs(np.asarray(params[name]["w"]))
        bound = 2.4 / np.sqrt(fan_in)
        assert w.max() <= bound and w.max() > 0.9 * bound, name
        assert np.all(np.asarray(params[name]["b"]) == 0)


@pytest.mark.parametrize("ops", [jaxcnn, jaxcnn.reference], ids=["custom", "reference"])
def test_masked_weights_get_zero_gradient(ops):
    model = models.lecun1989()
    params = model.init(KEY)
    x = _batch(model.input_shape, jnp.float32)
    t = -jnp.ones((3, 10), jnp.float32)
    g = jax.jit(jax.grad(lambda p: ops.squared_error(model.apply(p, x, ops=ops), t)))(params)
    g2 = np.asarray(g["H2"]["w"])
    off = models.h2_connection_mask() == 0
    assert np.all(g2[:, :, off] == 0)
    assert np.count_nonzero(g2[:, :, ~off]) > 0.9 * g2[:, :, ~off].size


# ------------------------------------------------------------------------------ input checks
def test_lecun1989_rejects_bad_inputs():
    model = models.lecun1989()
    params = model.init(KEY)
    with pytest.raises(ValueError, match=r"`lecun1989.apply`: `x` must have shape \(N, 16, 16, 1\)"):
        model.apply(params, jnp.zeros((2, 28, 28, 1)))
    with pytest.raises(ValueError, match=r"got \(16, 16, 1\)"):
        model.apply(params, jnp.zeros((16, 16, 1)))
    with pytest.raises(TypeError, match="floating-point"):
        model.apply(params, jnp.zeros((2, 16, 16, 1), jnp.int32))
    with pytest.raises(TypeError, match="`ops` must provide"):
        model.apply(params, jnp.zeros((2, 16, 16, 1)), ops=np)
    with pytest.raises(ValueError, match="`activation` must be one of"):
        models.lecun1989(activation="relu")
    with pytest.raises(TypeError, match="`dtype` must be a floating-point dtype"):
        model.init(KEY, jnp.int32)


def test_init_rejects_a_key_that_is_not_a_prng_key():
    """An int seed used to fail inside jax.random.split with JAX's own message."""
    for model in (models.lecun1989(), models.lenet5()):
        fn = model.name.split("-")[0]
        with pytest.raises(TypeError, match=rf"`{fn}.init`: `key` must be one PRNG key, e.g. "
                                            r"jax.random.key\(0\), got int 0"):
            model.init(0)
        with pytest.raises(TypeError, match=r"`key` must be one PRNG key.*shape \(2,\) and dtype key"):
            model.init(jax.random.split(KEY))  # a batch of keys
        legacy = jax.tree.map(jnp.shape, model.init(jax.random.PRNGKey(0)))  # a raw uint32 key is a key
        assert legacy == jax.tree.map(jnp.shape, model.init(KEY))


def test_lenet5_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"`lenet5`: `activation` must be one of \('relu', .*\), got 'gelu'"):
        models.lenet5(activation="gelu")
    with pytest.raises(ValueError, match="`lenet5`: `pooling` must be one of"):
        models.lenet5(pooling="median")
    model = models.lenet5()
    with pytest.raises(ValueError, match=r"`lenet5.apply`: `x` must have shape \(N, 28, 28, 1\)"):
        model.apply(model.init(KEY), jnp.zeros((2, 32, 32, 1)))


# ----------------------------------------------------------- custom rules vs autodiff, networks
def _compare_paths(model, params, x, cotangent, dtype):
    def run(ops):
        y, vjp = jax.vjp(lambda p, x: model.apply(p, x, ops=ops), params, x)
        return y, vjp(cotangent)

    y, (gp, gx) = jax.jit(lambda: run(jaxcnn))()
    y_ref, (gp_ref, gx_ref) = jax.jit(lambda: run(jaxcnn.reference))()
    assert_close(y, y_ref)
    assert_close(gp, gp_ref)
    assert_close(gx, gx_ref)
    assert_dtype((y, gp, gx), dtype)


def test_lecun1989_custom_matches_reference(dtype):
    model = models.lecun1989()
    params = model.init(KEY, dtype)
    x = _batch(model.input_shape, dtype, n=4)
    _compare_paths(model, params, x, normal(7, (4, 10), dtype), dtype)


@pytest.mark.parametrize(("activation", "pooling"), [("relu", "max"), ("tanh", "avg")])
def test_lenet5_custom_matches_reference(dtype, activation, pooling):
    model = models.lenet5(activation=activation, pooling=pooling)
    params = model.init(KEY, dtype)
    x = _batch(model.input_shape, dtype, n=2)
    _compare_paths(model, params, x, normal(8, (2, 10), dtype), dtype)
