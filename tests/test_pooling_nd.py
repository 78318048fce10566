"""Pooling in 1 and 3 spatial dims (`max_pool`, `avg_pool`, `l2_pool` on ``(N, *spatial, C)``): a NumPy loop
(first maximum in row-major window order wins, NaN wins, -inf padding for max and 0 for avg/l2), numbers and
gradients worked by hand, ``jax.vjp`` of `jaxcnn.reference` with random cotangents, PyTorch's
``max_pool{1,3}d`` / ``avg_pool{1,3}d`` (if installed), and bad arguments. The 2-D case is
`tests/test_pooling.py`'s.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn import _lowering, reference
from tests.tolerances import assert_close, assert_dtype, normal


# ------------------------------------------------------------------------------ the NumPy loop
def _per_dim(value, nd):
    return (value,) * nd if isinstance(value, int) else tuple(value)


def np_pool_pads(padding, n, window, stride):
    nd = len(n)
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return [(0, 0)] * nd
        if mode == "FULL":
            return [(w - 1, w - 1) for w in window]
        pads = []  # SAME: ceil(n / s) outputs, the odd unit at the high end
        for i in range(nd):
            total = max((-(-n[i] // stride[i]) - 1) * stride[i] + window[i] - n[i], 0)
            pads.append((total // 2, total - total // 2))
        return pads
    if isinstance(padding, int):
        return [(padding, padding)] * nd
    return [tuple(p) if isinstance(p, tuple) else (p, p) for p in padding]


def _windows(kind, x, window, stride, padding):
    """Yield (output index, slices into the padded input, the window's values (N, P, C))."""
    nd = x.ndim - 2
    win = _per_dim(window, nd)
    s = win if stride is None else _per_dim(stride, nd)
    pads = np_pool_pads(padding, x.shape[1:-1], win, s)
    xp = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=-np.inf if kind == "max" else 0.0)
    out = [(xp.shape[1 + i] - win[i]) // s[i] + 1 for i in range(nd)]
    return xp, pads, out, [
        (o, sl, xp[(slice(None), *sl)].reshape(x.shape[0], -1, x.shape[-1]))
        for o in itertools.product(*map(range, out))
        for sl in [tuple(slice(o[i] * s[i], o[i] * s[i] + win[i]) for i in range(nd))]
    ]


def np_pool(kind, x, window, stride=None, padding="VALID", count_include_pad=True):
    """max: the first maximum in row-major window order (np.argmax; a NaN counts as the maximum);
    avg: sum / prod(window), or / number of real units; l2: sqrt(sum x^2)."""
    x = np.asarray(x, np.float64)
    xp, pads, out, windows = _windows(kind, x, window, stride, padding)
    real = np.pad(np.ones(x.shape[1:-1]), pads)
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    for o, sl, blk in windows:
        if kind == "max":
            v = np.take_along_axis(blk, np.argmax(blk, axis=1)[:, None], axis=1)[:, 0]
        elif kind == "avg":
            v = blk.sum(1) / (blk.shape[1] if count_include_pad else real[sl].sum())
        else:
            v = np.sqrt((blk**2).sum(1))
        y[(slice(None), *o)] = v
    return y


def np_pool_vjp(kind, x, ct, window, stride=None, padding="VALID", count_include_pad=True):
    """max routes each delta to its window's winner; avg spreads delta / count over the window;
    l2 gives delta * x / y (0 where y == 0); overlapping windows accumulate."""
    x, ct = np.asarray(x, np.float64), np.asarray(ct, np.float64)
    xp, pads, _, windows = _windows(kind, x, window, stride, padding)
    real = np.pad(np.ones(x.shape[1:-1]), pads)
    dxp = np.zeros_like(xp)
    n_idx, c_idx = np.arange(x.shape[0])[:, None], np.arange(x.shape[-1])[None, :]
    for o, sl, blk in windows:
        delta = ct[(slice(None), *o)]  # (N, C)
        view = dxp[(slice(None), *sl)].reshape(x.shape[0], -1, x.shape[-1])  # a copy
        if kind == "max":
            view[n_idx, np.argmax(blk, axis=1), c_idx] += delta
        elif kind == "avg":
            view += delta[:, None, :] / (blk.shape[1] if count_include_pad else real[sl].sum())
        else:
            y = np.sqrt((blk**2).sum(1))
            view += np.where(y > 0, delta / np.where(y > 0, y, 1.0), 0.0)[:, None, :] * blk
        dxp[(slice(None), *sl)] = view.reshape(dxp[(slice(None), *sl)].shape)
    return dxp[(slice(None), *(slice(lo, lo + n) for (lo, _), n in zip(pads, x.shape[1:-1], strict=True)))]


def test_numpy_loop_against_lax():
    x = normal(0, (2, 5, 6, 4, 3), jnp.float32)
    y = jax.lax.reduce_window(x, np.float32(-np.inf), jax.lax.max, (1, 3, 2, 2, 1), (1, 2, 1, 2, 1),
                              ((0, 0), (1, 1), (0, 1), (1, 0), (0, 0)))
    assert_close(y, np_pool("max", x, (3, 2, 2), (2, 1, 2), ((1, 1), (0, 1), (1, 0))), dtype=jnp.float32)
    g = normal(1, y.shape, jnp.float32)
    def window_mean(z):
        return jax.lax.reduce_window(z, np.float32(0), jax.lax.add, (1, 3, 2, 2, 1), (1, 2, 1, 2, 1),
                                     ((0, 0), (1, 1), (0, 1), (1, 0), (0, 0))) / np.float32(12)

    mean, pull = jax.vjp(window_mean, x)
    assert_close(mean, np_pool("avg", x, (3, 2, 2), (2, 1, 2), ((1, 1), (0, 1), (1, 0))),
                 dtype=jnp.float32)
    assert_close(pull(g)[0], np_pool_vjp("avg", x, g, (3, 2, 2), (2, 1, 2), ((1, 1), (0, 1), (1, 0))),
                 dtype=jnp.float32)


# ---------------------------------------------------------------------------------- by hand
def _nwc(a):
    return jnp.asarray(np.asarray(a, np.float32)[None, :, None])


def _w(a):
    return np.asarray(a)[0, :, 0]


def _vjp(f, x, ct):
    """f(x) and its VJP for cotangent ct, compiled as one program (faster than op by op)."""
    def run(x, ct):
        y, pull = jax.vjp(f, x)
        return y, pull(ct)[0]

    return jax.jit(run)(x, ct)


def _pull(f, x, delta):
    y, dx = _vjp(f, x, _nwc(delta))
    return _w(y), _w(dx)


@pytest.mark.parametrize("module", [jaxcnn, reference], ids=["custom", "reference"])
def test_1d_max_by_hand(module):
    # windows [1, 3], [2, 5], [4, 0] -> [3, 5, 4]; each delta goes to its winner
    y, dx = _pull(lambda x: module.max_pool(x, 2), _nwc([1, 3, 2, 5, 4, 0]), [1, 2, 3])
    np.testing.assert_array_equal(y, [3, 5, 4])
    np.testing.assert_array_equal(dx, [0, 1, 0, 2, 3, 0])
    # overlapping (window 3, stride 1): [1, 3, 2] -> 3, [3, 2, 5] -> 5, [2, 5, 4] -> 5; the 5 collects
    # the deltas of two windows: 2 + 3
    y, dx = _pull(lambda x: module.max_pool(x, 3, stride=1), _nwc([1, 3, 2, 5, 4]), [1, 2, 3])
    np.testing.assert_array_equal(y, [3, 5, 5])
    np.testing.assert_array_equal(dx, [0, 1, 0, 5, 0])
    # a tie goes to the first maximum: [2, 2] -> unit 0, [1, 1] -> unit 2
    y, dx = _pull(lambda x: module.max_pool(x, 2), _nwc([2, 2, 1, 1]), [1, 2])
    np.testing.assert_array_equal(y, [2, 1])
    np.testing.assert_array_equal(dx, [1, 0, 2, 0])
    # padding with -inf (not 0): [-inf, -1] -> -1, [-2, -3] -> -2
    y, dx = _pull(lambda x: module.max_pool(x, 2, padding=1), _nwc([-1, -2, -3]), [1, 2])
    np.testing.assert_array_equal(y, [-1, -2])
    np.testing.assert_array_equal(dx, [1, 2, 0])


@pytest.mark.parametrize("module", [jaxcnn, reference], ids=["custom", "reference"])
def test_1d_avg_and_l2_by_hand(module):
    # window 2, stride 1 on [1, 2, 3, 4]: [1.5, 2.5, 3.5]; unit i gets the halves of the deltas of
    # the windows that hold it: [1/2, (1+2)/2, (2+3)/2, 3/2]
    y, dx = _pull(lambda x: module.avg_pool(x, 2, stride=1), _nwc([1, 2, 3, 4]), [1, 2, 3])
    np.testing.assert_array_equal(y, [1.5, 2.5, 3.5])
    np.testing.assert_array_equal(dx, [0.5, 1.5, 2.5, 1.5])
    # padding 1 on [2, 4, 6] -> [0, 2, 4, 6, 0], windows [0, 2] and [4, 6]
    y, dx = _pull(lambda x: module.avg_pool(x, 2, padding=1), _nwc([2, 4, 6]), [1, 1])
    np.testing.assert_array_equal(y, [1, 5])  # (0 + 2) / 2, (4 + 6) / 2
    np.testing.assert_array_equal(dx, [0.5, 0.5, 0.5])
    # count_include_pad=False: the first window has one real unit: 2 / 1
    y, dx = _pull(lambda x: module.avg_pool(x, 2, padding=1, count_include_pad=False), _nwc([2, 4, 6]),
                  [1, 1])
    np.testing.assert_array_equal(y, [2, 5])
    np.testing.assert_array_equal(dx, [1, 0.5, 0.5])
    # l2: [3, 4] -> 5, [0, 0] -> 0; gradient 10 * [3, 4] / 5 = [6, 8], and 0 (not NaN) at y == 0
    y, dx = _pull(lambda x: module.l2_pool(x, 2), _nwc([3, 4, 0, 0]), [10, 7])
    np.testing.assert_allclose(y, [5, 0], rtol=1e-6)
    np.testing.assert_allclose(dx, [6, 8, 0, 0], rtol=1e-6)


def test_1d_nan_wins_and_takes_the_delta():
    y, dx = _pull(lambda x: jaxcnn.max_pool(x, 2), _nwc([1, np.nan, 2, 0]), [7, 9])
    assert np.isnan(y[0]) and y[1] == 2
    np.testing.assert_array_equal(dx, [0, 7, 9, 0])
    y_ref = _w(reference.max_pool(_nwc([1, np.nan, 2, 0]), 2))
    np.testing.assert_array_equal(np.isnan(y_ref), [True, False])


def _ndhwc(a):
    return jnp.asarray(np.asarray(a, np.float32)[None, ..., None])


@pytest.mark.parametrize("module", [jaxcnn, reference], ids=["custom", "reference"])
def test_3d_by_hand(module):
    # max over a 2x2x2 block: the 7 at (0, 0, 1) (row-major flat index 1) and at (1, 0, 0) (index 4)
    # tie; the first wins and takes the whole delta
    x = _ndhwc([[[1, 7], [3, 2]], [[7, 0], [5, 4]]])
    y, dx = _vjp(lambda z: module.max_pool(z, 2), x, jnp.full((1, 1, 1, 1, 1), 10.0))
    np.testing.assert_array_equal(np.asarray(y).ravel(), [7])
    expected = np.zeros((2, 2, 2))
    expected[0, 0, 1] = 10
    np.testing.assert_array_equal(dx[0, ..., 0], expected)

    # avg over 2x2x2 blocks of a 2x4x2 input: two blocks along the middle axis, deltas 1 and 2, each
    # spread as delta / (2*2*2)
    x = normal(0, (1, 2, 4, 2, 1), jnp.float32)
    delta = jnp.asarray(np.array([1, 2], np.float32).reshape(1, 1, 2, 1, 1))
    y, dx = _vjp(lambda z: module.avg_pool(z, 2), x, delta)
    assert_close(y[0, 0, :, 0, 0], np.asarray(x, np.float64)[0, :, :, :, 0].reshape(2, 2, 2, 2)
                 .mean(axis=(0, 2, 3)), dtype=jnp.float32)
    expected = np.zeros((2, 4, 2))
    expected[:, :2, :], expected[:, 2:, :] = 1 / 8, 2 / 8
    np.testing.assert_array_equal(dx[0, ..., 0], expected)

    # overlapping avg, window 2, stride 1 on 3x3x3, all deltas 1: a unit is in c_a * c_b * c_c windows
    # with c = [1, 2, 1] per axis, each giving 1/8: corners 1/8, edges 2/8, faces 4/8, the centre 8/8
    _, dx = _vjp(lambda z: module.avg_pool(z, 2, stride=1), jnp.zeros((1, 3, 3, 3, 1)),
                 jnp.ones((1, 2, 2, 2, 1)))
    c = np.array([1, 2, 1])
    counts = c[:, None, None] * c[None, :, None] * c[None, None, :]
    np.testing.assert_array_equal(dx[0, ..., 0], counts / 8)
    assert counts[1, 1, 1] == 8 and counts[0, 1, 1] == 4 and counts[0, 0, 1] == 2 and counts[0, 0, 0] == 1

    # l2 over a 1x2x2 block holding 1, 2, 2, 4: sqrt(1 + 4 + 4 + 16) = 5; gradient 5 * x / 5 = x
    x = _ndhwc([[[1, 2], [2, 4]]])
    y, dx = _vjp(lambda z: module.l2_pool(z, (1, 2, 2)), x, jnp.full((1, 1, 1, 1, 1), 5.0))
    np.testing.assert_allclose(np.asarray(y).ravel(), [5], rtol=1e-6)
    np.testing.assert_allclose(dx, x, rtol=1e-6)


# ---------------------------------------------------------------------------------- the grid
# (x spatial shape, window, stride, padding): 1-D and 3-D; non-overlapping, overlapping, stride > window;
# SAME, per-dim and (lo, hi) padding. (VALID 3-D is worked by hand below, FULL in test_pooling.py.)
CONFIGS = [
    ((7,), 2, None, "VALID"),
    ((8,), 3, (2,), (1,)),
    ((7,), 2, 3, ((1, 0),)),
    ((5, 4, 4), (3, 2, 2), (2, 1, 2), "SAME"),
    ((3, 4, 5), (2, 3, 2), 1, ((1, 0), (0, 2), (1, 1))),
]
VARIANTS = [("max", "max_pool", {}), ("avg", "avg_pool", {"count_include_pad": True}),
            ("avg", "avg_pool", {"count_include_pad": False}), ("l2", "l2_pool", {})]
VARIANT_IDS = ["max", "avg-incl", "avg-excl", "l2"]
F64_CONFIGS = (3,)  # float64 (tolerance 1e-10) on a subset, to keep the file fast
GRID = [
    pytest.param(config, variant, dt, id=f"{dt}-{len(config[0])}d-{config[1:]}-{vid}")
    for c, config in enumerate(CONFIGS)
    for variant, vid in zip(VARIANTS, VARIANT_IDS, strict=True)
    for dt in (("float32", "float64") if c in F64_CONFIGS else ("float32",))
    if vid != "avg-excl" or config[3] != "VALID"
]


@functools.partial(jax.jit, static_argnums=(0, 1, 4))
def _both(name, window, x, ct, kw):
    """Value and VJP (cotangent ct) of the rule and of the reference, compiled together."""
    out = []
    for module in (jaxcnn, reference):
        y, pull = jax.vjp(functools.partial(getattr(module, name), window=window, **dict(kw)), x)
        out.append((y, pull(ct)[0]))
    return out


@pytest.mark.parametrize("config, variant, dtype", GRID, indirect=["dtype"])
def test_forward_and_vjp(config, variant, dtype):
    spatial, window, stride, padding = config
    kind, name, extra = variant
    x = normal(0, (2, *spatial, 2), dtype)
    kw = {"stride": stride, "padding": padding, **extra}
    expected = np_pool(kind, x, window, **kw)
    ct = normal(1, expected.shape, dtype)
    (y, dx), (y_ref, dx_ref) = _both(name, window, x, ct, tuple(kw.items()))
    assert y.shape == expected.shape
    assert_close(y, expected, dtype=dtype)
    assert_close(y_ref, expected, dtype=dtype)
    assert_close(dx, np_pool_vjp(kind, x, ct, window, **kw), dtype=dtype)
    assert_close(dx, dx_ref)
    assert_dtype((y, dx), dtype)


def test_ties_in_3d_agree_with_reference_and_numpy():
    """Small integers: most 2x2x2 windows hold ties; the first maximum takes the delta everywhere."""
    x = jnp.asarray(np.random.default_rng(5).integers(0, 3, (2, 4, 4, 4, 2)), jnp.float32)
    ct = normal(2, (2, 3, 3, 3, 2), jnp.float32)
    (y, dx), (y_ref, dx_ref) = _both("max_pool", 2, x, ct, (("stride", 1),))
    np.testing.assert_array_equal(y, y_ref)
    assert_close(dx, dx_ref)  # overlapping windows: sums in another order
    assert_close(dx, np_pool_vjp("max", x, ct, 2, 1), dtype=jnp.float32)


@pytest.mark.parametrize("pool", ["auto", "by_dim"])
@pytest.mark.parametrize("x_shape, window, stride, padding", [
    ((2, 11, 3), 3, 2, 1),  # 1-D
    ((2, 7, 8, 3), 3, 2, ((1, 0), (1, 1))),  # 2-D: one reduction per axis, the columns first
    ((1, 9, 7, 2), (4, 2), (2, 1), 1),
    ((1, 5, 6, 5, 2), (3, 2, 3), (2, 1, 2), (1, 1, 0)),  # 3-D
])
def test_max_by_axis_routes_to_the_first_winner(x_shape, window, stride, padding, pool):
    """Windows that do not tile: the max and its winner found one spatial axis at a time must be
    the first maximum of the whole window in row-major order (ties everywhere, NaNs and -inf among
    them), as the NumPy loop's `np.argmax` finds it; and so must the deltas' routing, by a one-hot
    of the window's taps or (as for large inputs) one spatial dim at a time."""
    rng = np.random.default_rng(11)
    x = rng.integers(0, 3, x_shape).astype(np.float32)
    x[rng.random(x_shape) < 0.05] = np.nan
    x[rng.random(x_shape) < 0.05] = -np.inf
    kw = {"stride": stride, "padding": padding}
    y_np = np_pool("max", x, window, **kw)
    ct = rng.integers(1, 5, y_np.shape).astype(np.float32)  # integers: every sum exact

    def run(x, ct):
        y, pull = jax.vjp(lambda x_: jaxcnn.max_pool(x_, window, **kw), x)
        return y, pull(ct)[0]

    with _lowering.force(pool=pool):
        y, dx = jax.jit(run)(jnp.asarray(x), jnp.asarray(ct))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y_np))
    np.testing.assert_array_equal(np.nan_to_num(y), np.nan_to_num(y_np))
    np.testing.assert_array_equal(dx, np_pool_vjp("max", x, ct, window, **kw))


