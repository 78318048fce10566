"""`ceil_mode` (max/avg/l2) and `dilation` (max_pool): against the reference's autodiff and PyTorch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn import reference
from tests.tolerances import assert_close, assert_dtype, compiled_vjp, normal


@pytest.mark.parametrize("n, window, stride, pad, expected", [
    (5, 2, 2, 0, 3),  # floor gives 2; ceil gives 3: the last window starts at 4, inside the input
    (4, 2, 2, 1, 3),  # (4 + 2 - 2) / 2 = 2 exactly: no change
    (5, 3, 3, 1, 2),  # ceil((5 + 2 - 3) / 3) + 1 = 3, but window 3 would start at 6 = 5 + 1 (past
                      # the input and the low padding): PyTorch's clause drops it -> 2
    (2, 3, 3, 0, 1),  # a window wider than the input: ceil(-1 / 3) + 1 = 1 (it was refused)
])
def test_ceil_mode_output_size(n, window, stride, pad, expected):
    x = jnp.zeros((1, n, 1))
    for fn in (jaxcnn.max_pool, jaxcnn.avg_pool, jaxcnn.l2_pool, reference.max_pool):
        assert fn(x, window, stride=stride, padding=pad, ceil_mode=True).shape == (1, expected, 1)


@pytest.mark.parametrize("kind", ["max", "avg", "avg_exclude", "l2"])
def test_ceil_mode_window_wider_than_the_input(kind, x64):
    """PyTorch pools a window wider than the padded input under `ceil_mode` when it starts inside:
    max_pool1d of extent 5 (3 taps, dilation 2) over 4 units, avg/l2 of 3 over 2. Rules, reference and
    PyTorch (optional) agree, values and gradients; with no window starting inside, an error."""
    x = normal(6, (2, 4 if kind == "max" else 2, 3), jnp.float64)
    options = {"max": dict(stride=3, dilation=2), "avg": {}, "avg_exclude": dict(count_include_pad=False),
               "l2": {}}[kind]
    name = "avg_pool" if kind.startswith("avg") else f"{kind}_pool"

    def run(module):
        return compiled_vjp(lambda x: getattr(module, name)(x, 3, ceil_mode=True, **options), x, seed=7)

    (y, (dx,)), (y_ref, (dx_ref,)) = run(jaxcnn), run(reference)
    assert y.shape == (2, 1, 3)
    assert_close((y, dx), (y_ref, dx_ref))
    if kind == "avg":  # the overhang past the input is not counted: the mean of the 2 real units
        assert_close(y[:, 0], jnp.mean(x, axis=1))
    torch = pytest.importorskip("torch") if kind != "l2" else None
    if torch is not None:
        xt = torch.from_numpy(np.moveaxis(np.array(x), -1, 1).copy()).requires_grad_(True)
        f = getattr(torch.nn.functional, f"{name}1d")
        yt = f(xt, 3, options.get("stride"), 0, ceil_mode=True,
               **({"dilation": 2} if kind == "max" else {"count_include_pad": kind == "avg"}))
        yt.backward(torch.from_numpy(np.moveaxis(np.array(normal(7, y.shape, jnp.float64)), -1, 1).copy()))
        assert_close((y, dx), (np.moveaxis(yt.detach().numpy(), 1, -1), np.moveaxis(xt.grad.numpy(), 1, -1)))
    with pytest.raises(ValueError, match=f"`{name}`: window extent 9 along W leaves no output .* even with "
                                         "`ceil_mode`"):
        getattr(jaxcnn, name)(x[:, :1], 9, stride=2, ceil_mode=True)


def test_dilated_max_pool_by_hand():
    # windows of 2 taps spaced 2 apart, stride 2: [x0, x2], [x2, x4], [x4, x6]
    x = jnp.asarray([1.0, 9.0, 3.0, 8.0, 3.0, 7.0, 2.0]).reshape(1, 7, 1)
    delta = jnp.asarray([1.0, 10.0, 100.0]).reshape(1, 3, 1)
    for fn in (jaxcnn.max_pool, reference.max_pool):
        y, vjp = jax.vjp(lambda x, fn=fn: fn(x, 2, stride=2, dilation=2), x)
        np.testing.assert_array_equal(np.ravel(y), [3.0, 3.0, 3.0])
        # window 1 [x2=3, x4=3] is a tie: the first unit, x2, wins; window 2 [x4=3, x6=2]: x4
        np.testing.assert_array_equal(np.ravel(vjp(delta)[0]), [0, 0, 11.0, 0, 100.0, 0, 0])


CASES = [
    # (x shape, window, options)
    ((2, 7, 3), 3, dict(stride=2, padding=1, ceil_mode=True)),
    ((2, 6, 7, 2), (2, 3), dict(stride=(2, 2), dilation=(2, 1), padding=((1, 1), (0, 1)))),
    ((1, 5, 6, 4, 2), 2, dict(stride=(2, 1, 3), dilation=(1, 2, 1), ceil_mode=True)),
]


@pytest.mark.parametrize("x_shape, window, options", CASES)
def test_max_pool_matches_reference(x_shape, window, options, dtype):
    x = normal(0, x_shape, dtype)
    x = x.at[..., 0].set(jnp.round(x[..., 0]))  # ties in one channel: routed to the first maximum

    def run(fn):
        return compiled_vjp(lambda x: fn(x, window, **options), x, seed=1)

    out, ref = run(jaxcnn.max_pool), run(reference.max_pool)
    assert_close(out, ref)
    assert_dtype(out, dtype)


@pytest.mark.parametrize("fn, extra", [("avg_pool", dict(count_include_pad=True)),
                                       ("avg_pool", dict(count_include_pad=False)), ("l2_pool", {})])
def test_ceil_mode_avg_l2_match_reference(fn, extra, dtype):
    x = normal(2, (2, 7, 5, 3), dtype)
    options = dict(stride=(2, 3), padding=1, ceil_mode=True, **extra)

    def run(f):
        return compiled_vjp(lambda x: f(x, (3, 2), **options), x, seed=3)

    assert_close(run(getattr(jaxcnn, fn)), run(getattr(reference, fn)))


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("kind", ["max_dilated", "max_ceil", "avg_ceil", "avg_ceil_exclude"])
def test_agrees_with_pytorch(kind, nd, x64):
    torch = pytest.importorskip("torch")
    size, window, stride, pad = (7, 6, 5)[:nd], (3, 2, 2)[:nd], (2, 2, 3)[:nd], (1, 1, 0)[:nd]
    x = normal(4, (2, *size, 3), jnp.float64)
    if kind.startswith("max"):
        dilation, ceil = ((2, 1, 2)[:nd], False) if kind == "max_dilated" else ((1,) * nd, True)
        ours = lambda x: jaxcnn.max_pool(x, window, stride=stride, padding=pad, dilation=dilation,  # noqa: E731
                                         ceil_mode=ceil)
        theirs = lambda t: getattr(torch.nn.functional, f"max_pool{nd}d")(  # noqa: E731
            t, window, stride, pad, dilation=dilation, ceil_mode=ceil)
    else:
        include = kind == "avg_ceil"
        ours = lambda x: jaxcnn.avg_pool(x, window, stride=stride, padding=pad, ceil_mode=True,  # noqa: E731
                                         count_include_pad=include)
        theirs = lambda t: getattr(torch.nn.functional, f"avg_pool{nd}d")(  # noqa: E731
            t, window, stride, pad, ceil_mode=True, count_include_pad=include)
    xt = torch.from_numpy(np.moveaxis(np.array(x), -1, 1).copy()).requires_grad_(True)
    yt = theirs(xt)
    y, (dx,) = compiled_vjp(ours, x, seed=5)
    assert_close(y, np.moveaxis(yt.detach().numpy(), 1, -1))
    ct = normal(5, y.shape, jnp.float64)
    yt.backward(torch.from_numpy(np.moveaxis(np.array(ct), -1, 1).copy()))
    assert_close(dx, np.moveaxis(xt.grad.numpy(), 1, -1))


def test_errors():
    x = jnp.ones((1, 6, 1))
    with pytest.raises(TypeError, match="`max_pool`: `ceil_mode` must be a bool"):
        jaxcnn.max_pool(x, 2, ceil_mode=1)
    with pytest.raises(ValueError, match="`max_pool`: `dilation` must be >= 1"):
        jaxcnn.max_pool(x, 2, dilation=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'dilation'"):
        jaxcnn.avg_pool(x, 2, dilation=2)
