"""jaxcnn.conv: Eq 1-7 forward, Eq 10-14 and Eq 15-22 backward, against the autodiff oracle.

Gradients are checked three ways (STYLE.md habit 5): the custom VJP against ``jax.vjp`` of
`jaxcnn.reference` with random cotangents over a grid of options; central finite differences in
float64; and small integer examples worked out by hand from the article's equations.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxcnn import convolution as conv
from jaxcnn import reference
from tests.tolerances import assert_close, assert_dtype, normal

OPTIONS = ("stride", "padding", "dilation", "groups", "flip", "pad_value")
GRAD_OPTIONS = ("stride", "padding", "dilation", "groups", "flip")  # conv2d_input_grad's


# ----------------------------------------------------------------------------------- the grid
# (id, x shape NHWC, w shape HWIO, bias None/"tied"/"untied", options). Together: stride 1-3 and
# non-square pairs, dilation 1-2 (and pairs), groups 1/2/3, every padding form (SAME and explicit
# with odd totals), flip, pad_value 0/-1, kernels 1x1..5x3, batch 1-3, channels 1-6.
GRID = [
    ("article-3x3-2x2", (1, 3, 3, 1), (2, 2, 1, 1), None, {}),
    ("s2-k3x2-tied", (2, 7, 6, 4), (3, 2, 4, 3), "tied", {"stride": 2}),
    (
        "s1x3-g3-same-untied",
        (3, 8, 7, 6), (3, 3, 2, 6), "untied",
        {"stride": (1, 3), "groups": 3, "padding": "SAME"},
    ),
    (
        "d2-g2-full-flip-k5x3-tied",
        (2, 9, 8, 4), (5, 3, 2, 6), "tied",
        {"dilation": 2, "groups": 2, "padding": "FULL", "flip": True},
    ),
    (
        "s3-k4x4-pad1-minus1-untied",
        (1, 6, 7, 2), (4, 4, 2, 5), "untied",
        {"stride": 3, "padding": 1, "pad_value": -1.0},
    ),
    (
        "s2-k1x1-pair-minus1-tied",
        (2, 5, 6, 3), (1, 1, 3, 2), "tied",
        {"stride": 2, "padding": (2, 1), "pad_value": -1.0},
    ),
    (
        "explicit-odd-s2x1-d1x2-g2-flip-minus1",
        (3, 7, 5, 2), (3, 4, 1, 4), None,
        {"stride": (2, 1), "dilation": (1, 2), "groups": 2, "flip": True,
         "padding": ((0, 3), (2, 1)), "pad_value": -1.0},
    ),
    (
        "same-odd-s3-d2x1-flip-untied",
        (2, 5, 5, 1), (2, 3, 1, 2), "untied",
        {"stride": 3, "padding": "SAME", "dilation": (2, 1), "flip": True},
    ),
    (
        "same-s2-g2-minus1-k4x2",
        (2, 6, 5, 4), (4, 2, 2, 2), "tied",
        {"stride": 2, "padding": "same", "groups": 2, "pad_value": -1.0},
    ),
    (
        "same-odd-s2-d2-g3-flip-minus1-untied",
        (2, 8, 8, 3), (3, 2, 1, 3), "untied",
        {"stride": 2, "dilation": 2, "padding": "SAME", "groups": 3, "flip": True,
         "pad_value": -1.0},
    ),
    ("int-pad2-s2x3-k5x3", (3, 8, 9, 2), (5, 3, 2, 1), "tied", {"padding": 2, "stride": (2, 3)}),
    (
        "full-d2-minus1-k2x2-untied",
        (1, 4, 4, 5), (2, 2, 5, 1), "untied",
        {"padding": "FULL", "dilation": 2, "pad_value": -1.0},
    ),
    # On CPU these reach the default ("auto") lowering's other paths (jaxcnn._choice.choose):
    # a one-channel forward over >= 4096 positions as fused taps, and patches over 4 MiB, so
    # the batch goes through the chunked lax.scan.
    ("cpu-taps-c1-batch20-pad-minus1", (20, 16, 16, 1), (3, 3, 1, 4), "tied",
     {"padding": "SAME", "pad_value": -1.0}),
    ("cpu-chunked-c16-batch40", (40, 16, 16, 16), (3, 3, 16, 4), None, {"padding": "SAME"}),
]
GRID_IDS = [g[0] for g in GRID]


def make_args(case, dtype, seed=0):
    """x, w, b and the option dict of one grid case, seeded."""
    _, x_shape, w_shape, bias, options = case
    x = normal(seed, x_shape, dtype)
    w = normal(seed + 1, w_shape, dtype)
    b = None
    if bias is not None:
        y_shape = jax.eval_shape(functools.partial(conv.conv2d, **options), x, w).shape
        b_shape = y_shape[3:] if bias == "tied" else y_shape[1:]
        b = normal(seed + 2, b_shape, dtype)
    return x, w, b, dict(options)


def vjp_all(f, x, w, b, ct):
    """Output and the pull-back of a random cotangent, for x, w and (if given) b."""
    if b is None:
        y, pull = jax.vjp(lambda x_, w_: f(x_, w_), x, w)
    else:
        y, pull = jax.vjp(f, x, w, b)
    return y, pull(ct)


def grad_options(options):
    return {k: v for k, v in options.items() if k in GRAD_OPTIONS}


@pytest.mark.parametrize("case", GRID, ids=GRID_IDS)
def test_forward_and_vjp_match_reference(case, dtype):
    x, w, b, options = make_args(case, dtype)

    @jax.jit
    def run(x, w, b):
        custom = functools.partial(conv.conv2d, **options)
        ref = functools.partial(reference.conv2d, **options)
        y_ref = ref(x, w, b)
        ct = normal(7, y_ref.shape, dtype)  # random cotangent, never a plain sum
        return vjp_all(custom, x, w, b, ct), vjp_all(ref, x, w, b, ct)

    (y, grads), (y_ref, grads_ref) = run(x, w, b)
    assert y.shape == y_ref.shape
    assert_close(y, y_ref)
    assert_close(grads, grads_ref)
    assert_dtype((y, grads), dtype)
    assert [g.shape for g in grads] == [a.shape for a in (x, w, b) if a is not None]


@pytest.mark.parametrize("case", GRID, ids=GRID_IDS)
def test_public_grads_are_the_custom_vjp(case, dtype):
    """conv2d_input_grad / conv2d_weight_grad equal the reference twins and are what the
    custom VJP returns (the VJP is made of the public functions)."""
    x, w, _, options = make_args(case, dtype)
    g_opts = grad_options(options)

    @jax.jit
    def run(x, w):
        y, pull = jax.vjp(functools.partial(conv.conv2d, **options), x, w)
        delta = normal(11, y.shape, dtype)
        dx_vjp, dw_vjp = pull(delta)
        dx = conv.conv2d_input_grad(delta, w, x.shape, **g_opts)
        dw = conv.conv2d_weight_grad(x, delta, w.shape, **options)
        dx_ref = reference.conv2d_input_grad(delta, w, x.shape, **g_opts)
        dw_ref = reference.conv2d_weight_grad(x, delta, w.shape, **options)
        return (dx, dw), (dx_vjp, dw_vjp), (dx_ref, dw_ref)

    public, via_vjp, twins = run(x, w)
    chex_equal(public, via_vjp)
    assert_close(public, twins)
    assert_dtype(public, dtype)


def chex_equal(actual, expected):
    """Bitwise equal trees (the same computation, traced twice)."""
    for a, e in zip(jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


def test_same_padding_is_jaxs():
    """"SAME" with an odd total puts the extra row/column at the bottom/right, as JAX does; an
    independent check (the reference shares jaxcnn's padding resolution)."""
    x, w = normal(0, (1, 8, 7, 3), jnp.float32), normal(1, (3, 2, 1, 3), jnp.float32)
    options = {"stride": (2, 3), "dilation": (2, 1), "groups": 3}
    y = conv.conv2d(x, w, padding="SAME", **options)
    y_lax = jax.lax.conv_general_dilated(
        x, w, window_strides=(2, 3), padding="SAME", rhs_dilation=(2, 1),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=3,
    )
    assert y.shape == (1, 4, 3, 3)  # ceil(8 / 2), ceil(7 / 3)
    assert_close(y, y_lax)
    # totals: rows (4 - 1) 2 + 5 - 8 = 3, columns (3 - 1) 3 + 2 - 7 = 1; the extra one after
    y_explicit = conv.conv2d(x, w, padding=((1, 2), (0, 1)), **options)
    np.testing.assert_array_equal(y, y_explicit)
    assert not np.array_equal(y, conv.conv2d(x, w, padding=((1, 2), (1, 0)), **options))  # not before


# ------------------------------------------------------------------------ finite differences
@pytest.mark.parametrize(
    "case",
    [GRID[1], GRID[3], GRID[6], GRID[7]],
    ids=[GRID_IDS[1], GRID_IDS[3], GRID_IDS[6], GRID_IDS[7]],
)
def test_finite_differences(case, x64):
    x, w, b, options = make_args(case, jnp.float64, seed=3)
    f = functools.partial(conv.conv2d, **options)
    args = (x, w) if b is None else (x, w, b)
    check_grads(f, args, order=1, modes=("rev",))


def test_finite_differences_second_order(x64):
    x, w, b, options = make_args(GRID[4], jnp.float64, seed=4)  # stride 3, padding -1, untied
    check_grads(functools.partial(conv.conv2d, **options), (x, w, b), order=2, modes=("rev",))


# ------------------------------------------------------------------------ worked by hand
# The article's example: a 3x3 input o and a 2x2 kernel w, stride 1, no padding (Eq 7, 13, 22).
O = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.float32)
W = np.array([[1, 2], [3, 4]], np.float32)
D = np.array([[1, -2], [3, 1]], np.float32)  # the deltas dE/dx^l of the 2x2 output (Eq 15)


