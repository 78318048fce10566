"""`jaxcnn.conv_transpose` in 1-3 spatial dims: a NumPy scatter-add loop, numbers worked by hand, the
identity with `conv_input_grad` (its forward is Eq 22), the duality of its gradients (Eq 7 for the input,
Eq 14 for the kernel), ``jax.vjp`` of `jaxcnn.reference.conv_transpose`, PyTorch's
``conv_transpose{1,2,3}d`` (if installed), bad arguments, and the XLA abort of jax 0.10.2 when
differentiating some lhs-dilated convolutions (run in a subprocess, so that an abort fails one test
instead of killing the suite).
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn import reference
from tests.tolerances import assert_close, assert_dtype, normal

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ the NumPy loops
def _per_dim(value, nd):
    return (value,) * nd if isinstance(value, int) else tuple(value)


def _pairs(padding, nd):
    if isinstance(padding, int):
        return [(padding, padding)] * nd
    return [tuple(p) if isinstance(p, tuple) else (p, p) for p in padding]


def _geometry(x_shape, w_shape, stride, padding, output_padding, dilation):
    nd = len(w_shape) - 2
    s, d, op = _per_dim(stride, nd), _per_dim(dilation, nd), _per_dim(output_padding, nd)
    n, k = x_shape[1:-1], w_shape[:nd]
    # every input unit i scatters its kernel to i*s + t*d: `full` units, plus output_padding at the end
    full = [(n[a] - 1) * s[a] + d[a] * (k[a] - 1) + 1 + op[a] for a in range(nd)]
    crop = tuple(slice(lo, full[a] - hi) for a, (lo, hi) in enumerate(_pairs(padding, nd)))
    return nd, s, d, n, k, full, crop


def np_conv_transpose(x, w, b=None, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """Scatter-add: y_full[n, i*s + t*d, g*Cg + c] += x[n, i, g*Dg + e] * w[t, c, g*Dg + e];
    then crop `padding` (lo, hi) off each end of each spatial dim."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    nd, s, d, n, k, full, crop = _geometry(x.shape, w.shape, stride, padding, output_padding, dilation)
    cg, d_in = w.shape[-2:]
    dg = d_in // groups
    y_full = np.zeros((x.shape[0], *full, cg * groups))
    for i in itertools.product(*map(range, n)):
        for t in itertools.product(*map(range, k)):
            pos = tuple(i[a] * s[a] + t[a] * d[a] for a in range(nd))
            for g in range(groups):
                y_full[(slice(None), *pos, slice(g * cg, (g + 1) * cg))] += (
                    x[(slice(None), *i, slice(g * dg, (g + 1) * dg))] @ w[t][:, g * dg:(g + 1) * dg].T
                )
    y = y_full[(slice(None), *crop)]
    return y if b is None else y + np.asarray(b, np.float64)


