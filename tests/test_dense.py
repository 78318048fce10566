"""jaxcnn.dense: dx = delta w^T, dw = x^T delta, db = sum_n delta; flatten's reshape back."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxcnn import reference
from tests.tolerances import assert_close, assert_dtype, normal

# `jaxcnn.dense` is the re-exported function; the module is reached through importlib.
layers = importlib.import_module("jaxcnn.dense")

N, F, U = 3, 4, 2


def params(dtype, seed=0, bias=True):
    x, w = normal(seed, (N, F), dtype), normal(seed + 1, (F, U), dtype)
    return (x, w, normal(seed + 2, (U,), dtype)) if bias else (x, w)


# ------------------------------------------------------------------------- against the oracle
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_forward_and_vjp_match_reference(bias, jit, dtype):
    args = params(dtype, bias=bias)
    ct = normal(9, (N, U), dtype)

    def vjp(f):
        y, pull = jax.vjp(f, *args)
        return y, pull(ct)

    y, grads = (jax.jit(lambda: vjp(layers.dense)) if jit else lambda: vjp(layers.dense))()
    y_ref, grads_ref = vjp(reference.dense)
    assert_close(y, y_ref)
    assert_close(grads, grads_ref)
    assert_dtype((y, grads), dtype)
    assert len(grads) == len(args)


def test_finite_differences(x64):
    check_grads(layers.dense, params(jnp.float64), order=2, modes=("rev",))
    check_grads(layers.dense, params(jnp.float64, bias=False), order=2, modes=("rev",))
    check_grads(layers.flatten, (normal(3, (2, 2, 3), jnp.float64),), order=2, modes=("rev",))


def test_second_order_matches_reference(dtype):
    """vjp of the vjp w.r.t. (x, w, b, delta), random cotangents for both levels."""
    args = params(dtype)
    delta = normal(10, (N, U), dtype)
    cts = (normal(11, (N, F), dtype), normal(12, (F, U), dtype), normal(13, (U,), dtype))

    @jax.jit
    def second_order(args, delta, cts):
        out = []
        for f in (layers.dense, reference.dense):

            def backward(args_, delta_, f=f):
                return jax.vjp(f, *args_)[1](delta_)

            out.append(jax.vjp(backward, args, delta)[1](cts))
        return out

    custom, ref = second_order(args, delta, cts)
    assert_close(custom, ref)
    assert_dtype(custom, dtype)


# ------------------------------------------------------------------------------ worked by hand
def test_dense_by_hand():
    x = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # N = 2, F = 3
    w = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]])  # U = 2
    b = jnp.array([0.5, -0.5])
    delta = jnp.array([[1.0, 2.0], [0.0, -1.0]])
    y, pull = jax.vjp(layers.dense, x, w, b)
    np.testing.assert_array_equal(y, [[4.5, -1.5], [10.5, -1.5]])
    dx, dw, db = pull(delta)
    np.testing.assert_array_equal(dx, [[1.0, 2.0, -1.0], [0.0, -1.0, 1.0]])  # delta w^T
    np.testing.assert_array_equal(dw, [[1.0, -2.0], [2.0, -1.0], [3.0, 0.0]])  # x^T delta
    np.testing.assert_array_equal(db, [1.0, 1.0])  # sum_n delta


def test_flatten_order_and_backward():
    x = jnp.arange(24.0).reshape(2, 2, 3, 2)  # NHWC
    y, pull = jax.vjp(layers.flatten, x)
    assert y.shape == (2, 12)
    assert y[1, 7] == x[1, 1, 0, 1]  # row-major: channel fastest, then W, then H
    ct = normal(0, (2, 12), jnp.float32)
    (dx,) = pull(ct)
    np.testing.assert_array_equal(dx, np.asarray(ct).reshape(2, 2, 3, 2))
    assert_close(y, reference.flatten(x))
    np.testing.assert_array_equal(layers.flatten(jnp.ones(3)), np.ones((3, 1)))


# --------------------------------------------------------------------------------- transforms
def test_vmap_per_example_gradients_equal_a_loop():
    x, w, b = params(jnp.float32)
    cs = normal(20, (N, 1, U), jnp.float32)

    def loss(w, b, x1, c1):  # one example: x1 (F,), c1 (1, U)
        return jnp.sum(layers.dense(x1[None, :], w, b) * c1)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    batched = jax.jit(jax.vmap(grad, in_axes=(None, None, 0, 0)))(w, b, x, cs)
    looped = [grad(w, b, x[i], cs[i]) for i in range(N)]
    assert_close(batched, jax.tree_util.tree_map(lambda *g: jnp.stack(g), *looped))
    # and the per-example gradients sum to the batch gradient (db = sum_n delta)
    batch = jax.grad(lambda w, b: jnp.sum(layers.dense(x, w, b) * cs[:, 0]), argnums=(0, 1))(w, b)
    assert_close(jax.tree_util.tree_map(lambda g: g.sum(0), batched), batch)


def test_checkpoint():
    args = params(jnp.float32)
    c = normal(21, (N, U), jnp.float32)

    def loss(x, w, b):
        return jnp.sum(layers.flatten(layers.dense(x, w, b)[:, :, None]) * c)

    argnums = (0, 1, 2)
    remat = jax.jit(jax.grad(jax.checkpoint(loss), argnums))(*args)
    assert_close(remat, jax.jit(jax.grad(loss, argnums))(*args))


@pytest.mark.parametrize("low", [jnp.bfloat16, jnp.float16], ids=["bfloat16", "float16"])
def test_low_precision_keeps_dtype(low):
    args = params(low)
    ct = normal(22, (N, U), low)

    @jax.jit
    def value_and_vjp(args, ct):
        y, pull = jax.vjp(layers.dense, *args)
        return y, pull(ct)

    y, grads = value_and_vjp(args, ct)
    assert_dtype((y, grads), low)
    hi = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), (args, ct))
    assert_close((y, grads), value_and_vjp(*hi), dtype=low)
    z, pull = jax.vjp(layers.flatten, normal(0, (2, 2, 2), low))
    assert_dtype((z, pull(z)), low)


# ---------------------------------------------------------------------------------- bad input
def f32(*shape):
    return jnp.ones(shape, jnp.float32)


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        ((jnp.ones((3, 4), jnp.int32), f32(4, 2)), TypeError, "`dense`: `x` must be a floating"),
        ((f32(3, 4), jnp.ones((4, 2), bool)), TypeError, "`dense`: `w` must be a floating"),
        ((f32(3, 4), f32(4, 2), jnp.ones(2, jnp.int32)), TypeError, "`dense`: `b` must be a fl"),
        ((f32(3, 4), f32(4, 2).astype(jnp.bfloat16)), TypeError,
         r"`dense`: arguments must share one dtype, got `x` float32, `w` bfloat16"),
        ((f32(2, 3, 4), f32(4, 2)), ValueError, r"`dense`: `x` must have rank 2 \(\(N, F\)\)"),
        ((f32(4), f32(4, 2)), ValueError, r"`dense`: `x` must have rank 2"),
        ((f32(3, 4), f32(4)), ValueError, r"`dense`: `w` must have rank 2 \(\(F, U\)\)"),
        ((f32(3, 4), f32(5, 2)), ValueError,
         r"`dense`: `w` has 5 input features but `x` has 4 \(x \(3, 4\), w \(5, 2\)\)"),
        ((f32(3, 4), f32(4, 2), f32(3)), ValueError, r"`dense`: `b` has shape \(3,\); expected"),
        ((f32(3, 4), f32(4, 2), f32(1, 2)), ValueError, r"`dense`: `b` has shape \(1, 2\)"),
    ],
    ids=["int_x", "bool_w", "int_b", "mixed_dtype", "rank3_x", "rank1_x", "rank1_w",
         "F_mismatch", "bias_length", "bias_rank"],
)
def test_dense_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        layers.dense(*args)


def test_flatten_bad_input():
    with pytest.raises(TypeError, match="`flatten`: `x` must be a floating-point array"):
        layers.flatten(jnp.ones((2, 3), jnp.int32))
    with pytest.raises(ValueError, match="`flatten`: `x` must have a batch dimension"):
        layers.flatten(jnp.float32(1.0))