def as_nhwc(a):
    return jnp.asarray(a)[None, :, :, None]


def as_hwio(k):
    return jnp.asarray(k)[:, :, None, None]


def test_eq7_forward_by_hand():
    o, w = O, W
    expected = np.array([
        [w[0, 0] * o[0, 0] + w[0, 1] * o[0, 1] + w[1, 0] * o[1, 0] + w[1, 1] * o[1, 1],
         w[0, 0] * o[0, 1] + w[0, 1] * o[0, 2] + w[1, 0] * o[1, 1] + w[1, 1] * o[1, 2]],
        [w[0, 0] * o[1, 0] + w[0, 1] * o[1, 1] + w[1, 0] * o[2, 0] + w[1, 1] * o[2, 1],
         w[0, 0] * o[1, 1] + w[0, 1] * o[1, 2] + w[1, 0] * o[2, 1] + w[1, 1] * o[2, 2]],
    ])
    np.testing.assert_array_equal(expected, [[37, 47], [67, 77]])
    y = conv.conv2d(as_nhwc(O), as_hwio(W))
    np.testing.assert_array_equal(y[0, :, :, 0], expected)
    np.testing.assert_array_equal(conv.correlate2d(jnp.asarray(O), jnp.asarray(W)), expected)
    # with a tied bias b: every output gets + b (Eq 7)
    yb = conv.conv2d(as_nhwc(O), as_hwio(W), jnp.array([0.5], jnp.float32))
    np.testing.assert_array_equal(yb[0, :, :, 0], expected + 0.5)


