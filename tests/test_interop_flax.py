"""`jaxcnn.interop.conv_general_dilated` inside Flax NNX: the same model built with stock `nnx.Conv`
and with jaxcnn's rules gives the same losses, gradients and optimizer steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

from jaxcnn import interop
from tests.tolerances import assert_close, assert_dtype, normal

nnx = pytest.importorskip("flax.nnx")

JAXCNN = {"conv_general_dilated": interop.conv_general_dilated}


class SmallCNN(nnx.Module):
    """conv (SAME) -> relu -> max pool -> conv (explicit padding, groups) -> relu -> dense."""

    def __init__(self, dtype, rngs, **conv):
        self.c1 = nnx.Conv(1, 4, (3, 3), padding="SAME", param_dtype=dtype, rngs=rngs, **conv)
        self.c2 = nnx.Conv(4, 6, (3, 3), strides=2, padding=((1, 0), (0, 1)), feature_group_count=2,
                           kernel_dilation=(1, 2), param_dtype=dtype, rngs=rngs, **conv)
        self.fc = nnx.Linear(6 * 2 * 1, 10, param_dtype=dtype, rngs=rngs)

    def __call__(self, x):
        h = nnx.max_pool(nnx.relu(self.c1(x)), (2, 2), strides=(2, 2))
        h = nnx.relu(self.c2(h))
        return self.fc(h.reshape(h.shape[0], -1))


def _loss(model, x, labels):
    return optax.softmax_cross_entropy_with_integer_labels(model(x), labels).mean()


def _pair(dtype):
    stock = SmallCNN(dtype, nnx.Rngs(0))
    ours = SmallCNN(dtype, nnx.Rngs(0), **JAXCNN)
    return stock, ours


def test_small_cnn_losses_and_gradients_match(dtype):
    stock, ours = _pair(dtype)
    x = normal(0, (3, 10, 10, 1), dtype)
    labels = jnp.asarray([1, 7, 3])
    grad = nnx.jit(nnx.value_and_grad(_loss))  # (eager op-by-op runs too, only slower)
    loss_s, g_s = grad(stock, x, labels)
    loss_o, g_o = grad(ours, x, labels)
    assert_close(loss_o, loss_s)
    assert_close(nnx.to_pure_dict(g_o), nnx.to_pure_dict(g_s))
    assert_dtype(nnx.to_pure_dict(g_o), dtype)
    assert float(jnp.max(jnp.abs(g_o["c1"]["kernel"][...]))) > 0  # a real gradient, not all zeros


def test_optimizer_steps_match(dtype):
    stock, ours = _pair(dtype)
    opt_s = nnx.Optimizer(stock, optax.sgd(0.1, momentum=0.9), wrt=nnx.Param)
    opt_o = nnx.Optimizer(ours, optax.sgd(0.1, momentum=0.9), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, x, labels):
        loss, grads = nnx.value_and_grad(_loss)(model, x, labels)
        opt.update(model, grads)
        return loss

    for i in range(3):
        x = normal(10 + i, (4, 10, 10, 1), dtype)
        labels = jnp.asarray([0, 1, 2, 3])
        assert_close(step(ours, opt_o, x, labels), step(stock, opt_s, x, labels))
    assert_close(nnx.to_pure_dict(nnx.state(ours, nnx.Param)), nnx.to_pure_dict(nnx.state(stock, nnx.Param)))


CASES = [
    # (spatial size, kernel, options) — 1-D and 3-D convs, groups, kernel dilation, SAME / explicit padding
    ((9,), (3,), dict(padding="SAME")),
    ((9,), (3,), dict(padding="CAUSAL", kernel_dilation=2)),
    ((9,), (2,), dict(padding=((2, 1),), strides=2, feature_group_count=2)),
    ((6, 7), (3, 2), dict(padding="VALID", kernel_dilation=(2, 1))),
    ((6, 7), (3, 3), dict(padding=1, strides=(1, 2), input_dilation=(2, 1))),
    ((5, 4, 6), (2, 3, 2), dict(padding="SAME", strides=2)),
    ((5, 4, 6), (3, 1, 2), dict(padding=((1, 0), (0, 0), (2, 1)), feature_group_count=2,
                                kernel_dilation=(1, 1, 2))),
]


@pytest.mark.parametrize("size, kernel, options", CASES)
def test_conv_layers_match(size, kernel, options, x64):
    # float64 only (the tight check; float32 is covered by the whole-model tests above), to stay fast
    dtype = jnp.float64
    stock = nnx.Conv(4, 6, kernel, param_dtype=dtype, rngs=nnx.Rngs(1), **options)
    ours = nnx.Conv(4, 6, kernel, param_dtype=dtype, rngs=nnx.Rngs(1), **options, **JAXCNN)
    x = normal(2, (2, *size, 4), dtype)

    def loss(model, x):
        y = model(x)
        return jnp.sum(y * normal(3, y.shape, dtype)), y  # random cotangent, not a plain sum

    grad = nnx.jit(nnx.grad(loss, argnums=(0, 1), has_aux=True))
    (g_s, gx_s), y_s = grad(stock, x)
    (g_o, gx_o), y_o = grad(ours, x)
    assert y_o.shape == y_s.shape
    assert_close(y_o, y_s)
    assert_close(gx_o, gx_s)
    assert_close(nnx.to_pure_dict(g_o), nnx.to_pure_dict(g_s))


def test_any_dimension_numbers_match_lax(x64):
    # NCHW / OIHW (lax's default) and a scrambled layout, with kernel and input dilation
    x = normal(4, (2, 3, 7, 6), jnp.float64)
    w = normal(5, (4, 3, 2, 3), jnp.float64)
    scrambled = (jnp.transpose(x, (0, 2, 1, 3)), jnp.transpose(w, (2, 1, 0, 3)))
    cases = [
        (None, (x, w), dict(padding="SAME_LOWER")),
        (("NCHW", "OIHW", "NHWC"), (x, w), dict(padding=((1, -1), (0, 2)), rhs_dilation=(1, 2))),
        (("NHCW", "HIOW", "CNHW"), scrambled, dict(padding=((1, 2), (0, 3)), lhs_dilation=(2, 3),
                                                   window_strides=(2, 1))),
    ]
    for dn, (xx, ww), kw in cases:
        kw = {"window_strides": (1, 1), **kw, "dimension_numbers": dn}
        y_l, vjp_l = jax.vjp(lambda a, b, kw=kw: lax.conv_general_dilated(a, b, **kw), xx, ww)
        y_o, vjp_o = jax.vjp(lambda a, b, kw=kw: interop.conv_general_dilated(a, b, **kw), xx, ww)
        assert_close(y_o, y_l)
        ct = normal(6, y_l.shape, jnp.float64)
        assert_close(vjp_o(ct), vjp_l(ct))


def _values_and_grads_match_lax(kernel, size=5, **kw):
    """A 1-D (2, size, 3) input and a (kernel, 3, 4) kernel through lax and through the hook,
    float64: the same shape, values and pull-back of a random cotangent."""
    x, w = normal(7, (2, size, 3), jnp.float64), normal(8, (kernel, 3, 4), jnp.float64)
    kw = {**kw, "dimension_numbers": ("NWC", "WIO", "NWC")}
    y_l, vjp_l = jax.vjp(lambda a, b: lax.conv_general_dilated(a, b, **kw), x, w)
    y_o, vjp_o = jax.vjp(lambda a, b: interop.conv_general_dilated(a, b, **kw), x, w)
    assert y_o.shape == y_l.shape
    assert_close(y_o, y_l)
    ct = normal(9, y_l.shape, jnp.float64)
    assert_close(vjp_o(ct), vjp_l(ct))


@pytest.mark.parametrize("padding, strides, kernel", [
    ([(-6, 6)], (1,), 1),  # a crop past the input's end, then padding: lax.pad's semantics (was shape 6)
    ([(2, -1)], (1,), 1), ([(-4, -1)], (1,), 1), ([(0, -5)], (1,), 1),  # the last two crop everything
    ("VALID", (1,), 3), ([(0, 0)], (2,), 7), ([(1, 1)], (1,), 9),  # windows wider than the padded input
])
def test_padding_past_the_input_matches_lax(padding, strides, kernel, x64):
    """lax's results where the padded input is shorter than the window or a crop passes the input's
    end: empty outputs (jaxcnn.conv refused them) and lax.pad's crops (the slice counted from the
    other end)."""
    _values_and_grads_match_lax(kernel, window_strides=strides, padding=padding)


@pytest.mark.parametrize("padding, strides, kernel, dilation", [
    ([(-1, 0)], (1,), 3, 1), ([(-3, -1)], (2,), 3, 1), ([(0, -3)], (1,), 2, 2),
    ([(-3, -3)], (1,), 3, 2),  # lax's result is empty (conv_transpose refused it)
])
def test_transposed_form_with_cropping_padding_matches_lax(padding, strides, kernel, dilation, x64):
    """`lhs_dilation` with a negative padding (a crop of the transposed convolution's output) was
    refused as "cannot be expressed as jaxcnn.conv_transpose"."""
    _values_and_grads_match_lax(kernel, window_strides=strides, padding=padding, lhs_dilation=(2,),
                                rhs_dilation=(dilation,))


@pytest.mark.parametrize("size, padding, strides, kernel, dilation", [
    (5, [(3, 0)], (1,), 3, 1), (5, [(6, 7)], (2,), 2, 1),  # beyond d*(k-1) at either end (were refused)
    (5, [(5, -2)], (1,), 3, 2), (5, [(-4, 9)], (3,), 3, 1),  # beyond it at one end, cropping the other
    (3, [(8, -7)], (1,), 3, 1), (3, [(-6, 9)], (2,), 2, 1),  # the crop takes every input: all zeros
    (0, [(2, 3)], (1,), 2, 1),  # no input at all: every window sees padding only
])
def test_transposed_form_with_any_padding_matches_lax(size, padding, strides, kernel, dilation, x64):
    """`lhs_dilation` with a padding beyond the kernel's extent minus one was refused ("cannot be
    expressed as jaxcnn.conv_transpose"); its outputs there see no input, and are lax's zeros."""
    _values_and_grads_match_lax(kernel, size, window_strides=strides, padding=padding, lhs_dilation=(2,),
                                rhs_dilation=(dilation,))


def test_padding_and_precision_as_lax_reads_them():
    """A float padding was truncated (1.7 -> 1) and a crop longer than the input sliced from the other
    end; lax's aliases of DEFAULT precision and a float64 preferred type without x64 (float32 then)
    were refused."""
    x, w, dn = jnp.ones((1, 5, 1)), jnp.ones((3, 1, 1)), ("NWC", "WIO", "NWC")
    call = interop.conv_general_dilated
    with pytest.raises(TypeError, match=r"`conv_general_dilated`: `padding` must be a string or 1 \(lo, hi\) "
                                        r"pairs of ints, got \[\(1.7, 0\)\]"):
        call(x, w, (1,), [(1.7, 0)], dimension_numbers=dn)
    with pytest.raises(ValueError, match=r"`padding` \(\(0, -6\),\) crops more than the input's spatial "
                                         r"size \(5,\)"):
        call(x, w, (1,), [(0, -6)], dimension_numbers=dn)
    with pytest.raises(ValueError, match=r"`padding` \(\(-6, -5\),\) crops more than the input's spatial "
                                         r"size \(9,\) dilated by `lhs_dilation`"):  # lax raises too
        call(x, w, (1,), [(-6, -5)], lhs_dilation=(2,), dimension_numbers=dn)
    want = lax.conv_general_dilated(x, w, (1,), "SAME", dimension_numbers=dn)
    for precision in ("fastest", "bfloat16", ("default", "fastest"), lax.DotAlgorithmPreset.DEFAULT):
        y = call(x, w, (1,), "SAME", dimension_numbers=dn, precision=precision)
        np.testing.assert_array_equal(y, want)
    y = call(x, w, (1,), "SAME", dimension_numbers=dn, preferred_element_type=jnp.float64)
    assert y.dtype == jnp.float32 and not jax.config.jax_enable_x64
    np.testing.assert_array_equal(y, want)


def test_unsupported_options_raise():
    x, w = jnp.ones((2, 5, 5, 4)), jnp.ones((3, 3, 4, 4))
    dn = ("NHWC", "HWIO", "NHWC")
    call = interop.conv_general_dilated
    with pytest.raises(ValueError, match="`conv_general_dilated`: `batch_group_count`"):
        call(x, w, (1, 1), "SAME", dimension_numbers=dn, batch_group_count=2)
    with pytest.raises(ValueError, match="`precision`"):
        call(x, w, (1, 1), "SAME", dimension_numbers=dn, precision=lax.Precision.HIGHEST)
    with pytest.raises(TypeError, match="`preferred_element_type`"):
        call(x, w, (1, 1), "SAME", dimension_numbers=dn, preferred_element_type=jnp.float16)
    with pytest.raises(ValueError, match="`out_sharding`"):
        call(x, w, (1, 1), "SAME", dimension_numbers=dn, out_sharding=object())
    with pytest.raises(ValueError, match="`padding`.*`lhs_dilation`"):
        call(x, w, (1, 1), "SAME", lhs_dilation=(2, 2), dimension_numbers=dn)
    # lax's own argument names in the library's errors (they were jaxcnn.conv's `stride`, `groups`, ...)
    for name, bad in (("window_strides", (0, 1)), ("lhs_dilation", (1, 0)), ("rhs_dilation", (-1, 1))):
        with pytest.raises(ValueError, match=f"`conv_general_dilated`: `{name}` must be positive"):
            call(x, w, bad if name == "window_strides" else (1, 1), "VALID", dimension_numbers=dn,
                 **({} if name == "window_strides" else {name: bad}))
    with pytest.raises(TypeError, match="`window_strides` must be 2 ints"):
        call(x, w, "a", "SAME", dimension_numbers=dn)
    with pytest.raises(ValueError, match="`feature_group_count` 3 they need"):
        call(x, w, (1, 1), "SAME", dimension_numbers=dn, feature_group_count=3)
    with pytest.raises(ValueError, match="`lhs` has 4 feature.*`rhs` 2 input"):
        call(x, jnp.ones((3, 3, 2, 4)), (1, 1), "SAME", dimension_numbers=dn)
    with pytest.raises((TypeError, ValueError), match="`conv_general_dilated`: `dimension_numbers`"):
        call(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO"))
    with pytest.raises(TypeError, match="`preferred_element_type` must be None or a dtype"):
        call(x, w, (1, 1), "SAME", dimension_numbers=dn, preferred_element_type="foo")
    # what applies is honoured: the inputs' own dtype as preferred_element_type, DEFAULT precision
    y = call(x, w, (1, 1), "SAME", dimension_numbers=dn, preferred_element_type=jnp.float32,
             precision=lax.Precision.DEFAULT, out_sharding=None)
    np.testing.assert_allclose(y, lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn))


def test_nnx_conv_with_preferred_element_type_of_its_dtype():
    layer = nnx.Conv(2, 3, (3,), preferred_element_type=jnp.float32, rngs=nnx.Rngs(0), **JAXCNN)
    assert layer(jnp.ones((1, 5, 2))).shape == (1, 5, 3)


def test_conv_transpose_recipe(x64):
    # nnx.ConvTranspose has no conv_general_dilated hook (it calls lax.conv_transpose). The same layer is
    # nnx.Conv with input_dilation = the strides and the transposed convolution's explicit (lo, hi)
    # padding, which jaxcnn runs as jaxcnn.conv_transpose (Eq 22).
    pads = ((2, 2), (1, 2))
    stock = nnx.ConvTranspose(4, 6, (3, 2), strides=(2, 3), padding=pads, param_dtype=jnp.float64,
                              rngs=nnx.Rngs(0))
    ours = nnx.Conv(4, 6, (3, 2), input_dilation=(2, 3), padding=pads, param_dtype=jnp.float64,
                    rngs=nnx.Rngs(1), **JAXCNN)
    ours.kernel[...] = stock.kernel[...]
    ours.bias[...] = stock.bias[...]
    x = normal(7, (2, 5, 4, 4), jnp.float64)

    def loss(model, x):
        y = model(x)
        return jnp.sum(y * normal(8, y.shape, jnp.float64)), y

    grad = nnx.jit(nnx.grad(loss, argnums=(0, 1), has_aux=True))
    (g_s, gx_s), y_s = grad(stock, x)
    (g_o, gx_o), y_o = grad(ours, x)
    assert y_o.shape == y_s.shape
    assert_close(y_o, y_s)
    assert_close(gx_o, gx_s)
    assert_close(nnx.to_pure_dict(g_o), nnx.to_pure_dict(g_s))