def np_conv_transpose_vjp(x, w, ct, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """The same index map read backwards (gather):
    dx[n, i, e] = sum_{t,c} ct_full[n, i*s + t*d, c] w[t, c, e],
    dw[t, c, e] = sum_{n,i} x[n, i, e] ct_full[n, i*s + t*d, c] (within each group)."""
    x, w, ct = (np.asarray(a, np.float64) for a in (x, w, ct))
    nd, s, d, n, k, full, crop = _geometry(x.shape, w.shape, stride, padding, output_padding, dilation)
    cg, d_in = w.shape[-2:]
    dg = d_in // groups
    ct_full = np.zeros((x.shape[0], *full, cg * groups))
    ct_full[(slice(None), *crop)] = ct
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for i in itertools.product(*map(range, n)):
        for t in itertools.product(*map(range, k)):
            pos = tuple(i[a] * s[a] + t[a] * d[a] for a in range(nd))
            for g in range(groups):
                c_sl, e_sl = slice(g * cg, (g + 1) * cg), slice(g * dg, (g + 1) * dg)
                ct_at = ct_full[(slice(None), *pos, c_sl)]  # (N, Cg)
                x_at = x[(slice(None), *i, e_sl)]  # (N, Dg)
                dx[(slice(None), *i, e_sl)] += ct_at @ w[t][:, e_sl]
                dw[(*t, slice(None), e_sl)] += ct_at.T @ x_at
    return dx, dw


_DN = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


def test_numpy_loop_is_the_transpose_of_lax_conv():
    """The loop, checked once: it is ``jax.vjp`` (w.r.t. the input) of `lax.conv_general_dilated`."""
    w, groups, stride, pads = normal(1, (3, 2, 2, 6), jnp.float32), 2, (2, 3), ((1, 0), (2, 1))
    # conv of (7, 11) -> ((7 + 1 - 3) // 2 + 1, (11 + 3 - 3) // 3 + 1) = (3, 4); back: full sizes
    # (3-1)*2 + 3 = 7 and (4-1)*3 + 2*1 + 1 = 12, cropped to 7 - 1 + op and 12 - 3 + op: op = (1, 2)
    x_shape = (2, 7, 11, 4)
    delta = normal(0, (2, 3, 4, 6), jnp.float32)
    _, pull = jax.vjp(
        lambda z: jax.lax.conv_general_dilated(z, w, stride, pads, rhs_dilation=(1, 2),
                                               dimension_numbers=_DN[2], feature_group_count=groups),
        jnp.zeros(x_shape, jnp.float32),
    )
    expected = np_conv_transpose(delta, w, stride=stride, padding=pads, dilation=(1, 2), groups=groups,
                                 output_padding=(1, 2))
    assert expected.shape == x_shape
    assert_close(pull(delta)[0], expected, dtype=jnp.float32)


# ---------------------------------------------------------------------------------- by hand
def _nwc(a):
    return jnp.asarray(np.asarray(a, np.float32)[None, :, None])


def _wio(k):
    return jnp.asarray(np.asarray(k, np.float32)[:, None, None])


def test_1d_by_hand():
    """x = [1, 2], stride 2: x_0 w lands on y[0:3], x_1 w on y[2:5]."""
    x = _nwc([1, 2])
    # w = [1, 1, 1]: [1, 1, 1, 0, 0] + [0, 0, 2, 2, 2] = [1, 1, 3, 2, 2]
    np.testing.assert_array_equal(jaxcnn.conv_transpose(x, _wio([1, 1, 1]), stride=2)[0, :, 0],
                                  [1, 1, 3, 2, 2])
    w = _wio([1, 2, 3])
    # w = [1, 2, 3]: [1, 2, 3, 0, 0] + [0, 0, 2, 4, 6] = [1, 2, 5, 4, 6]; size (2-1)*2 + 3 = 5
    cases = [
        ({}, [1, 2, 5, 4, 6]),
        ({"padding": 1}, [2, 5, 4]),  # one unit off each end: 5 - 2 = 3
        ({"padding": 1, "output_padding": 1}, [2, 5, 4, 6]),  # one unit back at the high end
        ({"output_padding": 1}, [1, 2, 5, 4, 6, 0]),  # a unit that no input reaches
        ({"padding": ((2, 0),)}, [5, 4, 6]),  # (lo, hi) = (2, 0)
        ({"padding": (1,), "output_padding": (1,)}, [2, 5, 4, 6]),  # one value per dim
    ]
    for options, expected in cases:
        y = jaxcnn.conv_transpose(x, w, stride=2, **options)
        np.testing.assert_array_equal(y[0, :, 0], expected, err_msg=str(options))
        np.testing.assert_array_equal(reference.conv_transpose(x, w, stride=2, **options)[0, :, 0], expected)
        np.testing.assert_array_equal(np_conv_transpose(x, w, stride=2, **options)[0, :, 0], expected)
    # tied bias 0.5 on every output unit (the unreached one included)
    np.testing.assert_array_equal(
        jaxcnn.conv_transpose(x, w, jnp.array([0.5], jnp.float32), stride=2, output_padding=1)[0, :, 0],
        [1.5, 2.5, 5.5, 4.5, 6.5, 0.5])
    # dilation 2, stride 1, w = [1, 2]: x_0 w on y[0], y[2]; x_1 w on y[1], y[3] -> [1, 2, 2, 4];
    # output_padding 1 < dilation is allowed even with stride 1: [1, 2, 2, 4, 0]
    np.testing.assert_array_equal(jaxcnn.conv_transpose(x, _wio([1, 2]), dilation=2)[0, :, 0], [1, 2, 2, 4])
    np.testing.assert_array_equal(
        jaxcnn.conv_transpose(x, _wio([1, 2]), dilation=2, output_padding=1)[0, :, 0], [1, 2, 2, 4, 0])


def test_1d_gradients_by_hand():
    """y = conv_transpose(x, w, stride 2) = [1, 2, 5, 4, 6]; cotangent g = [1, 0, -1, 2, 1].

    dx_i = sum_t g[2i + t] w_t (Eq 7, the forward conv of g): dx0 = 1*1 + 0*2 + (-1)*3 = -2,
    dx1 = (-1)*1 + 2*2 + 1*3 = 6.  dw_t = sum_i x_i g[2i + t] (Eq 14): dw0 = 1*1 + 2*(-1) = -1,
    dw1 = 1*0 + 2*2 = 4, dw2 = 1*(-1) + 2*1 = 1.
    """
    x, w, g = _nwc([1, 2]), _wio([1, 2, 3]), _nwc([1, 0, -1, 2, 1])
    for module in (jaxcnn, reference):
        y, pull = jax.vjp(functools.partial(module.conv_transpose, stride=2), x, w)
        np.testing.assert_array_equal(y[0, :, 0], [1, 2, 5, 4, 6])
        dx, dw = pull(g)
        np.testing.assert_array_equal(dx[0, :, 0], [-2, 6])
        np.testing.assert_array_equal(dw[:, 0, 0], [-1, 4, 1])
    np.testing.assert_array_equal(jaxcnn.conv1d(g, w, stride=2)[0, :, 0], [-2, 6])
    np.testing.assert_array_equal(jaxcnn.conv_weight_grad(g, x, (3, 1, 1), stride=2)[:, 0, 0], [-1, 4, 1])


def test_2d_by_hand_channels_swap():
    """w (k1, k2, C/groups, D) is the kernel of the transposed convolution: x has D = 2 channels, the
    output C = 1. A 1x1 input scatters its kernel: y[a, b, 0] = sum_e x[e] w[a, b, 0, e]."""
    w = np.zeros((2, 2, 1, 2), np.float32)
    w[..., 0, 0] = [[1, 2], [3, 4]]
    w[..., 0, 1] = [[10, 0], [0, -10]]
    x = jnp.asarray(np.array([2, 1], np.float32).reshape(1, 1, 1, 2))
    y = jaxcnn.conv_transpose(x, jnp.asarray(w))
    assert y.shape == (1, 2, 2, 1)
    # 2 * [[1, 2], [3, 4]] + 1 * [[10, 0], [0, -10]] = [[12, 4], [6, -2]]
    np.testing.assert_array_equal(y[0, :, :, 0], [[12, 4], [6, -2]])


# ---------------------------------------------------------------------------------- the grid
# (id, x shape, w shape, bias, options) for 1-3 dims: stride 1-3, dilation 1-2, groups 1-3, padding as
# int / per dim / (lo, hi) pairs, output_padding < stride or < dilation.
GRID = [
    ("1d-s2-p1-op1-g2-tied", (2, 3, 4), (3, 2, 4), "tied",
     {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2}),
    ("1d-s1-d2-op1-untied", (1, 4, 3), (2, 2, 3), "untied", {"dilation": 2, "output_padding": 1}),
    ("1d-s3-pair-op2", (2, 3, 2), (4, 3, 2), None, {"stride": 3, "padding": ((2, 1),), "output_padding": 2}),
    ("2d-plain", (1, 3, 3, 1), (2, 2, 1, 1), None, {}),
    ("2d-s23-p10-op12-d12-g3-tied", (2, 3, 4, 6), (3, 2, 1, 6), "tied",
     {"stride": (2, 3), "padding": (1, 0), "output_padding": (1, 2), "dilation": (1, 2), "groups": 3}),
    ("2d-s2-pairs-untied", (1, 3, 3, 2), (3, 3, 2, 2), "untied", {"stride": 2, "padding": ((0, 1), (2, 0))}),
    ("3d-s2-p011-op101-g2-tied", (1, 2, 3, 2, 4), (2, 3, 2, 3, 4), "tied",
     {"stride": 2, "padding": (0, 1, 1), "output_padding": (1, 0, 1), "groups": 2}),
    ("3d-plain", (2, 2, 2, 2, 3), (2, 2, 2, 2, 3), None, {}),
]
GRID_IDS = [g[0] for g in GRID]


def make_args(case, dtype, seed=0):
    _, x_shape, w_shape, bias, options = case
    x, w = normal(seed, x_shape, dtype), normal(seed + 1, w_shape, dtype)
    y_shape = np_conv_transpose(np.zeros(x_shape), np.zeros(w_shape), **options).shape
    b = None
    if bias is not None:
        b = normal(seed + 2, y_shape[-1:] if bias == "tied" else y_shape[1:], dtype)
    return x, w, b, dict(options), y_shape


def _op_below_stride(options, nd):
    return all(o < s for o, s in zip(_per_dim(options.get("output_padding", 0), nd),
                                     _per_dim(options.get("stride", 1), nd), strict=True))


# Every case in float32; float64 (tolerance 1e-10) on a subset, to keep the file fast.
GRID_PARAMS = [pytest.param(case, "float32", id=f"float32-{case[0]}") for case in GRID] + [
    pytest.param(GRID[i], "float64", id=f"float64-{GRID_IDS[i]}") for i in (1, 4, 6)
]


@pytest.mark.parametrize("case, dtype", GRID_PARAMS, indirect=["dtype"])
def test_forward_and_vjp(case, dtype):
    x, w, b, options, y_shape = make_args(case, dtype)
    ct = normal(7, y_shape, dtype)  # a random cotangent
    args = (x, w) if b is None else (x, w, b)

    @jax.jit
    def run(args, ct):
        out = []
        for module in (jaxcnn, reference):
            y, pull = jax.vjp(functools.partial(module.conv_transpose, **options), *args)
            out.append((y, pull(ct)))
        return out

    (y, grads), (y_ref, grads_ref) = run(args, ct)
    expected = np_conv_transpose(x, w, b, **options)
    assert y.shape == y_shape
    assert_close(y, expected, dtype=dtype)
    assert_close(y_ref, expected, dtype=dtype)
    dx_np, dw_np = np_conv_transpose_vjp(x, w, ct, **options)
    assert_close(grads[:2], (dx_np, dw_np), dtype=dtype)
    if b is not None:
        axes = (0,) if b.ndim > 1 else tuple(range(len(y_shape) - 1))
        assert_close(grads[2], np.asarray(ct, np.float64).sum(axis=axes), dtype=dtype)
    assert_close(grads, grads_ref)
    assert_dtype((y, grads), dtype)


DUALITY = [GRID[2], GRID[4], GRID[6]]  # output_padding < stride: the convolution maps y_shape back to x


@pytest.mark.parametrize("case", DUALITY, ids=[c[0] for c in DUALITY])
def test_is_conv_input_grad_and_its_gradients_are_conv_and_conv_weight_grad(case, x64):
    """Forward: Eq 22 (`conv_input_grad` of the convolution with kernel w). Backward: the input
    gradient is the forward convolution of the cotangent (Eq 7), the kernel gradient is
    `conv_weight_grad` with the cotangent as input and x as the deltas (Eq 14). float64. The three
    are `jaxcnn.reference`'s (autodiff of lax's convolution): the library's own would be the very
    functions conv_transpose runs, and agree with it whatever they computed."""
    x, w, _, options, y_shape = make_args(case, jnp.float64, seed=3)
    nd = len(w.shape) - 2
    assert _op_below_stride(options, nd)
    conv_opts = {"stride": options.get("stride", 1), "padding": _pairs(options.get("padding", 0), nd),
                 "dilation": options.get("dilation", 1), "groups": options.get("groups", 1)}
    g = normal(9, y_shape, jnp.float64)

    @jax.jit
    def run(x, w, g):
        y, pull = jax.vjp(functools.partial(jaxcnn.conv_transpose, **options), x, w)
        return (y, pull(g)), (reference.conv_input_grad(x, w, y_shape, **conv_opts),
                              reference.conv(g, w, **conv_opts),
                              reference.conv_weight_grad(g, x, w.shape, **conv_opts))

    (y, (dx, dw)), (y_eq22, dx_eq7, dw_eq14) = run(x, w, g)
    assert_close(y, y_eq22)
    assert_close(dx, dx_eq7)
    assert_close(dw, dw_eq14)
    assert_dtype((y, dx, dw), jnp.float64)


# ------------------------------------------------------------------------------------ PyTorch
TORCH_CASES = [
    ((2, 3, 4), (3, 2, 4), {"stride": 2, "padding": 1, "output_padding": 1, "dilation": 1, "groups": 2}),
    ((1, 4, 3), (2, 2, 3), {"stride": 1, "padding": 0, "output_padding": 1, "dilation": 2, "groups": 1}),
    ((2, 3, 4, 6), (3, 2, 1, 6), {"stride": (2, 3), "padding": (1, 0), "output_padding": (1, 2),
                                  "dilation": (1, 2), "groups": 3}),
    ((1, 2, 3, 2, 4), (2, 3, 2, 3, 4), {"stride": 2, "padding": (0, 1, 1), "output_padding": (1, 0, 1),
                                        "dilation": 1, "groups": 2}),
]


@pytest.mark.parametrize("x_shape, w_shape, options", TORCH_CASES,
                         ids=["1d-s2-op1-g2", "1d-d2-op1", "2d-mixed-g3", "3d-g2"])
def test_matches_pytorch(x_shape, w_shape, options, x64):
    torch = pytest.importorskip("torch")
    nd = len(w_shape) - 2
    x, w = normal(0, x_shape, jnp.float64), normal(1, w_shape, jnp.float64)
    b = normal(2, (w_shape[-2] * options["groups"],), jnp.float64)
    ct = normal(3, np_conv_transpose(x, w, **options).shape, jnp.float64)

    @jax.jit
    def run(x, w, b, ct):
        y, pull = jax.vjp(functools.partial(jaxcnn.conv_transpose, **options), x, w, b)
        return y, pull(ct)

    y, (dx, dw, db) = run(x, w, b, ct)

    xt = torch.tensor(np.moveaxis(np.asarray(x), -1, 1), requires_grad=True)
    # ours (*k, C/groups, D) is PyTorch's (D, C/groups, *k) permuted
    wt = torch.tensor(np.transpose(np.asarray(w), (nd + 1, nd, *range(nd))), requires_grad=True)
    bt = torch.tensor(np.asarray(b), requires_grad=True)
    fn = {1: torch.nn.functional.conv_transpose1d, 2: torch.nn.functional.conv_transpose2d,
          3: torch.nn.functional.conv_transpose3d}[nd]
    yt = fn(xt, wt, bt, **options)
    yt.backward(torch.tensor(np.moveaxis(np.asarray(ct), -1, 1)))
    assert_close(y, np.moveaxis(yt.detach().numpy(), 1, -1))
    assert_close(dx, np.moveaxis(xt.grad.numpy(), 1, -1))
    assert_close(dw, np.transpose(wt.grad.numpy(), (*range(2, 2 + nd), 1, 0)))
    assert_close(db, bt.grad.numpy())
    np.testing.assert_array_equal(
        np.transpose(wt.detach().numpy(), (*range(2, 2 + nd), 1, 0)), np.asarray(w))  # the permutation


# ---------------------------------------------------------------------------------- bad input
X1, W1 = jnp.zeros((2, 4, 6), jnp.float32), jnp.zeros((3, 2, 6), jnp.float32)
X2, W2 = jnp.zeros((1, 3, 3, 4), jnp.float32), jnp.zeros((3, 3, 2, 4), jnp.float32)
BOTH = (ValueError, TypeError)

BAD = [
    ("output-padding-equals-stride", lambda m: m.conv_transpose(X1, W1, stride=2, output_padding=2),
     ValueError, r"`conv_transpose`.*`output_padding`"),
    ("output-padding-1-stride-1", lambda m: m.conv_transpose(X1, W1, output_padding=1),
     ValueError, r"`conv_transpose`.*`output_padding`"),
    ("output-padding-equals-dilation", lambda m: m.conv_transpose(X1, W1, dilation=2, output_padding=2),
     ValueError, r"`conv_transpose`.*`output_padding`"),
    ("output-padding-one-dim-too-large",
     lambda m: m.conv_transpose(X2, W2, stride=(2, 1), output_padding=(1, 1)),
     ValueError, r"`conv_transpose`.*`output_padding`"),
    ("output-padding-negative", lambda m: m.conv_transpose(X1, W1, stride=2, output_padding=-1),
     ValueError, r"`conv_transpose`.*`output_padding`"),
    ("output-padding-wrong-length", lambda m: m.conv_transpose(X2, W2, stride=2, output_padding=(1, 1, 1)),
     BOTH, r"`conv_transpose`.*`output_padding`"),
    ("padding-string", lambda m: m.conv_transpose(X1, W1, padding="SAME"), BOTH,
     r"`conv_transpose`.*`padding`"),
    ("padding-negative", lambda m: m.conv_transpose(X1, W1, padding=-1), ValueError,
     r"`conv_transpose`.*`padding`"),
    ("padding-crops-everything", lambda m: m.conv_transpose(X1, W1, padding=4), ValueError,
     r"`conv_transpose`.*`padding`"),  # (4 - 1) + 3 - 8 = -2 units
    ("padding-wrong-length", lambda m: m.conv_transpose(X2, W2, padding=(1, 1, 1)), BOTH,
     r"`conv_transpose`.*`padding`"),
    ("stride-0", lambda m: m.conv_transpose(X1, W1, stride=0), ValueError, r"`conv_transpose`.*`stride`"),
    ("dilation-0", lambda m: m.conv_transpose(X1, W1, dilation=0), ValueError,
     r"`conv_transpose`.*`dilation`"),
    ("channels-mismatch", lambda m: m.conv_transpose(jnp.zeros((2, 4, 5), jnp.float32), W1), ValueError,
     r"`conv_transpose`.*`[xw]`"),
    ("groups-not-dividing", lambda m: m.conv_transpose(X1, W1, groups=4), ValueError,
     r"`conv_transpose`.*`groups`"),
    ("rank-mismatch", lambda m: m.conv_transpose(X2, W1), ValueError, r"`conv_transpose`.*`[xw]`"),
    ("bias-wrong", lambda m: m.conv_transpose(X1, W1, jnp.zeros((6,), jnp.float32)), ValueError,
     r"`conv_transpose`.*`b`"),
    ("int-x", lambda m: m.conv_transpose(jnp.zeros((2, 4, 6), jnp.int32), W1), TypeError,
     r"`conv_transpose`.*`x`"),
]


@pytest.mark.parametrize("module", [jaxcnn, reference], ids=["custom", "reference"])
@pytest.mark.parametrize(("call", "exc", "match"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_raises(module, call, exc, match):
    with pytest.raises(exc, match=match):
        call(module)


# ------------------------------------------------------------------------- the XLA abort, isolated
# jax 0.10.2 aborts the process (SIGABRT in XLA's algebraic simplifier) when compiling some
# convolutions written with lhs_dilation: seen for a 2-D transposed conv with stride 2 whose kernel
# is larger than the input. Each case runs in its own interpreter: forward and jax.grad, jitted and
# eager, for the rules and the reference; the values come back as JSON.
ABORT_CASES = [
    # (id, x shape, w shape, padding, groups)
    ("2d-g1", (1, 2, 3, 6), (4, 2, 3, 6), (2, 1), 1),
    ("2d-g2", (1, 2, 3, 6), (4, 2, 3, 6), (2, 1), 2),
    ("1d-g1", (1, 2, 6), (4, 3, 6), (2,), 1),
    ("3d-g1", (1, 2, 3, 2, 6), (4, 2, 2, 3, 6), (2, 1, 1), 1),
]

_ABORT_SCRIPT = """
import json, sys
import jax
jax.config.update("jax_platforms", "cpu")
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
import jax.numpy as jnp
import numpy as np
import jaxcnn
from jaxcnn import reference

x_shape, w_shape, padding, groups, y_shape = json.loads(sys.argv[1])

def draw(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))

x, w, ct = draw(0, x_shape), draw(1, w_shape), draw(2, y_shape)
out = {}
for name, module in (("custom", jaxcnn), ("reference", reference)):
    def f(x, w, module=module):
        return module.conv_transpose(x, w, stride=2, padding=tuple(padding), groups=groups)

    def forward_and_grad(x, w, f=f):  # the forward, and jax.grad of <f(x, w), ct>
        return f(x, w), jax.grad(lambda x_, w_: jnp.vdot(f(x_, w_), ct), (0, 1))(x, w)

    for jit in (False, True):
        stage = name + ("-jit" if jit else "-eager")
        print("running", stage, file=sys.stderr, flush=True)
        y, (dx, dw) = (jax.jit(forward_and_grad) if jit else forward_and_grad)(x, w)
        out[stage] = [np.asarray(a, np.float64).tolist() for a in (y, dx, dw)]
print(json.dumps(out))
"""


@functools.cache
def _abort_children():
    """Start every case's child at once (they compile in parallel); return {id: (rc, stdout, stderr)}."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    procs = {}
    for cid, x_shape, w_shape, padding, groups in ABORT_CASES:
        y_shape = np_conv_transpose(np.zeros(x_shape), np.zeros(w_shape), stride=2, padding=padding,
                                    groups=groups).shape
        args = json.dumps([x_shape, w_shape, padding, groups, y_shape])
        procs[cid] = subprocess.Popen([sys.executable, "-c", _ABORT_SCRIPT, args], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    results = {}
    for cid, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            stderr += "\n(timed out after 300 s)"
        results[cid] = (proc.returncode, stdout, stderr)
    return results


@pytest.mark.parametrize("cid, x_shape, w_shape, padding, groups", ABORT_CASES,
                         ids=[c[0] for c in ABORT_CASES])
def test_kernel_larger_than_input_does_not_abort(cid, x_shape, w_shape, padding, groups):
    rc, stdout, stderr = _abort_children()[cid]
    log = "\n".join(line for line in stderr.splitlines() if not line.lstrip().startswith("@"))
    assert rc == 0, f"return code {rc} (-6 is SIGABRT); stderr without the stack frames:\n{log[-3000:]}"
    results = json.loads(stdout.strip().splitlines()[-1])
    options = {"stride": 2, "padding": padding, "groups": groups}
    y_shape = np_conv_transpose(np.zeros(x_shape), np.zeros(w_shape), **options).shape

    def draw(seed, shape):  # the child's inputs
        return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)

    x, w, ct = draw(0, x_shape), draw(1, w_shape), draw(2, y_shape)
    expected = (np_conv_transpose(x, w, **options), *np_conv_transpose_vjp(x, w, ct, **options))
    assert set(results) == {"custom-eager", "custom-jit", "reference-eager", "reference-jit"}
    for stage, arrays in results.items():
        got = [np.asarray(a) for a in arrays]
        assert [a.shape for a in got] == [e.shape for e in expected], stage
        assert_close(got, list(expected), dtype=jnp.float32)