def test_eq13_weight_gradient_by_hand():
    """dE/dw_{m',n'} = sum_{i,j} delta_{i,j} o_{i+m', j+n'} (Eq 13)."""
    o, d = O, D
    expected = np.array([
        [d[0, 0] * o[0, 0] + d[0, 1] * o[0, 1] + d[1, 0] * o[1, 0] + d[1, 1] * o[1, 1],
         d[0, 0] * o[0, 1] + d[0, 1] * o[0, 2] + d[1, 0] * o[1, 1] + d[1, 1] * o[1, 2]],
        [d[0, 0] * o[1, 0] + d[0, 1] * o[1, 1] + d[1, 0] * o[2, 0] + d[1, 1] * o[2, 1],
         d[0, 0] * o[1, 1] + d[0, 1] * o[1, 2] + d[1, 0] * o[2, 1] + d[1, 1] * o[2, 2]],
    ])
    np.testing.assert_array_equal(expected, [[14, 17], [23, 26]])
    dw = conv.conv2d_weight_grad(as_nhwc(O), as_nhwc(D), (2, 2, 1, 1))
    np.testing.assert_array_equal(dw[:, :, 0, 0], expected)
    _, pull = jax.vjp(lambda w: conv.conv2d(as_nhwc(O), w), as_hwio(W))
    np.testing.assert_array_equal(pull(as_nhwc(D))[0][:, :, 0, 0], expected)
    # Eq 13 is the input cross-correlated with the deltas
    np.testing.assert_array_equal(conv.correlate2d(jnp.asarray(O), jnp.asarray(D)), expected)


def test_eq22_input_gradient_by_hand():
    """dE/dx_{i',j'} = sum_{m,n} delta_{i'-m, j'-n} w_{m,n} (Eq 20-22; deltas outside are 0)."""
    d, w = D, W
    expected = np.array([
        [d[0, 0] * w[0, 0],
         d[0, 0] * w[0, 1] + d[0, 1] * w[0, 0],
         d[0, 1] * w[0, 1]],
        [d[0, 0] * w[1, 0] + d[1, 0] * w[0, 0],
         d[0, 0] * w[1, 1] + d[0, 1] * w[1, 0] + d[1, 0] * w[0, 1] + d[1, 1] * w[0, 0],
         d[0, 1] * w[1, 1] + d[1, 1] * w[0, 1]],
        [d[1, 0] * w[1, 0],
         d[1, 0] * w[1, 1] + d[1, 1] * w[1, 0],
         d[1, 1] * w[1, 1]],
    ])
    np.testing.assert_array_equal(expected, [[1, 0, -4], [6, 5, -6], [9, 15, 4]])
    dx = conv.conv2d_input_grad(as_nhwc(D), as_hwio(W), (1, 3, 3, 1))
    np.testing.assert_array_equal(dx[0, :, :, 0], expected)
    _, pull = jax.vjp(lambda x: conv.conv2d(x, as_hwio(W)), as_nhwc(O))
    np.testing.assert_array_equal(pull(as_nhwc(D))[0][0, :, :, 0], expected)
    # Eq 22: the zero-padded deltas, cross-correlated with the rotated kernel (= a full convolution)
    d_pad = jnp.pad(jnp.asarray(D), 1)
    np.testing.assert_array_equal(conv.correlate2d(d_pad, conv.rot180(jnp.asarray(W))), expected)
    np.testing.assert_array_equal(conv.convolve2d(d_pad, jnp.asarray(W)), expected)