# ------------------------------------------------------------------------------------ PyTorch
TORCH_CASES = [
    ((2, 8, 3), 3, 2, 1),
    ((1, 5, 6, 5, 2), (3, 2, 3), (2, 1, 2), (1, 1, 0)),
]


@pytest.mark.parametrize("kind", ["max", "avg-incl", "avg-excl"])
@pytest.mark.parametrize("x_shape, window, stride, padding", TORCH_CASES,
                         ids=["1d-w3-s2-p1", "3d-mixed"])
def test_matches_pytorch(kind, x_shape, window, stride, padding, x64):
    torch = pytest.importorskip("torch")
    nd = len(x_shape) - 2
    x = normal(0, x_shape, jnp.float64)
    name = "max_pool" if kind == "max" else "avg_pool"
    kw = {} if kind == "max" else {"count_include_pad": kind == "avg-incl"}
    f = jax.jit(functools.partial(getattr(jaxcnn, name), window=window, stride=stride, padding=padding, **kw))
    y, pull = jax.vjp(f, x)
    ct = normal(1, y.shape, jnp.float64)
    xt = torch.tensor(np.moveaxis(np.asarray(x), -1, 1), requires_grad=True)
    fn = getattr(torch.nn.functional, f"{name}{nd}d")
    yt = fn(xt, window, stride=stride if stride is not None else window, padding=padding, **kw)
    yt.backward(torch.tensor(np.moveaxis(np.asarray(ct), -1, 1)))
    assert_close(y, np.moveaxis(yt.detach().numpy(), 1, -1))
    assert_close(pull(ct)[0], np.moveaxis(xt.grad.numpy(), 1, -1))


