"""jaxcnn's Equinox drop-ins (`jaxcnn.interop.Conv*`, `ConvTranspose*`, `swap_equinox_convs`): the same
outputs and gradients as the stock modules, under `eqx.filter_jit` and `jax.vmap`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from jaxcnn import interop
from tests.tolerances import assert_close, assert_dtype, normal

eqx = pytest.importorskip("equinox")

CONVS = [
    # (nd, options) for eqx.nn.Conv: padding forms, padding_mode, groups, dilation, stride
    (1, dict(padding="SAME", stride=2)),
    (1, dict(padding=((2, 1),), padding_mode="REFLECT", dilation=2)),
    (2, dict(padding="SAME_LOWER", groups=2)),
    (2, dict(padding=(1, 2), padding_mode="CIRCULAR", stride=(2, 1))),
    (2, dict(padding=1, padding_mode="REPLICATE", use_bias=False)),
    (3, dict(padding="VALID", dilation=(1, 2, 1), groups=2)),
]
TRANSPOSES = [
    (1, dict(stride=2, padding=1, output_padding=1)),
    (2, dict(stride=(2, 3), padding="SAME", groups=2, dilation=(1, 2))),
    (2, dict(stride=2, padding="SAME_LOWER", output_padding=1)),
    (3, dict(stride=(1, 2, 2), padding="VALID")),
    (1, dict(stride=2, padding=3)),  # padding past the kernel's extent crops: was refused after the swap
]


def _compare(stock, size, dtype):
    ours = interop.swap_equinox_convs(stock)
    assert type(ours) is not type(stock) and isinstance(ours, type(stock))
    assert ours.weight is stock.weight  # weights kept, not copied
    x = normal(0, (3, stock.in_channels, *size), dtype)

    @eqx.filter_jit
    def run(model, x):
        def loss(model, x):
            y = jax.vmap(model)(x)  # Equinox modules are unbatched: vmap over the batch
            return jnp.sum(y * normal(1, y.shape, dtype)), y  # a random cotangent, not a plain sum

        return eqx.filter_grad(lambda m, x: loss(m, x), has_aux=True)(model, x), jax.grad(
            lambda x: loss(model, x)[0])(x)

    (g_s, y_s), gx_s = run(stock, x)
    (g_o, y_o), gx_o = run(ours, x)
    assert y_o.shape == y_s.shape
    assert_close(y_o, y_s)
    assert_close(gx_o, gx_s)
    assert_close((g_o.weight, g_o.bias), (g_s.weight, g_s.bias))
    assert_dtype((gx_o, g_o.weight), dtype)


@pytest.mark.parametrize("nd, options", CONVS)
def test_conv_matches_equinox(nd, options, x64):
    dtype = jnp.float64  # the tight check; float32 runs in test_swap_whole_model
    stock = eqx.nn.Conv(nd, 4, 6, (3, 2, 3)[:nd], dtype=dtype, key=jax.random.key(0), **options)
    _compare(stock, (7, 6, 5)[:nd], dtype)


@pytest.mark.parametrize("nd, options", TRANSPOSES)
def test_conv_transpose_matches_equinox(nd, options, x64):
    dtype = jnp.float64  # the tight check; float32 runs in test_swap_whole_model
    stock = eqx.nn.ConvTranspose(nd, 4, 6, (3, 2, 3)[:nd], dtype=dtype, key=jax.random.key(0), **options)
    _compare(stock, (5, 4, 3)[:nd], dtype)


def test_drop_in_classes_construct_like_equinox():
    ours = interop.Conv2d(3, 5, 3, padding=1, key=jax.random.key(2))
    stock = eqx.nn.Conv2d(3, 5, 3, padding=1, key=jax.random.key(2))
    assert isinstance(ours, eqx.nn.Conv2d)
    x = normal(3, (3, 8, 8), jnp.float32)
    assert_close(ours(x), stock(x))
    t = interop.ConvTranspose1d(2, 3, 3, stride=2, key=jax.random.key(3))
    assert t(jnp.ones((2, 4))).shape == eqx.nn.ConvTranspose1d(2, 3, 3, stride=2, key=jax.random.key(3))(
        jnp.ones((2, 4))).shape == (3, 9)


class _Net(eqx.Module):
    convs: list
    head: eqx.nn.Linear

    def __init__(self, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.convs = [eqx.nn.Conv2d(1, 4, 3, padding=1, key=k1),
                      eqx.nn.Conv2d(4, 4, 3, stride=2, padding_mode="REFLECT", padding=1, key=k2),
                      eqx.nn.ConvTranspose2d(4, 2, 2, stride=2, key=k3)]
        self.head = eqx.nn.Linear(2 * 8 * 8, 3, key=k4)

    def __call__(self, x):
        for conv in self.convs:
            x = jax.nn.relu(conv(x))
        return self.head(x.reshape(-1))


def test_swap_whole_model():
    stock = _Net(jax.random.key(4))
    ours = interop.swap_equinox_convs(stock)
    assert [type(c).__module__ for c in ours.convs] == ["jaxcnn.interop"] * 3
    assert type(ours.head) is eqx.nn.Linear
    assert interop.swap_equinox_convs(ours).convs[0] is ours.convs[0]  # swapping twice changes nothing
    x = normal(5, (2, 1, 8, 8), jnp.float32)
    weights = normal(6, (2, 3), jnp.float32)

    @eqx.filter_jit
    def loss_and_grad(model):
        return eqx.filter_value_and_grad(lambda m: jnp.sum(jax.vmap(m)(x) * weights))(model)

    (l_s, g_s), (l_o, g_o) = loss_and_grad(stock), loss_and_grad(ours)
    assert_close(l_o, l_s)
    assert_close([c.weight for c in g_o.convs], [c.weight for c in g_s.convs])


def test_what_lax_reads_and_what_is_left_to_equinox():
    """The drop-in refused zero paddings Equinox runs (negative ones, windows wider than the padded
    input, no input); `swap_equinox_convs` made a circular transposed conv into a layer that refused
    every call (an audit's findings): it is now left as Equinox's."""
    key = jax.random.key(0)
    for stock, x in ((eqx.nn.Conv1d(2, 3, 3, padding=-1, key=key), normal(7, (2, 8), jnp.float32)),
                     (eqx.nn.Conv2d(2, 3, 5, key=key), normal(7, (2, 3, 3), jnp.float32)),
                     (eqx.nn.Conv1d(2, 3, 1, padding=((1, -2),), stride=2, key=key),
                      normal(7, (2, 9), jnp.float32)),
                     (eqx.nn.Conv1d(2, 3, 1, key=key), jnp.ones((2, 0)))):
        ours = interop.swap_equinox_convs(stock)
        assert type(ours).__module__ == "jaxcnn.interop"
        y_s, vjp_s = jax.vjp(lambda m, x: m(x), stock, x)
        y_o, vjp_o = jax.vjp(lambda m, x: m(x), ours, x)
        assert y_o.shape == y_s.shape
        assert_close(y_o, y_s)
        ct = normal(8, y_s.shape, jnp.float32)
        (g_s, gx_s), (g_o, gx_o) = vjp_s(ct), vjp_o(ct)
        assert_close((g_o.weight, g_o.bias, gx_o), (g_s.weight, g_s.bias, gx_s))
    t = eqx.nn.ConvTranspose1d(2, 3, 3, padding="SAME", padding_mode="CIRCULAR", key=key)
    assert interop.swap_equinox_convs(t) is t and interop.swap_equinox_convs([t])[0] is t


def test_errors():
    t = interop.ConvTranspose1d(2, 3, 3, padding="SAME", padding_mode="CIRCULAR", key=jax.random.key(0))
    with pytest.raises(NotImplementedError, match="`ConvTranspose`: `padding_mode` 'CIRCULAR'"):
        t(jnp.ones((2, 5)))
    c = interop.Conv1d(2, 3, 3, key=jax.random.key(0))
    with pytest.raises(ValueError, match="`Conv`: `x` must have rank 2"):
        c(jnp.ones((1, 2, 5)))