def test_eq3_convolution_is_correlation_with_rotated_kernel():
    i, k = jnp.asarray(O), jnp.asarray(W)
    np.testing.assert_array_equal(conv.rot180(k), [[4, 3], [2, 1]])
    # Eq 2: (I * K)_{ij} = sum_mn I(i - m, j - n) K(m, n), valid mode (i, j start at k - 1)
    expected = np.array([
        [sum(O[1 + a - m, 1 + c - n] * W[m, n] for m in range(2) for n in range(2))
         for c in range(2)]
        for a in range(2)
    ])
    np.testing.assert_array_equal(expected, [[23, 33], [53, 63]])
    np.testing.assert_array_equal(conv.convolve2d(i, k), expected)
    np.testing.assert_array_equal(conv.convolve2d(i, k), conv.correlate2d(i, conv.rot180(k)))
    np.testing.assert_array_equal(conv.convolve2d(i, k), reference.convolve2d(i, k))
    # conv2d's flip=True is the same (Eq 6)
    y = conv.conv2d(as_nhwc(O), as_hwio(W), flip=True)
    np.testing.assert_array_equal(y[0, :, :, 0], expected)


def test_correlate2d_by_hand_non_square():
    i = jnp.array([[1, 0, 2, 1], [0, 3, 1, 2]], jnp.float32)
    k = jnp.array([[1, -1]], jnp.float32)
    # Eq 1: I(i, j) K(0, 0) + I(i, j + 1) K(0, 1)
    np.testing.assert_array_equal(conv.correlate2d(i, k), [[1, -2, 1], [-3, 2, -1]])
    np.testing.assert_array_equal(reference.correlate2d(i, k), [[1, -2, 1], [-3, 2, -1]])
    # differentiable by the custom rules: dE/dK is Eq 13 again, dE/dI is Eq 22
    ct = jnp.array([[1, 2, 0], [0, -1, 3]], jnp.float32)
    _, pull = jax.vjp(conv.correlate2d, i, k)
    _, pull_ref = jax.vjp(reference.correlate2d, i, k)
    chex_equal(pull(ct), pull_ref(ct))


def test_stride2_by_hand():
    """5x5 input, 3x3 kernel, stride 2 -> 2x2; the input gradient is the deltas dilated by the
    stride (one zero between neighbours) fully convolved with the kernel."""
    x = np.arange(25, dtype=np.float32).reshape(5, 5)  # x[r, c] = 5r + c
    w = np.array([[1, 2, 0], [0, 1, -1], [3, 0, 1]], np.float32)
    expected = np.array([[np.sum(w * x[2 * i:2 * i + 3, 2 * j:2 * j + 3]) for j in range(2)]
                         for i in range(2)])
    # sum(w) = 7 and sum_mn w_mn (5m + n) = 43, so y_ij = 43 + 7 (10 i + 2 j)
    np.testing.assert_array_equal(expected, [[43, 57], [113, 127]])
    y = conv.conv2d(as_nhwc(x), as_hwio(w), stride=2)
    np.testing.assert_array_equal(y[0, :, :, 0], expected)

    delta = np.array([[1, 2], [3, 4]], np.float32)
    dx_hand = np.zeros((5, 5), np.float32)  # each delta spreads its window's weights
    for i in range(2):
        for j in range(2):
            dx_hand[2 * i:2 * i + 3, 2 * j:2 * j + 3] += delta[i, j] * w
    np.testing.assert_array_equal(dx_hand, [
        [1, 2, 2, 4, 0],
        [0, 1, -1, 2, -2],
        [6, 6, 11, 8, 2],  # 1 w22 + 2 w20 + 3 w02 + 4 w00
        [0, 3, -3, 4, -4],
        [9, 0, 15, 0, 4],
    ])
    dilated = np.array([[1, 0, 2], [0, 0, 0], [3, 0, 4]], np.float32)
    full = conv.convolve2d(jnp.pad(jnp.asarray(dilated), 2), jnp.asarray(w))
    np.testing.assert_array_equal(full, dx_hand)
    dx = conv.conv2d_input_grad(as_nhwc(delta), as_hwio(w), (1, 5, 5, 1), stride=2)
    np.testing.assert_array_equal(dx[0, :, :, 0], dx_hand)
    # weight gradient: the input cross-correlated with the dilated deltas, dw_mn = sum_ij delta_ij
    # x[2i + m, 2j + n] = sum(delta) (5m + n) + sum_ij delta_ij (10 i + 2 j) = 10 (5m + n) + 82
    dw_hand = np.array([[50 * m + 10 * n + 82 for n in range(3)] for m in range(3)], np.float32)
    np.testing.assert_array_equal(dw_hand, [[82, 92, 102], [132, 142, 152], [182, 192, 202]])
    dw = conv.conv2d_weight_grad(as_nhwc(x), as_nhwc(delta), (3, 3, 1, 1), stride=2)
    np.testing.assert_array_equal(dw[:, :, 0, 0], dw_hand)
    np.testing.assert_array_equal(conv.correlate2d(jnp.asarray(x), dilated), dw_hand)


def test_bias_gradient_by_hand():
    """Tied bias (D,): deltas summed over N, H_out, W_out. Untied (H_out, W_out, D): over N."""
    x = jnp.ones((2, 3, 3, 1), jnp.float32)
    w = jnp.ones((2, 2, 1, 2), jnp.float32)
    delta = jnp.arange(16, dtype=jnp.float32).reshape(2, 2, 2, 2)  # 8n + 4i + 2j + d

    _, pull = jax.vjp(conv.conv2d, x, w, jnp.zeros((2,), jnp.float32))
    # sum_{n,i,j} (8n + 4i + 2j + d) = 32 + 16 + 8 + 8d
    np.testing.assert_array_equal(pull(delta)[2], [56, 64])

    _, pull = jax.vjp(conv.conv2d, x, w, jnp.zeros((2, 2, 2), jnp.float32))
    # sum_n (8n + 4i + 2j + d) = 8 + 2 (4i + 2j + d)
    np.testing.assert_array_equal(
        pull(delta)[2], [[[8, 10], [12, 14]], [[16, 18], [20, 22]]]
    )


