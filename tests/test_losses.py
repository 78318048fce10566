"""jaxcnn.losses: Eq 9 and its gradient y - t; softmax cross-entropy and (softmax - onehot)/N."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxcnn import losses, reference
from tests.tolerances import assert_close, assert_dtype, normal

N, K = 3, 4
REDUCTIONS = ["sum", "mean"]


def vjp_pair(custom, ref, args, ct, jit):
    """(value, vjp(ct)) of the custom function (maybe jitted) and of the reference."""

    def vjp(f):
        y, pull = jax.vjp(f, *args)
        return y, pull(ct)

    run = jax.jit(lambda: vjp(custom)) if jit else (lambda: vjp(custom))
    return run(), vjp(ref)


def scalar_ct(seed, dtype):
    """A random scalar cotangent (not 1: a rule that ignores its cotangent must fail)."""
    return (1 + jnp.abs(normal(seed, (), jnp.float32))).astype(dtype)


def soft_labels(seed, dtype):
    """Non-normalised positive targets: exercises the general (sum_k t_k) softmax - t rule."""
    return jnp.abs(normal(seed, (N, K), jnp.float32)).astype(dtype)


# ------------------------------------------------------------------------------ squared_error
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_squared_error_matches_reference(reduction, jit, dtype):
    y, t = normal(0, (N, 2, 2), dtype), normal(1, (N, 2, 2), dtype)
    custom = functools.partial(losses.squared_error, reduction=reduction)
    ref = functools.partial(reference.squared_error, reduction=reduction)
    (e, grads), (e_ref, grads_ref) = vjp_pair(custom, ref, (y, t), scalar_ct(2, dtype), jit)
    assert_close(e, e_ref)
    assert_close(grads, grads_ref)
    assert_dtype((e, grads), dtype)
    assert e.shape == ()


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_squared_error_finite_differences(reduction, x64):
    f = functools.partial(losses.squared_error, reduction=reduction)
    check_grads(f, (normal(0, (2, 3), jnp.float64), normal(1, (2, 3), jnp.float64)),
                order=2, modes=("rev",))


def test_squared_error_eq9_by_hand():
    y = jnp.array([[1.0, 2.0], [0.5, -1.0]])  # P = 4 outputs, N = 2 samples
    t = jnp.array([[0.0, 2.0], [1.0, 1.0]])
    # t - y = [[-1, 0], [0.5, 2]]; squares 1 + 0 + 0.25 + 4 = 5.25; E = 5.25 / 2
    e, pull = jax.vjp(losses.squared_error, y, t)
    assert e == 2.625
    dy, dt = pull(jnp.float32(1.0))
    np.testing.assert_array_equal(dy, [[1.0, 0.0], [-0.5, -2.0]])  # y - t
    np.testing.assert_array_equal(dt, [[-1.0, 0.0], [0.5, 2.0]])  # t - y
    # "mean" divides by the batch size N = 2, not by the 4 elements
    e, pull = jax.vjp(functools.partial(losses.squared_error, reduction="mean"), y, t)
    assert e == 1.3125
    dy, _ = pull(jnp.float32(2.0))  # the cotangent multiplies the rule
    np.testing.assert_array_equal(dy, [[1.0, 0.0], [-0.5, -2.0]])


# ---------------------------------------------------------------------- softmax_cross_entropy
def ce_inputs(kind, dtype):
    logits = 2 * normal(0, (N, K), dtype)
    if kind == "int":
        return logits, jnp.array([0, 3, 1], jnp.int32)
    if kind == "onehot":
        return logits, jax.nn.one_hot(jnp.array([2, 0, 3]), K, dtype=dtype)
    return logits, soft_labels(1, dtype)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("kind", ["int", "onehot", "soft"])
def test_cross_entropy_matches_reference(kind, jit, dtype):
    logits, labels = ce_inputs(kind, dtype)
    ct = scalar_ct(2, dtype)
    if kind == "int":  # labels are not differentiable: the vjp is w.r.t. the logits only
        custom = functools.partial(losses.softmax_cross_entropy, labels=labels)
        ref = functools.partial(reference.softmax_cross_entropy, labels=labels)
        args = (logits,)
    else:
        custom, ref = losses.softmax_cross_entropy, reference.softmax_cross_entropy
        args = (logits, labels)
    (e, grads), (e_ref, grads_ref) = vjp_pair(custom, ref, args, ct, jit)
    assert_close(e, e_ref)
    assert_close(grads, grads_ref)
    assert_dtype((e, grads), dtype)


@pytest.mark.parametrize("kind", ["int", "onehot", "soft"])
def test_cross_entropy_finite_differences(kind, x64):
    logits, labels = ce_inputs(kind, jnp.float64)
    if kind == "int":
        f = functools.partial(losses.softmax_cross_entropy, labels=labels)
        check_grads(f, (logits,), order=2, modes=("rev",))
    else:
        check_grads(losses.softmax_cross_entropy, (logits, labels), order=2, modes=("rev",))


def test_cross_entropy_by_hand():
    # softmax([0, 0]) = [1/2, 1/2], softmax([ln 3, 0]) = [3/4, 1/4]; labels 0 and 1
    logits = jnp.array([[0.0, 0.0], [math.log(3.0), 0.0]])
    labels = jnp.array([0, 1])
    e, g = jax.value_and_grad(losses.softmax_cross_entropy)(logits, labels)
    np.testing.assert_allclose(e, -(math.log(0.5) + math.log(0.25)) / 2, rtol=1e-6)  # 1.5 ln 2
    # (softmax - onehot) / N
    np.testing.assert_allclose(g, [[-0.25, 0.25], [0.375, -0.375]], rtol=1e-6)
    onehot = jax.nn.one_hot(labels, 2)
    g_logits, g_labels = jax.grad(losses.softmax_cross_entropy, argnums=(0, 1))(logits, onehot)
    np.testing.assert_allclose(g_logits, g, rtol=1e-6)
    # -log softmax / N
    np.testing.assert_allclose(
        g_labels, [[math.log(2) / 2, math.log(2) / 2], [-math.log(0.75) / 2, math.log(4) / 2]],
        rtol=1e-6,
    )


def test_integer_labels_get_a_float0_zero():
    logits, labels = ce_inputs("int", jnp.float32)
    f = losses.softmax_cross_entropy
    g_jit = jax.jit(jax.grad(f))(logits, labels)
    assert_close(g_jit, jax.grad(f)(logits, labels))
    _, g_labels = jax.grad(f, argnums=(0, 1), allow_int=True)(logits, labels)
    assert g_labels.dtype == jax.dtypes.float0
    assert g_labels.shape == (N,)
    # uint8 labels work the same
    assert_close(jax.grad(f)(logits, labels.astype(jnp.uint8)), g_jit)


def test_cross_entropy_is_stable_for_large_logits():
    logits = jnp.array([[1000.0, -1000.0, 0.0], [-1e4, -1e4, -1e4]], jnp.float32)
    e, g = jax.value_and_grad(losses.softmax_cross_entropy)(logits, jnp.array([1, 2]))
    assert np.isfinite(e) and np.all(np.isfinite(g))
    np.testing.assert_allclose(e, (2000.0 + math.log(3.0)) / 2, rtol=1e-6)
    np.testing.assert_allclose(g, [[0.5, -0.5, 0.0], [1 / 6, 1 / 6, -1 / 3]], atol=1e-7)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_a_class_masked_with_minus_inf_adds_nothing(dtype, x64):
    """A logit of -inf with no target weight (a masked class): 0 * log 0 made the loss NaN (optax's
    integer-label form gives the finite loss). Worked by hand: row 0 is the loss over classes 1-2,
    log(e^1 + e^2) - 2; row 1 softmax over classes 0 and 2 with soft targets."""
    logits = jnp.array([[-jnp.inf, 1.0, 2.0], [0.5, -jnp.inf, -0.5]], dtype)
    soft = jnp.array([[0.0, 0.0, 1.0], [0.25, 0.0, 0.75]], dtype)
    lse1 = math.log(math.exp(0.5) + math.exp(-0.5))
    want = (math.log(math.e + math.e**2) - 2 + (lse1 - 0.25 * 0.5 + 0.75 * 0.5)) / 2
    p1 = math.exp(0.5 - lse1)
    want_dz = [[0.0, math.e / (math.e + math.e**2) / 2, (math.e**2 / (math.e + math.e**2) - 1) / 2],
               [(p1 - 0.25) / 2, 0.0, (1 - p1 - 0.75) / 2]]
    for fn in (losses.softmax_cross_entropy, reference.softmax_cross_entropy):
        e, (dz, dt) = jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))(logits, soft)
        np.testing.assert_allclose(e, want, rtol=1e-6)
        np.testing.assert_allclose(dz, want_dz, rtol=1e-5, atol=1e-7)
        assert dt[0, 0] == 0 and dt[1, 1] == 0 and np.all(np.isfinite(dt))  # 0 where 0 log 0
        e, dz = jax.value_and_grad(fn)(logits[:1], jnp.array([2]))  # integer labels
        np.testing.assert_allclose(e, math.log(math.e + math.e**2) - 2, rtol=1e-6)
        np.testing.assert_allclose(dz, [[0.0, 2 * want_dz[0][1], 2 * want_dz[0][2]]], rtol=1e-5)
    # the masked class's label weight is no input of the gradient either (second order, by JAX's
    # autodiff of the rule: it gave [-1, p1, p2] there, the reference 0)
    mixed = [jax.jacrev(lambda t, fn=fn: jax.grad(fn)(logits, t))(soft)
             for fn in (losses.softmax_cross_entropy, reference.softmax_cross_entropy)]
    np.testing.assert_allclose(mixed[0], mixed[1], rtol=1e-5, atol=1e-7)
    assert not np.any(mixed[0][:, :, 0, 0]) and np.all(np.isfinite(mixed[0]))
    # NaN still propagates, and a masked target class costs infinitely much
    nan = jnp.array([[jnp.nan, 1.0]], dtype)
    assert np.isnan(losses.softmax_cross_entropy(nan, jnp.array([1])))
    assert losses.softmax_cross_entropy(logits[:1], jnp.array([0])) == jnp.inf


def test_traced_out_of_range_label_gets_a_zero_row_like_the_reference():
    logits = normal(0, (2, K), jnp.float32)
    labels = jnp.array([1, K])  # out of range, unseen by the check under jit
    custom = jax.jit(jax.value_and_grad(losses.softmax_cross_entropy))(logits, labels)
    ref = jax.jit(jax.value_and_grad(reference.softmax_cross_entropy))(logits, labels)
    assert_close(custom, ref)


# --------------------------------------------------------------------- both: transforms, dtypes
LOSSES = {
    "squared_error": (losses.squared_error, reference.squared_error),
    "squared_error_mean": (
        functools.partial(losses.squared_error, reduction="mean"),
        functools.partial(reference.squared_error, reduction="mean"),
    ),
    "ce_int": (losses.softmax_cross_entropy, reference.softmax_cross_entropy),
    "ce_soft": (losses.softmax_cross_entropy, reference.softmax_cross_entropy),
}


def loss_inputs(name, dtype):
    if name.startswith("squared_error"):
        return normal(0, (N, K), dtype), normal(1, (N, K), dtype)
    return ce_inputs(name[3:], dtype)


@pytest.mark.parametrize("name", list(LOSSES))
def test_second_order_matches_reference(name, dtype):
    """vjp of the gradient w.r.t. (first argument, cotangent), random cotangents both levels."""
    custom, ref = LOSSES[name]
    a, b = loss_inputs(name, dtype)
    g, ct = scalar_ct(3, dtype), normal(4, (N, K), dtype)

    integer = jnp.issubdtype(b.dtype, jnp.integer)

    @jax.jit
    def second_order(a, b, g, ct):
        out = []
        for f in (custom, ref):

            def backward(a_, g_, b_, f=f):  # the gradient w.r.t. the first argument
                return jax.vjp(lambda a__: f(a__, b_), a_)[1](g_)[0]

            if integer:
                out.append(jax.vjp(lambda a_, g_, bwd=backward: bwd(a_, g_, b), a, g)[1](ct))
            else:  # float labels/targets: differentiate through them too
                out.append(jax.vjp(backward, a, g, b)[1](ct))
        return out

    got, want = second_order(a, b, g, ct)
    assert_close(got, want)
    assert_dtype(got, dtype)


@pytest.mark.parametrize("name", list(LOSSES))
def test_vmap_per_example_gradients_equal_a_loop(name):
    custom, _ = LOSSES[name]
    a, b = loss_inputs(name, jnp.float32)

    def loss(a1, b1):  # one example, kept as a batch of 1
        return custom(a1[None], b1[None])

    grad = jax.jit(jax.grad(loss))
    batched = jax.jit(jax.vmap(grad))(a, b)
    looped = jnp.stack([grad(a[i], b[i]) for i in range(N)])
    assert_close(batched, looped)


@pytest.mark.parametrize("name", list(LOSSES))
def test_checkpoint(name):
    custom, _ = LOSSES[name]
    a, b = loss_inputs(name, jnp.float32)
    remat = jax.jit(jax.grad(jax.checkpoint(custom)))(a, b)
    assert_close(remat, jax.jit(jax.grad(custom))(a, b))


@pytest.mark.parametrize("low", [jnp.bfloat16, jnp.float16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("name", ["squared_error", "ce_int", "ce_soft"])
def test_low_precision_keeps_dtype(name, low):
    custom, _ = LOSSES[name]
    a, b = loss_inputs(name, low)
    argnums = (0,) if name == "ce_int" else (0, 1)
    value_and_grad = jax.jit(jax.value_and_grad(custom, argnums))
    got = value_and_grad(a, b)
    assert_dtype(got, low)
    hi = value_and_grad(a.astype(jnp.float32), b if name == "ce_int" else b.astype(jnp.float32))
    assert_close(got, hi, dtype=low)


# ---------------------------------------------------------------------------------- bad input
def f32(*shape):
    return jnp.ones(shape, jnp.float32)


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        ((jnp.ones((2, 3), jnp.int32), f32(2, 3)), {}, TypeError, "`squared_error`: `y` must be"),
        ((f32(2, 3), jnp.ones((2, 3), bool)), {}, TypeError, "`squared_error`: `t` must be"),
        ((f32(2, 3), f32(2, 3).astype(jnp.float16)), {}, TypeError,
         "`squared_error`: arguments must share one dtype, got `y` float32, `t` float16"),
        ((f32(2, 3), f32(2, 3)), {"reduction": "avg"}, ValueError,
         "`squared_error`: `reduction` must be 'sum' or 'mean', got 'avg'"),
        ((f32(2, 3), f32(2, 3)), {"reduction": None}, ValueError, "`squared_error`: `reduction`"),
        ((f32(2, 3), f32(3)), {}, ValueError,
         r"`squared_error`: `t` has shape \(3,\) but `y` has \(2, 3\)"),
        ((f32(2, 3), f32(2, 1)), {}, ValueError, r"`squared_error`: `t` has shape \(2, 1\)"),
        ((jnp.float32(1.0), jnp.float32(1.0)), {}, ValueError,
         "`squared_error`: `y` must have a batch dimension"),
    ],
    ids=["int_y", "bool_t", "mixed_dtype", "unknown_reduction", "none_reduction",
         "shape_mismatch", "no_broadcast", "scalar"],
)
def test_squared_error_bad_input(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        losses.squared_error(*args, **kwargs)


def test_squared_error_reduction_is_keyword_only():
    with pytest.raises(TypeError):
        losses.squared_error(f32(2), f32(2), "mean")  # type: ignore[misc]


CE = "`softmax_cross_entropy`: "


@pytest.mark.parametrize(
    ("logits", "labels", "exc", "match"),
    [
        (jnp.ones((2, 3), jnp.int32), jnp.array([0, 1]), TypeError,
         CE + "`logits` must be a floating-point array"),
        (f32(3), jnp.array([0, 1, 2]), ValueError, CE + r"`logits` must have rank 2 \(\(N, K\)\)"),
        (f32(2, 3), jnp.array([0, 3]), ValueError,
         CE + r"`labels` must lie in \[0, 3\) for logits with 3 classes, got values in \[0, 3\]"),
        (f32(2, 3), jnp.array([-1, 0]), ValueError, CE + r"`labels` must lie in \[0, 3\)"),
        (f32(2, 3), jnp.array([[0], [1]]), ValueError,
         CE + r"integer `labels` must have shape \(2,\) to match `logits` \(2, 3\)"),
        (f32(2, 3), jnp.array([0, 1, 2]), ValueError, CE + r"integer `labels` must have shape"),
        (f32(2, 3), f32(2, 4), ValueError,
         CE + r"one-hot `labels` must have shape \(2, 3\) like `logits`, got \(2, 4\)"),
        (f32(2, 3), jnp.array([True, False]), TypeError,
         CE + "`labels` must be integer class ids .* got dtype bool"),
        (f32(2, 3), jnp.array([0.0, 1.0]), TypeError,
         CE + r"`labels` of shape \(2,\) must be integer class ids, got dtype float32"),
        (f32(2, 3), f32(2, 3).astype(jnp.bfloat16), TypeError,
         CE + "arguments must share one dtype, got `logits` float32, `labels` bfloat16"),
    ],
    ids=["int_logits", "rank1_logits", "label_too_big", "label_negative", "int_labels_2d",
         "int_labels_length", "onehot_shape", "bool_labels", "float_ids", "mixed_dtype"],
)
def test_cross_entropy_bad_input(logits, labels, exc, match):
    with pytest.raises(exc, match=match):
        losses.softmax_cross_entropy(logits, labels)
