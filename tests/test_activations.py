"""jaxcnn.activations: forward values, the f'(x) factor of Eq 20, conventions at 0, transforms."""

from __future__ import annotations

import functools
import math

import jax
import jax.ad_checkpoint
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxcnn
from jaxcnn import activations, reference
from tests.tolerances import assert_close, assert_dtype, normal

NAMES = ["relu", "leaky_relu", "tanh", "scaled_tanh", "sigmoid"]
SLOPE = 0.2  # a slope far from the default, so a default silently used instead would show
SHAPE = (2, 3)  # one small shape everywhere: fewer compilations


def pair(name: str):
    """(custom, reference) for one activation; leaky_relu with SLOPE."""
    custom, ref = getattr(activations, name), getattr(reference, name)
    if name == "leaky_relu":
        return (
            functools.partial(custom, negative_slope=SLOPE),
            functools.partial(ref, negative_slope=SLOPE),
        )
    return custom, ref


def away_from_zero(seed: int, shape, dtype) -> jax.Array:
    """Normal samples pushed at least 0.1 away from the kink of relu/leaky_relu."""
    x = normal(seed, shape, jnp.float32)
    return (x + jnp.where(x >= 0, 0.1, -0.1)).astype(dtype)


def maybe_jit(f, jit: bool):
    return jax.jit(f) if jit else f


# ------------------------------------------------------------------------- against the oracle
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("name", NAMES)
def test_forward_and_vjp_match_reference(name, jit, dtype):
    custom, ref = pair(name)
    x = 2 * normal(0, SHAPE, dtype)
    x = x.at[0, 0].set(0)  # the convention at 0 is part of the comparison
    ct = normal(1, SHAPE, dtype)

    def vjp(f):
        y, pull = jax.vjp(f, x)
        return y, pull(ct)[0]

    y, dx = maybe_jit(lambda: vjp(custom), jit)()
    y_ref, dx_ref = vjp(ref)
    assert_close(y, y_ref)
    assert_close(dx, dx_ref)
    assert_dtype((y, dx), dtype)


@pytest.mark.parametrize("name", NAMES)
def test_finite_differences(name, x64):
    custom, _ = pair(name)
    x = away_from_zero(2, SHAPE, jnp.float64)
    check_grads(custom, (x,), order=2, modes=("rev",))


@pytest.mark.parametrize("name", NAMES)
def test_second_order_matches_reference(name, dtype):
    """vjp of the vjp, w.r.t. x and delta, with random cotangents; and d2f/dx2 elementwise."""
    custom, ref = pair(name)
    x = normal(3, SHAPE, dtype)
    delta, ct = normal(4, SHAPE, dtype), normal(5, SHAPE, dtype)

    @jax.jit
    def second_order(x, delta, ct):
        out = {}
        for key, f in (("custom", custom), ("ref", ref)):

            def backward(x_, delta_, f=f):
                return jax.vjp(f, x_)[1](delta_)[0]

            out[key] = (
                jax.vjp(backward, x, delta)[1](ct),
                jax.vmap(jax.grad(jax.grad(f)))(x.reshape(-1)),  # d2f/dx2 elementwise
            )
        return out

    out = second_order(x, delta, ct)
    assert_close(out["custom"], out["ref"])
    assert_dtype(out["custom"], dtype)


# ------------------------------------------------------------------------------ worked by hand
def test_relu_derivative_at_zero_is_zero():
    g = jax.grad(lambda x: jnp.sum(activations.relu(x)))(jnp.array([-1.0, 0.0, -0.0, 2.0]))
    np.testing.assert_array_equal(g, [0.0, 0.0, 0.0, 1.0])


def test_leaky_relu_derivative_at_zero_is_the_slope():
    x = jnp.array([-1.0, 0.0, 2.0])
    g = jax.grad(lambda x: jnp.sum(activations.leaky_relu(x, 0.25)))(x)
    np.testing.assert_array_equal(g, [0.25, 0.25, 1.0])
    g_default = jax.grad(lambda x: jnp.sum(activations.leaky_relu(x)))(x)
    np.testing.assert_allclose(g_default, [0.01, 0.01, 1.0])
    # jax.nn.leaky_relu tests x >= 0 and takes 1 at 0: the convention differs (PyTorch's is ours).
    assert jax.grad(jax.nn.leaky_relu)(0.0) == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_python_numbers_differentiate(name):
    """``jax.grad(f)(0.5)`` of a Python float, as for `jax.nn`'s functions: relu's and leaky_relu's
    rules met a Python bool for their mask (``AttributeError: 'bool' object has no attribute 'size'``)."""
    f, f_ref = getattr(jaxcnn, name), getattr(reference, name)
    got = [jax.grad(f)(x) for x in (0.5, -0.5, 0.0)] + [jax.vjp(f, 1.0)[1](1.0)[0]]
    want = [jax.grad(f_ref)(x) for x in (0.5, -0.5, 0.0)] + [jax.vjp(f_ref, 1.0)[1](1.0)[0]]
    assert_close(got, want, dtype=jnp.float32)