def test_pad_value_minus_one_by_hand():
    """LeCun 1989 pads with -1: the border adds -1 * w to the output; padded units get no
    gradient (dx has the unpadded shape)."""
    x = np.array([[1, 2], [3, 4]], np.float32)
    w = np.array([[1, 2], [3, 4]], np.float32)
    p = np.pad(x, 1, constant_values=-1)
    expected = np.array([[np.sum(w * p[i:i + 2, j:j + 2]) for j in range(3)] for i in range(3)])
    np.testing.assert_array_equal(expected, [[-2, 8, -1], [10, 30, 8], [-2, 4, -5]])
    # y00 = w00 (-1) + w01 (-1) + w10 (-1) + w11 x00
    assert expected[0, 0] == -w[0, 0] - w[0, 1] - w[1, 0] + w[1, 1] * x[0, 0]

    f = functools.partial(conv.conv2d, padding=1, pad_value=-1.0)
    y, pull = jax.vjp(f, as_nhwc(x), as_hwio(w))
    np.testing.assert_array_equal(y[0, :, :, 0], expected)
    # zero padding drops the border term: y0 - y = the weights that met the border, e.g.
    # (0, 0): w00 + w01 + w10 = 6, (0, 1): w00 + w01 = 3, (1, 1): nothing
    y0 = conv.conv2d(as_nhwc(x), as_hwio(w), padding=1)
    np.testing.assert_array_equal(y0[0, :, :, 0] - expected, [[6, 3, 7], [4, 0, 6], [8, 7, 9]])

    delta = np.array([[1, 0, 0], [0, 2, 0], [0, 0, 3]], np.float32)
    dx, dw = pull(as_nhwc(delta))
    assert dx.shape == (1, 2, 2, 1)
    # dx_{a,b} = sum_ij delta_ij w_{a+1-i, b+1-j}: e.g. dx00 = d00 w11 + d11 w00 = 4 + 2
    np.testing.assert_array_equal(dx[0, :, :, 0], [[6, 4], [6, 11]])
    # dw_{m,n} = sum_ij delta_ij p_{i+m, j+n}, the -1 border included: dw00 = -1 + 2*1 + 3*4
    np.testing.assert_array_equal(dw[:, :, 0, 0], [[13, 0], [2, 6]])
    dx_ref, dw_ref = jax.vjp(
        functools.partial(reference.conv2d, padding=1, pad_value=-1.0), as_nhwc(x), as_hwio(w)
    )[1](as_nhwc(delta))
    chex_equal((dx, dw), (dx_ref, dw_ref))


def test_groups_do_not_mix_channels():
    """groups=2: output channel 0 sees input channel 0 only, and the gradient of the group-0
    kernel does not depend on the group-1 input."""
    x = normal(0, (1, 4, 4, 2), jnp.float32)
    w = jnp.stack([jnp.asarray(W), -jnp.asarray(W).T], axis=-1)[:, :, None, :]  # (2, 2, 1, 2)
    f = functools.partial(conv.conv2d, groups=2)
    y = f(x, w)
    # equal up to rounding: the grouped conv sums each group's taps in its own order (the depthwise
    # broadcast products), not necessarily the ungrouped conv's
    np.testing.assert_allclose(y[0, :, :, 0], conv.correlate2d(x[0, :, :, 0], w[:, :, 0, 0]),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y[0, :, :, 1], conv.correlate2d(x[0, :, :, 1], w[:, :, 0, 1]),
                               rtol=1e-6, atol=1e-6)

    delta = normal(1, y.shape, jnp.float32)
    dx, dw = jax.vjp(f, x, w)[1](delta)
    x_other = x.at[..., 1].set(100.0)  # change the group-1 input only
    dx_o, dw_o = jax.vjp(f, x_other, w)[1](delta)
    np.testing.assert_array_equal(dw_o[..., 0], dw[..., 0])
    assert not np.array_equal(dw_o[..., 1], dw[..., 1])
    np.testing.assert_array_equal(dx_o, dx)  # dx depends on w and delta only
    # a delta on output channel 0 only reaches input channel 0
    only0 = delta.at[..., 1].set(0.0)
    dx0 = jax.vjp(f, x, w)[1](only0)[0]
    np.testing.assert_array_equal(dx0[..., 1], np.zeros((1, 4, 4)))
    assert np.any(dx0[..., 0] != 0)


# ---------------------------------------------------------------------------------- transforms
TRANSFORM_CASE = GRID[6]  # explicit odd padding, stride (2, 1), dilation (1, 2), groups 2, flip


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_jit_and_eager_agree(jit, dtype):
    x, w, _, options = make_args(GRID[2], dtype)
    b = normal(5, (w.shape[3],), dtype)

    def run(x, w, b):
        f = functools.partial(conv.conv2d, **options)
        y = f(x, w, b)
        return vjp_all(f, x, w, b, normal(9, y.shape, dtype))

    y, grads = (jax.jit(run) if jit else run)(x, w, b)
    y_ref, grads_ref = vjp_all(
        functools.partial(reference.conv2d, **options), x, w, b, normal(9, y.shape, dtype)
    )
    assert_close((y, grads), (y_ref, grads_ref))
    assert_dtype((y, grads), dtype)


