"""N-d convolution (`jaxcnn.conv`, `conv1d`, `conv3d`, `conv_input_grad`, `conv_weight_grad`) in 1 and 3
spatial dims: against a plain NumPy loop (float64), against ``jax.vjp`` of `jaxcnn.reference.conv` with
random cotangents, against numbers worked by hand, and side by side with PyTorch (if installed).

The 2-D case is `tests/test_conv.py`'s; here `conv2d` is only checked to be `conv` on 4-D inputs.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxcnn
from jaxcnn import reference
from tests.tolerances import assert_close, assert_dtype, normal

GRAD_OPTIONS = ("stride", "padding", "dilation", "groups", "flip")  # conv_input_grad's keywords


# ------------------------------------------------------------------------------ the NumPy loop
def _per_dim(value, nd):
    return (value,) * nd if isinstance(value, int) else tuple(value)


def np_pads(padding, n, k, stride, dilation):
    """Explicit ``[(lo, hi)] * nd`` from any padding form (independent of jaxcnn's resolver)."""
    nd = len(n)
    extent = [dilation[i] * (k[i] - 1) + 1 for i in range(nd)]
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return [(0, 0)] * nd
        if mode == "FULL":
            return [(e - 1, e - 1) for e in extent]
        pads = []  # SAME: ceil(n / s) outputs, the odd unit at the high end
        for i in range(nd):
            total = max((-(-n[i] // stride[i]) - 1) * stride[i] + extent[i] - n[i], 0)
            pads.append((total // 2, total - total // 2))
        return pads
    if isinstance(padding, int):
        return [(padding, padding)] * nd
    return [tuple(p) if isinstance(p, tuple) else (p, p) for p in padding]


def np_conv(x, w, b=None, *, stride=1, padding="VALID", dilation=1, groups=1, flip=False,
            pad_value=0.0):
    """y[n, o, g*Dg + d] = sum_{t, c} x_pad[n, o*s + t*dil, g*Cg + c] * w[t, c, g*Dg + d] (+ b)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    nd = w.ndim - 2
    s, dil = _per_dim(stride, nd), _per_dim(dilation, nd)
    k = w.shape[:nd]
    pads = np_pads(padding, x.shape[1:-1], k, s, dil)
    if flip:
        w = w[(slice(None, None, -1),) * nd]
    xp = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=pad_value)
    cg, d_out = w.shape[-2:]
    dg = d_out // groups
    out = [(xp.shape[1 + i] - dil[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(nd)]
    y = np.zeros((x.shape[0], *out, d_out))
    for o in itertools.product(*map(range, out)):
        for t in itertools.product(*map(range, k)):
            patch = xp[(slice(None), *(o[i] * s[i] + t[i] * dil[i] for i in range(nd)))]  # (N, C)
            for g in range(groups):
                y[(slice(None), *o, slice(g * dg, (g + 1) * dg))] += (
                    patch[:, g * cg:(g + 1) * cg] @ w[t][:, g * dg:(g + 1) * dg]
                )
    return y if b is None else y + np.asarray(b, np.float64)


def test_numpy_loop_against_lax():
    """The loop itself, checked once against `lax.conv_general_dilated` (SAME, groups, dilation)."""
    x, w = normal(0, (2, 7, 5, 4, 4), jnp.float32), normal(1, (3, 2, 2, 2, 6), jnp.float32)
    y_lax = jax.lax.conv_general_dilated(
        x, w, (2, 1, 2), "SAME", rhs_dilation=(1, 2, 1),
        dimension_numbers=("NDHWC", "DHWIO", "NDHWC"), feature_group_count=2,
    )
    y = np_conv(x, w, stride=(2, 1, 2), padding="SAME", dilation=(1, 2, 1), groups=2)
    assert y.shape == y_lax.shape == (2, 4, 5, 2, 6)
    assert_close(y_lax, y, dtype=jnp.float32)


# ------------------------------------------------------------------------------------ the grid
# (id, x shape, w shape, bias None/"tied"/"untied", options): 1-D and 3-D, stride 1-3, dilation 1-2,
# groups 1-3, every padding form (SAME/FULL/int/per-dim ints/(lo, hi) pairs), flip, pad_value -1.
GRID = [
    ("1d-s2-same-g2-flip-tied", (2, 9, 4), (3, 2, 6), "tied",
     {"stride": 2, "padding": "SAME", "groups": 2, "flip": True}),
    ("1d-d2-pair-minus1-untied", (3, 8, 2), (2, 2, 3), "untied",
     {"dilation": 2, "padding": ((2, 1),), "pad_value": -1.0}),
    ("1d-s3-full-g3-tied", (1, 10, 3), (4, 1, 3), "tied",
     {"stride": 3, "padding": "FULL", "groups": 3}),
    ("1d-int-pad-tuples", (2, 6, 2), (3, 2, 2), None,
     {"padding": 2, "stride": (2,), "dilation": (2,), "pad_value": 0.5}),
    ("3d-s212-pairs-minus1-untied", (2, 5, 4, 4, 2), (3, 2, 2, 2, 4), "untied",
     {"stride": (2, 1, 2), "padding": ((1, 0), (0, 1), (1, 1)), "pad_value": -1.0}),
    ("3d-s2-same-d121-g2-flip-tied", (1, 5, 5, 4, 4), (2, 3, 2, 2, 4), "tied",
     {"stride": 2, "padding": "SAME", "dilation": (1, 2, 1), "groups": 2, "flip": True}),
    ("3d-perdim-ints-d2-flip", (1, 3, 4, 3, 1), (2, 2, 2, 1, 2), "tied",
     {"padding": (1, 0, 2), "dilation": 2, "flip": True, "pad_value": -1.0}),
    ("3d-full-s3-g2", (2, 3, 3, 2, 2), (2, 1, 2, 1, 4), None,
     {"padding": "FULL", "stride": 3, "groups": 2}),
]
GRID_IDS = [g[0] for g in GRID]


def make_args(case, dtype, seed=0):
    _, x_shape, w_shape, bias, options = case
    x, w = normal(seed, x_shape, dtype), normal(seed + 1, w_shape, dtype)
    b = None
    if bias is not None:
        y = np_conv(np.zeros(x_shape), np.zeros(w_shape), **options)
        b = normal(seed + 2, y.shape[-1:] if bias == "tied" else y.shape[1:], dtype)
    return x, w, b, dict(options)


def vjp_all(f, x, w, b, ct):
    """Output and the pull-back of cotangent `ct` for x, w and (if given) b."""
    if b is None:
        y, pull = jax.vjp(lambda x_, w_: f(x_, w_), x, w)
    else:
        y, pull = jax.vjp(f, x, w, b)
    return y, pull(ct)


# Every case in float32; float64 (tolerance 1e-10) on a subset, to keep the file fast.
F64_CASES = (1, 5)
GRID_PARAMS = [pytest.param(case, "float32", id=f"float32-{case[0]}") for case in GRID] + [
    pytest.param(GRID[i], "float64", id=f"float64-{GRID_IDS[i]}") for i in F64_CASES
]


@pytest.mark.parametrize("case, dtype", GRID_PARAMS, indirect=["dtype"])
def test_forward_matches_numpy_and_vjp_matches_reference(case, dtype):
    x, w, b, options = make_args(case, dtype)
    expected = np_conv(x, w, b, **options)
    ct = normal(7, expected.shape, dtype)  # a random cotangent, never a plain sum

    @jax.jit
    def run(x, w, b, ct):
        return (vjp_all(functools.partial(jaxcnn.conv, **options), x, w, b, ct),
                vjp_all(functools.partial(reference.conv, **options), x, w, b, ct))

    (y, grads), (y_ref, grads_ref) = run(x, w, b, ct)
    assert y.shape == expected.shape
    assert_close(y, expected, dtype=dtype)
    assert_close(y_ref, expected, dtype=dtype)
    assert_close(grads, grads_ref)
    assert [g.shape for g in grads] == [a.shape for a in (x, w, b) if a is not None]
    assert_dtype((y, grads), dtype)


@pytest.mark.parametrize("case", [GRID[1], GRID[5]], ids=[GRID_IDS[1], GRID_IDS[5]])
def test_public_grads_equal_the_vjp(case, dtype):
    """conv_input_grad (Eq 22) and conv_weight_grad (Eq 14) are the VJP of conv w.r.t. x and w,
    for the rules and for the reference twins (whose wrappers could still pass an option wrongly),
    and so is the custom rule of conv itself."""
    x, w, _, options = make_args(case, dtype, seed=3)
    g_opts = {k: v for k, v in options.items() if k in GRAD_OPTIONS}
    delta = normal(11, np_conv(np.zeros(x.shape), np.zeros(w.shape), **options).shape, dtype)

    @jax.jit
    def run(x, w, delta):
        via_vjp = jax.vjp(functools.partial(reference.conv, **options), x, w)[1](delta)
        public = [(m.conv_input_grad(delta, w, x.shape, **g_opts),
                   m.conv_weight_grad(x, delta, w.shape, **options)) for m in (jaxcnn, reference)]
        custom_vjp = jax.vjp(functools.partial(jaxcnn.conv, **options), x, w)[1](delta)
        return via_vjp, [*public, custom_vjp]

    (dx_ref, dw_ref), public = run(x, w, delta)
    for dx, dw in public:
        assert dx.shape == x.shape and dw.shape == w.shape
        assert_close((dx, dw), (dx_ref, dw_ref))
        assert_dtype((dx, dw), dtype)


def test_finite_differences(x64):
    """Central differences in float64, 1-D (dilation, (lo, hi) padding, -1 border, untied bias)."""
    x, w, b, options = make_args(GRID[1], jnp.float64, seed=5)
    check_grads(jax.jit(functools.partial(jaxcnn.conv, **options)), (x, w, b), order=1, modes=("rev",))


def test_jit_and_rank_named_functions_agree():
    """conv1d / conv3d are `conv` with a rank check (eager here; the grid runs under jit)."""
    for case, named, ref_named in ((GRID[0], jaxcnn.conv1d, reference.conv1d),
                                   (GRID[5], jaxcnn.conv3d, reference.conv3d)):
        x, w, b, options = make_args(case, jnp.float32, seed=13)
        y = named(x, w, b, **options)
        assert_close(y, np_conv(x, w, b, **options), dtype=jnp.float32)
        assert_close(ref_named(x, w, b, **options), y)


def test_conv2d_is_conv_on_4d_inputs():
    options = {"stride": (2, 1), "padding": ((1, 0), (0, 2)), "dilation": (1, 2), "groups": 2,
               "flip": True, "pad_value": -1.0}
    g_opts = {k: v for k, v in options.items() if k in GRAD_OPTIONS}
    f32 = jnp.float32
    x, w, b = normal(0, (2, 6, 5, 4), f32), normal(1, (3, 2, 2, 4), f32), normal(2, (4,), f32)
    ct = normal(3, np_conv(x, w, **options).shape, f32)

    @jax.jit
    def run(x, w, b, ct):
        return (vjp_all(functools.partial(jaxcnn.conv2d, **options), x, w, b, ct),
                vjp_all(functools.partial(jaxcnn.conv, **options), x, w, b, ct),
                (jaxcnn.conv_input_grad(ct, w, x.shape, **g_opts),
                 jaxcnn.conv2d_input_grad(ct, w, x.shape, **g_opts)),
                (jaxcnn.conv_weight_grad(x, ct, w.shape, **options),
                 jaxcnn.conv2d_weight_grad(x, ct, w.shape, **options)))

    named, nd, (dx_nd, dx_2d), (dw_nd, dw_2d) = run(x, w, b, ct)
    assert_close(named, nd)
    assert_close(named[0], np_conv(x, w, b, **options), dtype=f32)
    assert_close(dx_nd, dx_2d)
    assert_close(dw_nd, dw_2d)


# ------------------------------------------------------------------------------ worked by hand
def _ncw(a):
    """A 1-D list as a (1, W, 1) batch."""
    return jnp.asarray(np.asarray(a, np.float32)[None, :, None])


def _wio(k):
    return jnp.asarray(np.asarray(k, np.float32)[:, None, None])


def test_1d_by_hand():
    """x = [1, 2, 3, 4], w = [1, 0, -1]: y_i = x_i - x_{i+2}."""
    x, w = _ncw([1, 2, 3, 4]), _wio([1, 0, -1])
    y, pull = jax.vjp(jaxcnn.conv1d, x, w)
    # y0 = 1*1 + 2*0 + 3*(-1) = -2;  y1 = 2*1 + 3*0 + 4*(-1) = -2
    np.testing.assert_array_equal(y[0, :, 0], [-2, -2])
    dx, dw = pull(_ncw([1, 2]))  # delta = [1, 2]
    # dx_i = sum_j delta_j w_{i-j}: dx0 = 1*1 = 1; dx1 = 1*0 + 2*1 = 2; dx2 = 1*(-1) + 2*0 = -1;
    # dx3 = 2*(-1) = -2
    np.testing.assert_array_equal(dx[0, :, 0], [1, 2, -1, -2])
    # dw_m = sum_j delta_j x_{j+m}: dw0 = 1*1 + 2*2 = 5; dw1 = 1*2 + 2*3 = 8; dw2 = 1*3 + 2*4 = 11
    np.testing.assert_array_equal(dw[:, 0, 0], [5, 8, 11])
    np.testing.assert_array_equal(jaxcnn.conv_input_grad(_ncw([1, 2]), w, (1, 4, 1))[0, :, 0],
                                  [1, 2, -1, -2])
    np.testing.assert_array_equal(jaxcnn.conv_weight_grad(x, _ncw([1, 2]), (3, 1, 1))[:, 0, 0], [5, 8, 11])
    # flip=True (true convolution): the kernel becomes [-1, 0, 1], y_i = x_{i+2} - x_i = [2, 2]
    np.testing.assert_array_equal(jaxcnn.conv1d(x, w, flip=True)[0, :, 0], [2, 2])
    # tied bias 0.5 adds to every output
    np.testing.assert_array_equal(jaxcnn.conv1d(x, w, jnp.array([0.5], jnp.float32))[0, :, 0], [-1.5, -1.5])


def test_1d_stride_padding_pad_value_by_hand():
    """stride 2, padding 1 with value -1: x_pad = [-1, 1, 2, 3, 4, -1], (6 - 3) // 2 + 1 = 2 outputs."""
    x, w = _ncw([1, 2, 3, 4]), _wio([1, 0, -1])
    f = functools.partial(jaxcnn.conv1d, stride=2, padding=1, pad_value=-1.0)
    y, pull = jax.vjp(f, x, w)
    # y0 = -1*1 + 1*0 + 2*(-1) = -3;  y1 = 2*1 + 3*0 + 4*(-1) = -2
    np.testing.assert_array_equal(y[0, :, 0], [-3, -2])
    dx, dw = pull(_ncw([1, 2]))
    # delta0 spreads w over x_pad[0:3], delta1 = 2 spreads 2w over x_pad[2:5]:
    # dx_pad = [1, 0, -1 + 2, 0, -2, 0] -> the padded units dropped: dx = [0, 1, 0, -2]
    np.testing.assert_array_equal(dx[0, :, 0], [0, 1, 0, -2])
    # dw_m = delta0 x_pad[m] + delta1 x_pad[2 + m]: dw0 = -1 + 2*2 = 3; dw1 = 1 + 2*3 = 7;
    # dw2 = 2 + 2*4 = 10 (the -1 border counts in the weight gradient)
    np.testing.assert_array_equal(dw[:, 0, 0], [3, 7, 10])
    ref = jax.vjp(functools.partial(reference.conv1d, stride=2, padding=1, pad_value=-1.0), x, w)[1]
    np.testing.assert_array_equal(np.asarray(ref(_ncw([1, 2]))[1])[:, 0, 0], [3, 7, 10])


def test_1d_dilation_by_hand():
    """dilation 2: w = [1, -1] spans 3 units, y_i = x_i - x_{i+2}."""
    y = jaxcnn.conv1d(_ncw([1, 2, 4, 8, 16]), _wio([1, -1]), dilation=2)
    np.testing.assert_array_equal(y[0, :, 0], [1 - 4, 2 - 8, 4 - 16])


def test_3d_by_hand():
    """x[a, b, c] = 9a + 3b + c on 3x3x3, w = 1 on the 2x2x2 cube except w[1, 1, 1] = -1.

    y[i, j, k] = sum_{abc} x[i+a, j+b, k+c] - 2 x[i+1, j+1, k+1]; with u = 9i + 3j + k the cube sum
    is 8u + 4*(9 + 3 + 1) = 8u + 52, and x[i+1, j+1, k+1] = u + 13, so y = 6u + 26.
    """
    x = jnp.asarray(np.arange(27, dtype=np.float32).reshape(1, 3, 3, 3, 1))
    w_np = np.ones((2, 2, 2, 1, 1), np.float32)
    w_np[1, 1, 1] = -1
    w = jnp.asarray(w_np)
    y, pull = jax.vjp(jaxcnn.conv3d, x, w)
    expected = np.array([[[26, 32], [44, 50]], [[80, 86], [98, 104]]])  # 6u + 26, u in 0,1,3,4,9,...
    np.testing.assert_array_equal(y[0, ..., 0], expected)

    delta = np.zeros((1, 2, 2, 2, 1), np.float32)
    delta[0, 0, 0, 0], delta[0, 1, 1, 1] = 2, 1
    dx, dw = pull(jnp.asarray(delta))
    # dx = 2w on the cube at (0,0,0) + 1w on the cube at (1,1,1). Only (1,1,1) is in both:
    # 2*w[1,1,1] + 1*w[0,0,0] = -2 + 1 = -1. Units in the first cube only get 2, in the second
    # only 1 except (2,2,2), which gets w[1,1,1] = -1; the rest 0.
    dx_hand = np.zeros((3, 3, 3))
    for a, b, c in itertools.product(range(3), repeat=3):
        first, second = max(a, b, c) <= 1, min(a, b, c) >= 1
        dx_hand[a, b, c] = 2 * first + 1 * second
    dx_hand[1, 1, 1] = -1
    dx_hand[2, 2, 2] = -1
    np.testing.assert_array_equal(dx[0, ..., 0], dx_hand)
    assert dx_hand[0, 0, 0] == 2 and dx_hand[2, 2, 1] == 1 and dx_hand[0, 2, 2] == 0
    # dw[m] = 2 x[m] + 1 x[m + (1,1,1)] = 2v + (v + 13) = 3v + 13, v = 9a + 3b + c
    v = np.arange(27).reshape(3, 3, 3)[:2, :2, :2]
    np.testing.assert_array_equal(dw[..., 0, 0], 3 * v + 13)
    np.testing.assert_array_equal(dw[..., 0, 0], [[[13, 16], [22, 25]], [[40, 43], [49, 52]]])
    np.testing.assert_array_equal(
        jaxcnn.conv_input_grad(jnp.asarray(delta), w, x.shape)[0, ..., 0], dx_hand)
    np.testing.assert_array_equal(
        jaxcnn.conv_weight_grad(x, jnp.asarray(delta), w.shape)[..., 0, 0], 3 * v + 13)


# ----------------------------------------------------------------------------------- PyTorch
TORCH_CASES = [
    ((2, 11, 3), (2, 1, 3), {"stride": 3, "padding": 2, "dilation": 2, "groups": 3}),
    ((1, 5, 6, 4, 4), (2, 3, 2, 2, 4), {"stride": (1, 2, 1), "padding": (1, 0, 1), "dilation": (2, 1, 1),
                                        "groups": 2}),
]


@pytest.mark.parametrize("x_shape, w_shape, options", TORCH_CASES, ids=["1d-s3-p2-d2-g3", "3d-mixed-g2"])
def test_matches_pytorch(x_shape, w_shape, options, x64):
    torch = pytest.importorskip("torch")
    nd = len(w_shape) - 2
    x, w = normal(0, x_shape, jnp.float64), normal(1, w_shape, jnp.float64)
    b = normal(2, w_shape[-1:], jnp.float64)
    ct = normal(3, np_conv(x, w, **options).shape, jnp.float64)
    run = jax.jit(functools.partial(vjp_all, functools.partial(jaxcnn.conv, **options)))
    y, (dx, dw, db) = run(x, w, b, ct)

    xt = torch.tensor(np.moveaxis(np.asarray(x), -1, 1), requires_grad=True)
    wt = torch.tensor(np.transpose(np.asarray(w), (nd + 1, nd, *range(nd))), requires_grad=True)
    bt = torch.tensor(np.asarray(b), requires_grad=True)
    conv_t = {1: torch.nn.functional.conv1d, 3: torch.nn.functional.conv3d}[nd]
    yt = conv_t(xt, wt, bt, **options)
    yt.backward(torch.tensor(np.moveaxis(np.asarray(ct), -1, 1)))
    assert_close(y, np.moveaxis(yt.detach().numpy(), 1, -1))
    assert_close(dx, np.moveaxis(xt.grad.numpy(), 1, -1))
    assert_close(dw, np.transpose(wt.grad.numpy(), (*range(2, 2 + nd), 1, 0)))
    assert_close(db, bt.grad.numpy())
    # torch.nn.grad.conv{1,3}d_input / _weight are conv_input_grad / conv_weight_grad
    grad_input = {1: torch.nn.grad.conv1d_input, 3: torch.nn.grad.conv3d_input}[nd]
    grad_weight = {1: torch.nn.grad.conv1d_weight, 3: torch.nn.grad.conv3d_weight}[nd]
    ctt = torch.tensor(np.moveaxis(np.asarray(ct), -1, 1))
    assert_close(jaxcnn.conv_input_grad(ct, w, x.shape, **options),
                 np.moveaxis(grad_input(tuple(xt.shape), wt.detach(), ctt, **options).numpy(), 1, -1))
    assert_close(jaxcnn.conv_weight_grad(x, ct, w.shape, **options),
                 np.transpose(grad_weight(xt.detach(), tuple(wt.shape), ctt, **options).numpy(),
                              (*range(2, 2 + nd), 1, 0)))


# --------------------------------------------------------------------------------- bad input
def _z(*shape):
    return jnp.zeros(shape, jnp.float32)


X1, W1 = _z(2, 7, 4), _z(3, 4, 6)
X3, W3 = _z(1, 5, 5, 5, 2), _z(2, 2, 2, 2, 4)
BOTH = (ValueError, TypeError)  # the contract does not fix the type of a wrong-length tuple

BAD = [
    # (id, call(module), exception, message pattern)
    ("rank-mismatch-x4-w3", lambda m: m.conv(_z(2, 5, 5, 4), W1), ValueError, r"`conv`: .*`[xw]`"),
    ("rank-mismatch-x3-w5", lambda m: m.conv(X1, W3), ValueError, r"`conv`: .*`[xw]`"),
    ("four-spatial-dims", lambda m: m.conv(_z(1, 3, 3, 3, 3, 2), _z(1, 1, 1, 1, 2, 2)), ValueError,
     r"`conv`: .*`[xw]`"),
    ("no-spatial-dims", lambda m: m.conv(_z(2, 4), _z(4, 6)), ValueError, r"`conv`: .*`[xw]`"),
    ("stride-2-tuple-in-1d", lambda m: m.conv(X1, W1, stride=(1, 1)), BOTH, r"`conv`: `stride`"),
    ("stride-2-tuple-in-3d", lambda m: m.conv(X3, W3, stride=(1, 2)), BOTH, r"`conv`: `stride`"),
    ("dilation-2-tuple-in-3d", lambda m: m.conv(X3, W3, dilation=(1, 1)), BOTH, r"`conv`: `dilation`"),
    ("padding-2-ints-in-3d", lambda m: m.conv(X3, W3, padding=(1, 1)), BOTH, r"`conv`: `padding`"),
    ("padding-2-pairs-in-3d", lambda m: m.conv(X3, W3, padding=((1, 1), (1, 1))), BOTH,
     r"`conv`: `padding`"),
    ("padding-2-pairs-in-1d", lambda m: m.conv(X1, W1, padding=((1, 1), (1, 1))), BOTH,
     r"`conv`: `padding`"),
    ("padding-triple-pair-in-1d", lambda m: m.conv(X1, W1, padding=((1, 1, 1),)), BOTH,
     r"`conv`: `padding`"),
    ("padding-unknown-string", lambda m: m.conv(X1, W1, padding="HALF"), ValueError, r"`conv`: `padding`"),
    ("stride-0", lambda m: m.conv(X1, W1, stride=0), ValueError, r"`conv`: `stride`"),
    ("stride-0-in-tuple", lambda m: m.conv(X3, W3, stride=(1, 0, 1)), ValueError, r"`conv`: `stride`"),
    ("dilation-negative", lambda m: m.conv(X3, W3, dilation=-1), ValueError, r"`conv`: `dilation`"),
    ("padding-negative", lambda m: m.conv(X1, W1, padding=-1), ValueError, r"`conv`: `padding`"),
    ("padding-negative-pair", lambda m: m.conv(X3, W3, padding=((0, 0), (1, -1), (0, 0))), ValueError,
     r"`conv`: `padding`"),
    ("stride-float", lambda m: m.conv(X1, W1, stride=1.5), TypeError, r"`conv`: `stride`"),
    ("groups-0", lambda m: m.conv(X1, W1, groups=0), ValueError, r"`conv`: `groups`"),
    ("groups-not-dividing", lambda m: m.conv(X1, _z(3, 1, 6), groups=3), ValueError, r"`conv`: .*`groups`"),
    ("channel-mismatch", lambda m: m.conv(X3, _z(2, 2, 2, 3, 4)), ValueError, r"`conv`: `w` has 3 input"),
    ("kernel-too-large", lambda m: m.conv(X1, _z(8, 4, 6)), ValueError, r"`conv`: .*kernel.*larger"),
    ("tied-bias-wrong", lambda m: m.conv(X1, W1, _z(4)), ValueError, r"`conv`: `b`"),
    ("untied-bias-wrong", lambda m: m.conv(X3, W3, _z(4, 4, 3, 4)), ValueError, r"`conv`: `b`"),
    ("flip-not-bool", lambda m: m.conv(X1, W1, flip=1), TypeError, r"`conv`: `flip`"),
    ("pad-value-str", lambda m: m.conv(X1, W1, pad_value="0"), TypeError, r"`conv`: `pad_value`"),
    ("int-x", lambda m: m.conv(jnp.zeros((2, 7, 4), jnp.int32), W1), TypeError, r"`conv`: `x`"),
    ("conv1d-x-rank4", lambda m: m.conv1d(_z(2, 5, 5, 4), W1), ValueError, r"`conv1d`: `[xw]`"),
    ("conv1d-w-rank4", lambda m: m.conv1d(X1, _z(3, 3, 4, 6)), ValueError, r"`conv1d`: `[xw]`"),
    ("conv1d-both-rank5", lambda m: m.conv1d(X3, W3), ValueError, r"`conv1d`: `[xw]`"),
    ("conv3d-both-rank3", lambda m: m.conv3d(X1, W1), ValueError, r"`conv3d`: `[xw]`"),
    ("conv3d-w-rank4", lambda m: m.conv3d(X3, _z(2, 2, 2, 4)), ValueError, r"`conv3d`: `[xw]`"),
    ("conv2d-both-rank5", lambda m: m.conv2d(X3, W3), ValueError, r"`conv2d`: `[xw]`"),
    ("input-grad-x-shape-length", lambda m: m.conv_input_grad(_z(2, 5, 6), W1, (2, 7)), BOTH,
     r"`conv_input_grad`: `x_shape`"),
    ("input-grad-wrong-delta", lambda m: m.conv_input_grad(_z(2, 4, 6), W1, (2, 7, 4)), ValueError,
     r"`conv_input_grad`: `delta`"),
    ("input-grad-rank-mismatch", lambda m: m.conv_input_grad(_z(2, 5, 6), W3, (2, 7, 4)), ValueError,
     r"`conv_input_grad`: `x` must have rank 5 \(NDHWC"),
    ("weight-grad-w-shape-length", lambda m: m.conv_weight_grad(X1, _z(2, 5, 6), (3, 4)), BOTH,
     r"`conv_weight_grad`: `w_shape`"),
    ("weight-grad-wrong-delta", lambda m: m.conv_weight_grad(X1, _z(2, 5, 5), (3, 4, 6)), ValueError,
     r"`conv_weight_grad`: `delta`"),
    ("weight-grad-stride-0", lambda m: m.conv_weight_grad(X1, _z(2, 5, 6), (3, 4, 6), stride=0), ValueError,
     r"`conv_weight_grad`: `stride`"),
]


@pytest.mark.parametrize("module", [jaxcnn, reference], ids=["custom", "reference"])
@pytest.mark.parametrize(("call", "exc", "match"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_raises(module, call, exc, match):
    with pytest.raises(exc, match=match):
        call(module)


def test_bad_input_raises_at_trace_time_under_jit():
    with pytest.raises(ValueError, match=r"`conv`: `stride`"):
        jax.jit(lambda x, w: jaxcnn.conv(x, w, stride=0))(X3, W3)
    with pytest.raises(ValueError, match=r"`conv1d`: `[xw]`"):
        jax.jit(jaxcnn.conv1d)(X3, W3)