def test_derivatives_by_hand(x64):
    def fprime(f, points):
        return jax.jit(jax.vmap(jax.grad(f)))(jnp.array(points, jnp.float64))

    # tanh'(x) = 1 - tanh(x)^2
    assert_close(
        fprime(activations.tanh, [0.0, 0.5, -1.0, 2.0]),
        np.array([1.0, 0.7864477329659274, 0.41997434161402614, 0.07065082485316443]),
    )
    # scaled_tanh'(x) = 1.7159 * 2/3 * (1 - tanh(2x/3)^2)
    assert_close(
        fprime(activations.scaled_tanh, [0.0, 1.5]),
        np.array([1.7159 * 2 / 3, 0.48042264851700495]),
    )
    # sigmoid'(x) = s(x) (1 - s(x))
    assert_close(
        fprime(activations.sigmoid, [0.0, 2.0, -3.0]),
        np.array([0.25, 0.10499358540350662, 0.04517665973091214]),
    )
    # f(+-1) = +-1 (to 4 digits) is why LeCun chose the constants
    np.testing.assert_allclose(activations.scaled_tanh(jnp.array([1.0, -1.0])), [1, -1], 1e-4)


def test_delta_times_fprime():
    """Eq 20's factor: the backward multiplies the incoming delta by f'(x) elementwise."""
    x = jnp.array([-2.0, -0.5, 0.5, 2.0])
    delta = jnp.array([3.0, -1.0, 2.0, 0.5])
    dx = jax.vjp(activations.leaky_relu, x)[1](delta)[0]
    np.testing.assert_allclose(dx, [3.0 * 0.01, -1.0 * 0.01, 2.0, 0.5])
    y, pull = jax.vjp(activations.tanh, x)
    np.testing.assert_allclose(pull(delta)[0], delta * (1 - np.tanh(x) ** 2), rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "saved"),
    [("relu", "bool"), ("leaky_relu", "bool"), ("tanh", "f32"), ("scaled_tanh", "f32"),
     ("sigmoid", "f32")],
)
def test_residuals_are_small(name, saved, capsys):
    """One residual per activation: a mask, or the output."""
    custom, _ = pair(name)
    jax.ad_checkpoint.print_saved_residuals(custom, jnp.ones(SHAPE))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{saved}[2,3]"), lines


# ---------------------------------------------------------------------------- masks kept as bits
MASKED = ["relu", "leaky_relu"]


@pytest.fixture
def bits(monkeypatch):
    """Every relu/leaky_relu mask kept as bits, however small (`activations._PACK_UNITS` = 1)."""
    monkeypatch.setattr(activations, "_PACK_UNITS", 1)