def test_vmap_per_example_gradients(dtype):
    x, w, b, options = make_args(GRID[4], dtype)  # untied bias, padding -1, stride 3
    x = jnp.concatenate([x, 2 * x[:, ::-1], -x], axis=0)  # 3 examples
    y_shape = jax.eval_shape(functools.partial(conv.conv2d, **options), x, w, b).shape
    cts = normal(13, y_shape, dtype)

    def per_example(f):
        def loss(params, x_n, ct_n):
            w_, b_ = params
            return jnp.vdot(f(x_n[None], w_, b_, **options)[0], ct_n)  # random weights per unit
        return jax.grad(loss, argnums=(0, 1))

    grads = jax.jit(jax.vmap(per_example(conv.conv2d), in_axes=(None, 0, 0)))((w, b), x, cts)
    loop = [per_example(conv.conv2d)((w, b), x[n], cts[n]) for n in range(x.shape[0])]
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *loop)
    assert_close(grads, stacked)
    ref = jax.vmap(per_example(reference.conv2d), in_axes=(None, 0, 0))((w, b), x, cts)
    assert_close(grads, ref)
    (dw, db), dx = grads
    assert dw.shape == (3, *w.shape) and db.shape == (3, *b.shape) and dx.shape == x.shape
    assert_dtype(grads, dtype)


def test_checkpoint(dtype):
    x, w, b, options = make_args(GRID[1], dtype)
    ct = normal(17, jax.eval_shape(functools.partial(conv.conv2d, **options), x, w, b).shape,
                dtype)

    def loss(f):
        return lambda x, w, b: jnp.vdot(jnp.tanh(f(x, w, b, **options)), ct)

    g = jax.jit(jax.grad(jax.checkpoint(loss(conv.conv2d)), argnums=(0, 1, 2)))(x, w, b)
    g_plain = jax.grad(loss(conv.conv2d), argnums=(0, 1, 2))(x, w, b)
    g_ref = jax.grad(loss(reference.conv2d), argnums=(0, 1, 2))(x, w, b)
    assert_close(g, g_plain)
    assert_close(g, g_ref)
    assert_dtype(g, dtype)


def test_second_order_matches_reference(dtype):
    """vjp of the vjp: a random linear function of (dx, dw, db), differentiated w.r.t. x, w, b
    and the cotangent delta; and d/dx of a function of grad_w."""
    x, w, b, options = make_args(TRANSFORM_CASE, dtype)
    b = normal(21, (w.shape[3],), dtype)
    y_shape = jax.eval_shape(functools.partial(conv.conv2d, **options), x, w, b).shape
    delta = normal(22, y_shape, dtype)
    u = (normal(23, x.shape, dtype), normal(24, w.shape, dtype), normal(25, b.shape, dtype))

    def second(f):
        def inner(x, w, b, delta):
            grads = jax.vjp(functools.partial(f, **options), x, w, b)[1](delta)
            return sum(jnp.vdot(g, v) for g, v in zip(grads, u, strict=True))

        def grad_w_then_x(x, w, b):
            loss = lambda w_: jnp.vdot(jnp.tanh(f(x, w_, b, **options)), delta)  # noqa: E731
            return jnp.vdot(jnp.sin(jax.grad(loss)(w)), u[1])

        return (jax.grad(inner, argnums=(0, 1, 2, 3))(x, w, b, delta),
                jax.grad(grad_w_then_x, argnums=(0, 1, 2))(x, w, b))

    custom = jax.jit(lambda: second(conv.conv2d))()
    ref = second(reference.conv2d)
    assert_close(custom, ref)
    assert_dtype(custom, dtype)


# ------------------------------------------------------------------------------ low precision
@pytest.mark.parametrize("low", [jnp.bfloat16, jnp.float16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("bias", ["tied", "untied"])
def test_low_precision_keeps_dtype(low, bias):
    case = (None, (2, 6, 6, 2), (3, 3, 2, 4), bias, {"stride": 2, "padding": 1, "pad_value": -1.0})
    x, w, b, options = make_args(case, low)
    f = functools.partial(conv.conv2d, **options)
    y, pull = jax.vjp(f, x, w, b)
    ct = normal(3, y.shape, low)
    grads = pull(ct)
    assert_dtype((y, grads), low)
    assert_dtype(conv.conv2d_input_grad(ct, w, x.shape, **grad_options(options)), low)
    assert_dtype(conv.conv2d_weight_grad(x, ct, w.shape, **options), low)
    # the same values in float32 through the reference, to the low dtype's tolerance
    up = lambda t: jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), t)  # noqa: E731
    y32, grads32 = vjp_all(functools.partial(reference.conv2d, **options), *up((x, w, b)), up(ct))
    assert_close((y, grads), (y32, grads32), dtype=low)


