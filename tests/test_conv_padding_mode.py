"""`padding_mode` of `jaxcnn.conv`: reflect / replicate / circular borders whose deltas fold back onto
the units they copied; checked by hand, against the reference's autodiff and against PyTorch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn import reference
from tests.tolerances import assert_close, assert_dtype, compiled_vjp, normal

MODES = ["zeros", "reflect", "replicate", "circular"]

# 1-D, x = [x0, x1, x2, x3], padding (2, 1), a 1-tap kernel [1]: the output *is* the padded input, so
# the gradient of sum(delta * y) w.r.t. x adds up the deltas of every unit that copied x_i.
# delta = [1, 10, 100, 1000, 10000, 100000, 1000000] keeps each contribution readable as a digit.
HAND = {
    # zeros:     y = [0,  0,  x0, x1, x2, x3, 0 ] -> the border's deltas are dropped
    "zeros": [100, 1000, 10000, 100000],
    # reflect:   y = [x2, x1, x0, x1, x2, x3, x2]
    #   x0: 100; x1: 10 + 1000; x2: 1 + 10000 + 1000000; x3: 100000
    "reflect": [100, 1010, 1010001, 100000],
    # replicate: y = [x0, x0, x0, x1, x2, x3, x3]
    #   x0: 1 + 10 + 100; x1: 1000; x2: 10000; x3: 100000 + 1000000
    "replicate": [111, 1000, 10000, 1100000],
    # circular:  y = [x2, x3, x0, x1, x2, x3, x0]
    #   x0: 100 + 1000000; x1: 1000; x2: 1 + 10000; x3: 10 + 100000
    "circular": [1000100, 1000, 10001, 100010],
}


@pytest.mark.parametrize("mode", MODES)
def test_fold_back_by_hand(mode, x64):
    x = jnp.asarray([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1)
    w = jnp.ones((1, 1, 1))
    delta = jnp.asarray([10.0**i for i in range(7)]).reshape(1, 7, 1)
    for fn in (jaxcnn.conv1d, reference.conv1d):
        y, vjp = jax.vjp(lambda x_, fn=fn: fn(x_, w, padding=((2, 1),), padding_mode=mode), x)
        padded = {"zeros": [0, 0, 1, 2, 3, 4, 0], "reflect": [3, 2, 1, 2, 3, 4, 3],
                  "replicate": [1, 1, 1, 2, 3, 4, 4], "circular": [3, 4, 1, 2, 3, 4, 1]}[mode]
        np.testing.assert_array_equal(np.asarray(y).ravel(), padded)
        np.testing.assert_array_equal(np.asarray(vjp(delta)[0]).ravel(), HAND[mode])


CASES = [
    # (x shape, w shape, options)
    ((2, 7, 3), (3, 3, 4), dict(padding=2, stride=2)),
    ((2, 5, 6, 4), (3, 2, 2, 6), dict(padding=((2, 1), (1, 1)), dilation=(1, 2), groups=2)),
    ((1, 4, 5, 3, 2), (2, 3, 2, 2, 3), dict(padding="SAME", stride=(1, 2, 1))),
]


@pytest.mark.parametrize("mode", MODES[1:])
@pytest.mark.parametrize("x_shape, w_shape, options", CASES)
def test_rules_match_reference(mode, x_shape, w_shape, options, dtype):
    x, w, b = normal(0, x_shape, dtype), normal(1, w_shape, dtype), normal(2, w_shape[-1:], dtype)

    def run(fn):
        return compiled_vjp(lambda x, w, b: fn(x, w, b, padding_mode=mode, **options), x, w, b, seed=3)

    (y, grads), (y_ref, grads_ref) = run(jaxcnn.conv), run(reference.conv)
    assert_close(y, y_ref)
    assert_close(grads, grads_ref)
    assert_dtype(grads, dtype)


def test_second_order_matches_reference(x64):
    x, w = normal(4, (1, 6, 2), jnp.float64), normal(5, (3, 2, 2), jnp.float64)

    def hess_vec(fn):
        loss = lambda x: jnp.sum(jnp.tanh(fn(x, w, padding=(2, 1), padding_mode="reflect")))  # noqa: E731
        return jax.grad(lambda x: jnp.sum(jax.grad(loss)(x) * x))(x)

    assert_close(hess_vec(jaxcnn.conv1d), hess_vec(reference.conv1d))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_agrees_with_pytorch(mode, nd, x64):
    torch = pytest.importorskip("torch")
    size, k, pad, stride, dil, groups = (6, 5, 4)[:nd], (3, 2, 3)[:nd], (2, 1, 1)[:nd], 2, 1, 2
    x, w = normal(6, (2, *size, 4), jnp.float64), normal(7, (*k, 2, 6), jnp.float64)
    b = normal(8, (6,), jnp.float64)
    layer = getattr(torch.nn, f"Conv{nd}d")(4, 6, k, stride=stride, padding=pad, dilation=dil, groups=groups,
                                            padding_mode=mode, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.array(jnp.transpose(w, (nd + 1, nd, *range(nd))))))
        layer.bias.copy_(torch.from_numpy(np.array(b)))
    xt = torch.from_numpy(np.moveaxis(np.asarray(x), -1, 1).copy()).requires_grad_(True)
    yt = layer(xt)
    options = {"stride": stride, "padding": pad, "dilation": dil, "groups": groups, "padding_mode": mode}
    y, (dx, dw, db) = compiled_vjp(lambda x, w, b: jaxcnn.conv(x, w, b, **options), x, w, b, seed=9)
    assert_close(y, np.moveaxis(yt.detach().numpy(), 1, -1))
    ct = normal(9, y.shape, jnp.float64)
    yt.backward(torch.from_numpy(np.moveaxis(np.asarray(ct), -1, 1).copy()))
    assert_close(dx, np.moveaxis(xt.grad.numpy(), 1, -1))
    assert_close(dw, np.transpose(layer.weight.grad.numpy(), (*range(2, nd + 2), 1, 0)))
    assert_close(db, layer.bias.grad.numpy())


@pytest.mark.parametrize("fn", [jaxcnn.conv1d, reference.conv1d])
def test_errors(fn):
    x, w = jnp.ones((1, 3, 1)), jnp.ones((2, 1, 1))
    with pytest.raises(ValueError, match="`conv1d`: `padding_mode` must be one of"):
        fn(x, w, padding=1, padding_mode="mirror")
    with pytest.raises(ValueError, match="`conv1d`: `pad_value`.*padding_mode='replicate'"):
        fn(x, w, padding=1, padding_mode="replicate", pad_value=-1.0)
    with pytest.raises(ValueError, match="`conv1d`: `padding` \\(3, 3\\) along W must be smaller than the"):
        fn(x, w, padding=3, padding_mode="reflect")
    with pytest.raises(ValueError, match="`conv1d`: `padding` \\(4, 4\\) along W must be at most the input"):
        fn(x, w, padding=4, padding_mode="circular")
    assert fn(x, w, padding=3, padding_mode="circular").shape == (1, 8, 1)  # pad == size is allowed
    assert fn(x, w, padding=1, padding_mode="ZEROS", pad_value=-1.0).shape == (1, 4, 1)  # case-insensitive