@pytest.mark.parametrize("shape", [(), (0,), (1,), (9,), (3, 0), (0, 5), (2, 17), (2, 3, 5)])
def test_mask_bits_round_trip(shape):
    mask = np.random.default_rng(len(shape)).random(shape) < 0.5
    packed = activations._pack_mask(jnp.asarray(mask))
    lead, rest = activations._mask_rows(shape)
    assert packed.dtype == jnp.uint8 and packed.shape == (lead, -(-rest // 8))
    np.testing.assert_array_equal(activations._unpack_mask(packed, shape), mask)


def test_mask_bits_by_hand():
    # one row of 10 units in 2 bytes: byte i holds units i, i + 2, i + 4, ... in bits 0, 1, 2, ...
    mask = jnp.array([[1, 0, 0, 1, 1, 0, 0, 0, 0, 1]], bool)
    np.testing.assert_array_equal(activations._pack_mask(mask), [[0b00101, 0b10010]])


@pytest.mark.parametrize("name", MASKED)
def test_rules_on_masks_kept_as_bits(name, bits, dtype, capsys):
    """The tests of the rules above (reference, second order, vmap, checkpoint) on bits."""
    test_forward_and_vjp_match_reference(name, True, dtype)
    test_second_order_matches_reference(name, dtype)
    test_vmap_per_example_gradients_equal_a_loop(name)
    test_checkpoint(name)
    jax.ad_checkpoint.print_saved_residuals(pair(name)[0], jnp.ones(SHAPE))
    assert capsys.readouterr().out.startswith("u8[2,1]")  # 3 units a row: one byte


@pytest.mark.parametrize("name", MASKED)
def test_large_masks_are_kept_as_bits(name, capsys):
    """From `_PACK_UNITS` units on (rows of 513 x 513, not a multiple of 8) the residual is the
    mask's bits, and the gradient is still exact: NaN, infinities and signed zeros included."""
    custom, ref = pair(name)
    shape = (8, 513, 513)
    assert math.prod(shape) >= activations._PACK_UNITS > math.prod(shape) // 2
    x = normal(12, shape, jnp.float32).at[1, 7, :5].set([jnp.nan, jnp.inf, -jnp.inf, 0.0, -0.0])
    ct = normal(13, shape, jnp.float32)
    jax.ad_checkpoint.print_saved_residuals(custom, x)
    assert capsys.readouterr().out.startswith("u8[8,32897]")  # ceil(513 * 513 / 8) bytes a row
    got, want = (jax.jit(lambda x, f=f: jax.vjp(f, x)[1](ct)[0])(x) for f in (custom, ref))
    np.testing.assert_array_equal(got, want)


def test_bits_let_the_pre_activation_go(monkeypatch):
    """Why masks become bits: XLA recomputes a bool mask from the float pre-activation inside the
    backward, so the pre-activation stays alive from the forward pass to the backward; bits it
    cannot recompute. conv -> relu -> max pool, 128 examples of 28x28, 1 -> 32 maps (3.2M units):
    28.7 MiB of compiled temporaries with the bool mask, 16.8 MiB with bits (jax 0.10.2)."""
    x, w, b = jnp.zeros((128, 28, 28, 1)), jnp.zeros((5, 5, 1, 32)), jnp.zeros(32)

    def loss(w, b):
        return jnp.sum(jaxcnn.max_pool(jaxcnn.relu(jaxcnn.conv2d(x, w, b, padding=2)), 2) ** 2)

    def temporaries() -> int:
        compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(w, b).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    with_bits = temporaries()
    monkeypatch.setattr(activations, "_PACK_UNITS", math.inf)
    assert with_bits < 0.8 * temporaries()


# --------------------------------------------------------------------------------- transforms
@pytest.mark.parametrize("name", NAMES)
def test_vmap_per_example_gradients_equal_a_loop(name):
    custom, _ = pair(name)
    xs, cs = normal(6, (4, *SHAPE), jnp.float32), normal(7, (4, *SHAPE), jnp.float32)

    def loss(x, c):
        return jnp.sum(custom(x) * c)

    grad = jax.jit(jax.grad(loss))
    batched = jax.jit(jax.vmap(jax.grad(loss)))(xs, cs)
    looped = jnp.stack([grad(xs[i], cs[i]) for i in range(4)])
    assert_close(batched, looped)


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint(name):
    custom, _ = pair(name)
    x, c = normal(8, SHAPE, jnp.float32), normal(9, SHAPE, jnp.float32)

    def loss(x, c):
        return jnp.sum(custom(x) * c)

    remat = jax.jit(jax.grad(jax.checkpoint(loss)))(x, c)
    assert_close(remat, jax.jit(jax.grad(loss))(x, c))


def test_forward_mode_is_not_supported():
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(activations.tanh, (jnp.ones(2),), (jnp.ones(2),))


@pytest.mark.parametrize("low", [jnp.bfloat16, jnp.float16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("name", NAMES)
def test_low_precision_keeps_dtype(name, low):
    custom, _ = pair(name)
    x, ct = normal(10, SHAPE, low), normal(11, SHAPE, low)

    @jax.jit
    def value_and_vjp(x, ct):
        y, pull = jax.vjp(custom, x)
        return y, pull(ct)[0]

    y, dx = value_and_vjp(x, ct)
    assert_dtype((y, dx), low)
    y_hi, dx_hi = value_and_vjp(x.astype(jnp.float32), ct.astype(jnp.float32))
    assert_close(y, y_hi, dtype=low)
    assert_close(dx, dx_hi, dtype=low)


# ---------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad", [jnp.arange(3), jnp.array([True, False])], ids=["int", "bool"])
@pytest.mark.parametrize("name", NAMES)
def test_non_float_input_raises(name, bad):
    with pytest.raises(TypeError, match=f"`{name}`: `x` must be a floating-point array"):
        getattr(activations, name)(bad)


@pytest.mark.parametrize("slope", ["0.1", True, None, jnp.array(0.1)])
def test_leaky_relu_slope_must_be_a_number(slope):
    with pytest.raises(TypeError, match="`leaky_relu`: `negative_slope` must be a Python number"):
        activations.leaky_relu(jnp.ones(2), slope)


def test_leaky_relu_accepts_numpy_and_int_slopes():
    x = jnp.array([-2.0, 1.0], jnp.float32)
    for slope in (np.float64(0.5), 1, np.float32(0.5)):
        y = activations.leaky_relu(x, slope)
        assert_dtype(y, jnp.float32)
        np.testing.assert_allclose(y, [-2.0 * float(slope), 1.0])