# ------------------------------------------------------------------------------- bad input
X = jnp.zeros((2, 5, 5, 4), jnp.float32)
W4 = jnp.zeros((3, 3, 4, 6), jnp.float32)


def _conv(**kw):
    args = {"x": X, "w": W4, "b": None}
    args.update({k: kw.pop(k) for k in list(kw) if k in args})
    return lambda: conv.conv2d(args["x"], args["w"], args["b"], **kw)


def _msg(fn, arg, rest=""):
    return re.escape(f"`{fn}`: `{arg}`") + rest


BAD = [
    ("x-rank3", _conv(x=jnp.zeros((5, 5, 4), jnp.float32)), ValueError,
     _msg("conv2d", "x", " must have rank 4 \\(NHWC\\)")),
    ("w-rank3", _conv(w=jnp.zeros((3, 3, 4), jnp.float32)), ValueError,
     _msg("conv2d", "w", " must have rank 4 \\(HWIO\\)")),
    ("channel-mismatch", _conv(w=jnp.zeros((3, 3, 3, 6), jnp.float32)), ValueError,
     re.escape("`conv2d`: `w` has 3 input channels but `x` has 4 (groups=1)")),
    ("groups-not-dividing-C", _conv(w=jnp.zeros((3, 3, 1, 6), jnp.float32), groups=3),
     ValueError, re.escape("`conv2d`: `x` has 4 channels, not divisible by `groups` (=3)")),
    ("groups-not-dividing-D", _conv(w=jnp.zeros((3, 3, 2, 5), jnp.float32), groups=2),
     ValueError, re.escape("`conv2d`: `w` has 5 output channels, not divisible by `groups` (=2)")),
    ("groups-0", _conv(groups=0), ValueError, _msg("conv2d", "groups", " must be >= 1")),
    ("groups-bool", _conv(groups=True), TypeError, _msg("conv2d", "groups", " must be a positive")),
    ("groups-float", _conv(groups=2.0), TypeError, _msg("conv2d", "groups", " must be a positive")),
    ("kernel-too-large", _conv(w=jnp.zeros((6, 3, 4, 6), jnp.float32)), ValueError,
     re.escape("`conv2d`: dilated kernel extent 6 along H is larger than the padded input")),
    ("dilated-kernel-too-large", _conv(dilation=(1, 3)), ValueError,
     re.escape("`conv2d`: dilated kernel extent 7 along W is larger than the padded input")),
    ("stride-0", _conv(stride=0), ValueError, _msg("conv2d", "stride", " must be >= 1")),
    ("dilation-negative", _conv(dilation=-1), ValueError, _msg("conv2d", "dilation", " must be >= 1")),
    ("stride-float", _conv(stride=1.5), TypeError, _msg("conv2d", "stride", " must be an int")),
    ("stride-3-tuple", _conv(stride=(1, 1, 1)), TypeError, _msg("conv2d", "stride", " must be an int")),
    ("padding-unknown", _conv(padding="HALF"), ValueError,
     _msg("conv2d", "padding", " must be 'VALID', 'SAME', 'FULL'.*'HALF'")),
    ("padding-3-tuple", _conv(padding=(1, 2, 3)), ValueError,
     _msg("conv2d", "padding", " must be .*\\(1, 2, 3\\)")),
    ("padding-negative", _conv(padding=((0, -1), (1, 1))), ValueError,
     _msg("conv2d", "padding", " amounts must be >= 0")),
    ("tied-bias-shape", _conv(b=jnp.zeros((4,), jnp.float32)), ValueError,
     _msg("conv2d", "b", re.escape(" has shape (4,); expected (6,) for a tied bias or (3, 3, 6)"))),
    ("untied-bias-shape", _conv(b=jnp.zeros((5, 5, 6), jnp.float32)), ValueError,
     _msg("conv2d", "b", re.escape(" has shape (5, 5, 6); expected"))),
    ("int-x", _conv(x=jnp.zeros((2, 5, 5, 4), jnp.int32)), TypeError,
     _msg("conv2d", "x", " must be a floating-point array, got dtype int32")),
    ("bool-w", _conv(w=jnp.zeros((3, 3, 4, 6), jnp.bool_)), TypeError,
     _msg("conv2d", "w", " must be a floating-point array, got dtype bool")),
    ("int-b", _conv(b=jnp.zeros((6,), jnp.int32)), TypeError,
     _msg("conv2d", "b", " must be a floating-point array")),
    ("flip-not-bool", _conv(flip=1), TypeError, _msg("conv2d", "flip", " must be a bool")),
    ("pad-value-str", _conv(pad_value="-1"), TypeError,
     _msg("conv2d", "pad_value", " must be a Python number")),
    ("input-grad-bad-x-shape",
     lambda: conv.conv2d_input_grad(jnp.zeros((2, 3, 3, 6)), W4, (2, 5, 5)), TypeError,
     _msg("conv2d_input_grad", "x_shape", " must be a tuple of 4 non-negative ints")),
    ("input-grad-x-shape-channels",
     lambda: conv.conv2d_input_grad(jnp.zeros((2, 3, 3, 6)), W4, (2, 5, 5, 3)), ValueError,
     re.escape("`conv2d_input_grad`: `w` has 4 input channels but `x` has 3")),
    ("input-grad-wrong-delta",
     lambda: conv.conv2d_input_grad(jnp.zeros((2, 3, 4, 6)), W4, (2, 5, 5, 4)), ValueError,
     _msg("conv2d_input_grad", "delta", re.escape(" has shape (2, 3, 4, 6); expected the output "
                                                  "shape (2, 3, 3, 6)"))),
    ("input-grad-delta-rank",
     lambda: conv.conv2d_input_grad(jnp.zeros((3, 3, 6)), W4, (2, 5, 5, 4)), ValueError,
     _msg("conv2d_input_grad", "delta", " must have rank 4")),
    ("weight-grad-wrong-w-shape",
     lambda: conv.conv2d_weight_grad(X, jnp.zeros((2, 3, 3, 6)), (3, 3, 3, 6)), ValueError,
     re.escape("`conv2d_weight_grad`: `w` has 3 input channels but `x` has 4")),
    ("weight-grad-w-shape-not-ints",
     lambda: conv.conv2d_weight_grad(X, jnp.zeros((2, 3, 3, 6)), (3, 3, 4, 6.0)), TypeError,
     _msg("conv2d_weight_grad", "w_shape", " must be a tuple of 4 non-negative ints")),
    ("weight-grad-wrong-delta",
     lambda: conv.conv2d_weight_grad(X, jnp.zeros((2, 3, 3, 5)), (3, 3, 4, 6)), ValueError,
     _msg("conv2d_weight_grad", "delta", " has shape \\(2, 3, 3, 5\\)")),
    ("correlate2d-3d", lambda: conv.correlate2d(jnp.zeros((3, 3, 1)), jnp.zeros((2, 2))),
     ValueError, _msg("correlate2d", "I", " must have rank 2")),
    ("convolve2d-kernel-3d", lambda: conv.convolve2d(jnp.zeros((3, 3)), jnp.zeros((2, 2, 1))),
     ValueError, _msg("convolve2d", "K", " must have rank 2")),
    ("rot180-1d", lambda: conv.rot180(jnp.zeros((3,))), ValueError,
     _msg("rot180", "k", " must have at least 2 dimensions")),
]