# ---------------------------------------------------------------------------------- bad input
X1 = np.zeros((1, 6, 2), np.float32)
X3 = np.zeros((1, 4, 4, 4, 2), np.float32)
BOTH = (ValueError, TypeError)  # the contract does not fix the type of a wrong-length tuple
BAD = [
    ("window-2-tuple-on-1d", X1, (2, 2), {}, BOTH, "window"),
    ("window-2-tuple-on-3d", X3, (2, 2), {}, BOTH, "window"),
    ("window-4-tuple-on-3d", X3, (2, 2, 2, 2), {}, BOTH, "window"),
    ("window-0-in-tuple", X3, (2, 0, 2), {}, ValueError, "window"),
    ("stride-2-tuple-on-3d", X3, 2, {"stride": (1, 1)}, BOTH, "stride"),
    ("stride-0", X1, 2, {"stride": 0}, ValueError, "stride"),
    ("padding-3-ints-on-1d", X1, 2, {"padding": (1, 1, 1)}, BOTH, "padding"),
    ("padding-2-pairs-on-3d", X3, 2, {"padding": ((0, 0), (0, 0))}, BOTH, "padding"),
    ("padding-equals-window-1d", X1, 2, {"padding": 2}, ValueError, "padding"),
    ("padding-equals-window-3d", X3, 2, {"padding": ((0, 0), (0, 2), (0, 0))}, ValueError, "padding"),
    ("padding-above-window-3d", X3, (3, 2, 3), {"padding": (1, 2, 1)}, ValueError, "padding"),
    ("padding-negative", X3, 2, {"padding": -1}, ValueError, "padding"),
    ("x-rank-2", np.zeros((4, 2), np.float32), 2, {}, ValueError, "x"),
    ("x-rank-6", np.zeros((1, 2, 2, 2, 2, 1), np.float32), 2, {}, ValueError, "x"),
    ("window-larger-than-input", X1, 7, {}, ValueError, "window"),  # "extent 7 ... a smaller `window`"
]


@pytest.mark.parametrize("module", [jaxcnn, reference], ids=["custom", "reference"])
@pytest.mark.parametrize("name", ["max_pool", "avg_pool", "l2_pool"])
@pytest.mark.parametrize("x, window, kwargs, exc, arg", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_raises(module, name, x, window, kwargs, exc, arg):
    pattern = f"`{name}`: " + (f".*`{arg}`" if arg else "")
    with pytest.raises(exc, match=pattern):
        getattr(module, name)(jnp.asarray(x), window, **kwargs)