@pytest.mark.parametrize(("make", "exc", "match"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_raises(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_mixed_float32_float64_raises(x64):
    x64_x = jnp.zeros((2, 5, 5, 4), jnp.float64)
    with pytest.raises(TypeError, match=re.escape(
        "`conv2d`: arguments must share one dtype, got `x` float64, `w` float32"
    )):
        conv.conv2d(x64_x, W4)
    with pytest.raises(TypeError, match=re.escape("`b` float64")):
        conv.conv2d(X, W4, jnp.zeros((6,), jnp.float64))
    with pytest.raises(TypeError, match=re.escape("`conv2d_input_grad`: arguments must share")):
        conv.conv2d_input_grad(jnp.zeros((2, 3, 3, 6), jnp.float64), W4, (2, 5, 5, 4))
    with pytest.raises(TypeError, match=re.escape("`conv2d_weight_grad`: arguments must share")):
        conv.conv2d_weight_grad(X, jnp.zeros((2, 3, 3, 6), jnp.float64), (3, 3, 4, 6))


def test_bad_input_raises_at_trace_time_under_jit():
    with pytest.raises(ValueError, match=re.escape("`conv2d`: `w` has 3 input channels but `x` has 4")):
        jax.jit(lambda x, w: conv.conv2d(x, w))(X, jnp.zeros((3, 3, 3, 6), jnp.float32))
    with pytest.raises(ValueError, match=_msg("conv2d", "stride", " must be >= 1")):
        jax.jit(lambda x: conv.conv2d(x, W4, stride=0))(X)
    with pytest.raises(ValueError, match=_msg("conv2d_input_grad", "delta", " has shape")):
        jax.jit(lambda d: conv.conv2d_input_grad(d, W4, (2, 5, 5, 4)))(jnp.zeros((2, 2, 3, 6)))


def test_reference_validates_like_the_rules():
    """The oracle accepts exactly the same inputs (shared validators)."""
    with pytest.raises(ValueError, match=re.escape("`conv2d`: `w` has 3 input channels")):
        reference.conv2d(X, jnp.zeros((3, 3, 3, 6), jnp.float32))


# ---------------------------------------------------------------------------- forward mode
def test_forward_mode_is_not_supported():
    """`jax.custom_vjp` has no JVP: jax.jvp of conv2d raises JAX's TypeError; the reference
    supports forward mode (the documented alternative)."""
    x, w = normal(0, (1, 5, 5, 2), jnp.float32), normal(1, (3, 3, 2, 3), jnp.float32)
    t = normal(2, x.shape, jnp.float32)
    with pytest.raises(TypeError, match="can't apply forward-mode autodiff \\(jvp\\) to a custom_vjp"):
        jax.jvp(lambda x_: conv.conv2d(x_, w), (x,), (t,))
    y, y_dot = jax.jvp(lambda x_: reference.conv2d(x_, w), (x,), (t,))
    assert_close(y, conv.conv2d(x, w))
    assert_close(y_dot, conv.conv2d(t, w))  # linear in x
