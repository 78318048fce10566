"""Tests of `jaxcnn.pooling`: the article's pooling backward rules against `jaxcnn.reference`.

The custom functions and the reference, the plain autodiff oracle, run under `jax.jit` (compiled once
per configuration, each in its own program: no transformation of ours between the oracle and `jax.vjp`).
"""

from __future__ import annotations

import inspect
import itertools
import math
from functools import lru_cache, partial

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxcnn import _lowering, pooling, reference
from jaxcnn._specs import pool_spec
from tests.tolerances import assert_close, assert_dtype, normal

NAMES = ("max_pool", "avg_pool", "l2_pool")

# (H, W), window, stride, padding, blockwise lowering expected
CONFIGS = [
    ((4, 4), 1, None, "VALID", True),
    ((5, 7), 2, None, "VALID", True),  # odd sizes: the remainder row/columns are cropped
    ((6, 5), (2, 3), None, "SAME", True),
    ((7, 5), 3, 3, 1, True),  # int padding, blockwise with padding
    ((5, 5), 3, 1, "VALID", False),  # overlapping
    ((5, 6), 3, 2, "SAME", False),
    ((4, 5), 2, 1, "FULL", False),
    ((5, 7), (3, 2), (2, 1), (1, 1), False),  # pair padding, non-square window
    ((6, 7), 3, 2, ((0, 2), (1, 0)), False),  # explicit padding
    ((5, 5), 2, 3, "VALID", False),  # stride > window: units no window sees
]
CONFIG_IDS = [f"{hw}-w{w}-s{s}-p{p}" for hw, w, s, p, _ in CONFIGS]

# (function, extra keyword arguments)
VARIANTS = [
    ("max_pool", ()),
    ("avg_pool", (("count_include_pad", True),)),
    ("avg_pool", (("count_include_pad", False),)),
    ("l2_pool", ()),
]
VARIANT_IDS = ["max", "avg_incl", "avg_excl", "l2"]


def _kw(window, stride, padding, extra=()):
    return (("window", window), ("stride", stride), ("padding", padding), *extra)


def _apply(module, name, x, kw):
    return getattr(module, name)(x, **dict(kw))


@partial(jax.jit, static_argnums=(0, 3))
def _custom(name, x, g, kw):
    """Value and VJP (cotangent g) of the custom function, compiled."""
    y, vjp = jax.vjp(lambda x_: _apply(pooling, name, x_, kw), x)
    return y, vjp(g)[0]


@partial(jax.jit, static_argnums=(0, 3))
def _reference(name, x, g, kw):
    """Value and VJP of the reference, compiled (its own program: see the module docstring)."""
    y, vjp = jax.vjp(lambda x_: _apply(reference, name, x_, kw), x)
    return y, vjp(g)[0]


@lru_cache
def _normals(seed, dtype_name):
    return np.asarray(normal(seed, (1024,), jnp.dtype(dtype_name)))


def _normal(seed, shape, dtype):
    """`tests.tolerances.normal` values, drawn once per seed and dtype and cut to `shape` (a
    fresh draw per shape would compile the sampler for every shape)."""
    return jnp.asarray(_normals(seed, jnp.dtype(dtype).name)[: math.prod(shape)].reshape(shape))


def _cotangent(name, x, kw, seed=1):
    shape = jax.eval_shape(lambda x_: _apply(reference, name, x_, kw), x).shape
    return _normal(seed, shape, x.dtype)


def _nhwc(a, dtype=jnp.float32):
    """A 2-D hand-written array as a (1, H, W, 1) batch."""
    return jnp.asarray(np.asarray(a, np.float64)[None, :, :, None], dtype)


def _hw(a):
    return np.asarray(a, np.float64)[0, :, :, 0]


# ------------------------------------------------------------------------ reference grid
# count_include_pad=False only differs from True where there is padding
GRID = [
    pytest.param(config, variant, id=f"{cid}-{vid}")
    for config, cid in zip(CONFIGS, CONFIG_IDS, strict=True)
    for variant, vid in zip(VARIANTS, VARIANT_IDS, strict=True)
    if vid != "avg_excl" or config[3] != "VALID"
]


@pytest.mark.parametrize("config, variant", GRID)
def test_matches_reference(config, variant, dtype):
    hw, window, stride, padding, _ = config
    name, extra = variant
    x = _normal(0, (2, *hw, 3), dtype)
    kw = _kw(window, stride, padding, extra)
    g = _cotangent(name, x, kw)
    y, dx = _custom(name, x, g, kw)
    y_ref, dx_ref = _reference(name, x, g, kw)
    assert_close(y, y_ref)
    assert_close(dx, dx_ref)
    assert_dtype((y, dx), dtype)


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_lowering_chosen_by_spec(config):
    hw, window, stride, padding, blockwise = config
    spec = pool_spec("max_pool", jnp.zeros((1, *hw, 1)), window, stride, padding)
    assert pooling._plan(spec).tiled is blockwise


def test_grid_reaches_both_lowerings():
    assert {c[-1] for c in CONFIGS} == {True, False}


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("config", [c for c in CONFIGS if c[-1]], ids=str)
def test_blockwise_and_general_lowerings_agree(config, variant):
    """Force each lowering (reshape or strided slices; the forward by tap slices or by the stacked
    taps) on the same blockwise spec: identical values and gradients."""
    hw, window, stride, padding, _ = config
    name, extra = variant
    x = _normal(2, (2, *hw, 3), jnp.float32)
    spec = pool_spec(name, x, window, stride, padding)
    g = _cotangent(name, x, _kw(window, stride, padding, extra))

    @partial(jax.jit, static_argnums=(0, 1))
    def run(blockwise, sliced, x, g):
        plan = pooling._Plan(spec, blockwise, sliced=sliced)
        fn = getattr(pooling, "_" + name)
        args = (plan, dict(extra)["count_include_pad"]) if extra else (plan,)
        y, vjp = jax.vjp(lambda x_: fn(x_, *args), x)
        return y, vjp(g)[0]

    fast = run(True, True, x, g)
    for other in (run(False, True, x, g), run(True, False, x, g), run(False, False, x, g)):
        if name == "max_pool":
            chex.assert_trees_all_equal(fast, other)
        else:
            assert_close(fast, other)


@pytest.mark.parametrize(
    "name, config",
    [
        ("max_pool", ((5, 5), 3, 1, "SAME")),
        ("max_pool", ((5, 6), (2, 3), None, 1)),
        ("avg_pool", ((5, 5), 3, 2, ((0, 2), (1, 0)))),
        ("avg_pool", ((4, 6), 2, None, "VALID")),
        ("l2_pool", ((5, 4), 2, 1, "FULL")),
        ("l2_pool", ((6, 6), 3, None, "VALID")),
    ],
)
def test_finite_differences(name, config, x64):
    """Central differences in float64 on inputs without ties (distinct, well separated values)."""
    hw, window, stride, padding = config
    size = 2 * hw[0] * hw[1] * 2
    values = np.random.default_rng(0).permutation(size).astype(np.float64) * 0.25 + 0.5
    x = jnp.asarray(values.reshape(2, *hw, 2))
    for extra in ((), (("count_include_pad", False),)) if name == "avg_pool" else ((),):
        f = jax.jit(partial(_apply, pooling, name, kw=_kw(window, stride, padding, extra)))
        check_grads(f, (x,), order=1, modes=("rev",))


# ------------------------------------------------------------------------ worked by hand
def test_max_pool_by_hand():
    x = _nhwc([[1, 3, 2, 0],
               [4, 2, 1, 5],
               [0, 6, 3, 7],
               [2, 1, 8, 1]])
    delta = _nhwc([[10, 20],
                   [30, 40]])
    y, vjp = jax.vjp(lambda x_: pooling.max_pool(x_, 2), x)
    np.testing.assert_array_equal(_hw(y), [[4, 5], [6, 8]])
    # winning units: 4 at (1, 0), 5 at (1, 3), 6 at (2, 1), 8 at (3, 2); offsets a*2 + b
    _, res = pooling._max_pool_fwd(x, pooling._plan(pool_spec("max_pool", x, 2, None, "VALID")))
    np.testing.assert_array_equal(_hw(res.offsets), [[2, 3], [1, 2]])
    np.testing.assert_array_equal(
        _hw(vjp(delta)[0]),
        [[0, 0, 0, 0],
         [10, 0, 0, 20],
         [0, 30, 0, 0],
         [0, 0, 40, 0]],
    )


def test_avg_pool_spreads_a_quarter():
    x = _normal(3, (1, 4, 4, 1), jnp.float32)
    delta = _nhwc([[1, 2],
                   [3, 4]])
    y, vjp = jax.vjp(lambda x_: pooling.avg_pool(x_, 2), x)
    assert_close(_hw(y), _hw(x).reshape(2, 2, 2, 2).mean(axis=(1, 3)))
    np.testing.assert_allclose(
        _hw(vjp(delta)[0]),
        [[0.25, 0.25, 0.5, 0.5],
         [0.25, 0.25, 0.5, 0.5],
         [0.75, 0.75, 1.0, 1.0],
         [0.75, 0.75, 1.0, 1.0]],
    )


def test_avg_pool_overlapping_counts():
    """3x3 windows, stride 1, on 5x5: each unit gets (number of windows covering it) / 9."""
    x = _normal(4, (1, 5, 5, 1), jnp.float32)
    y, vjp = jax.vjp(lambda x_: pooling.avg_pool(x_, 3, stride=1), x)
    counts = np.array([[1, 2, 3, 2, 1],
                       [2, 4, 6, 4, 2],
                       [3, 6, 9, 6, 3],
                       [2, 4, 6, 4, 2],
                       [1, 2, 3, 2, 1]])
    np.testing.assert_allclose(_hw(vjp(jnp.ones_like(y))[0]), counts / 9, rtol=1e-6)


def test_avg_pool_count_exclude_pad_by_hand():
    """3x3 input, window 2, stride 1, padding 1: corner windows hold 1 real unit, edges 2."""
    x = jnp.ones((1, 3, 3, 1))
    incl = pooling.avg_pool(x, 2, stride=1, padding=1)
    excl = pooling.avg_pool(x, 2, stride=1, padding=1, count_include_pad=False)
    np.testing.assert_allclose(_hw(incl), [[0.25, 0.5, 0.5, 0.25],
                                           [0.5, 1, 1, 0.5],
                                           [0.5, 1, 1, 0.5],
                                           [0.25, 0.5, 0.5, 0.25]])
    np.testing.assert_allclose(_hw(excl), np.ones((4, 4)))
    _, vjp = jax.vjp(lambda x_: pooling.avg_pool(x_, 2, stride=1, padding=1,
                                                 count_include_pad=False), x)
    # the centre unit is in 4 windows of 4 real units; a corner in 1 of 1, 1 of 2 (x2), 1 of 4
    grad = _hw(vjp(jnp.ones((1, 4, 4, 1)))[0])
    np.testing.assert_allclose(grad[1, 1], 4 * 0.25)
    np.testing.assert_allclose(grad[0, 0], 1 + 0.5 + 0.5 + 0.25)


def test_l2_pool_by_hand_including_zero_window():
    x = _nhwc([[3, 0, 0, 0],
               [0, 4, 0, 0]])
    y, vjp = jax.vjp(lambda x_: pooling.l2_pool(x_, 2), x)
    np.testing.assert_allclose(_hw(y), [[5, 0]])
    grad = _hw(vjp(_nhwc([[10, 7]]))[0])
    assert np.all(np.isfinite(grad))
    # 10 * x / 5 in the first block; the all-zero block (y == 0) gets 0, not NaN
    np.testing.assert_allclose(grad, [[6, 0, 0, 0], [0, 8, 0, 0]], rtol=1e-6)
    y_ref, vjp_ref = jax.vjp(lambda x_: reference.l2_pool(x_, 2), x)
    assert_close(vjp(_nhwc([[10, 7]]))[0], vjp_ref(_nhwc([[10, 7]]))[0])

    def grad_of_grad(module, x_):  # second order stays finite at the zero window too
        inner = jax.grad(lambda z: jnp.sum(module.l2_pool(z, 2) ** 2 * _nhwc([[10, 7]])))
        return jax.grad(lambda z: jnp.sum(inner(z) * _nhwc([[1, 2, 3, 4], [5, 6, 7, 8]])))(x_)

    second = grad_of_grad(pooling, x)
    assert np.all(np.isfinite(second))
    assert_close(second, grad_of_grad(reference, x))


# ---------------------------------------------------------------------------- conventions
@pytest.fixture(params=["auto", "general", "by_dim"])
def pool_forward(request):
    """Traces these tiling max pools with each form: one reduction over all taps of the reshaped
    windows; the strided slices forced, one reduction per spatial dim, the deltas routed by a one-hot
    of the window's taps or (forced, as for large inputs) one spatial dim at a time."""
    with _lowering.force(pool=request.param):
        yield request.param


def test_tie_goes_to_first_unit_in_row_major_order(pool_forward):
    x = _nhwc([[1, 1, 2, 0],
               [1, 1, 0, 2],
               [0, 3, 3, 5],
               [3, 3, 5, 5]])
    delta = _nhwc([[1, 2], [3, 4]])
    _, vjp = jax.vjp(lambda x_: pooling.max_pool(x_, 2), x)
    grad = _hw(vjp(delta)[0])
    np.testing.assert_array_equal(
        grad,
        [[1, 0, 2, 0],
         [0, 0, 0, 0],
         [0, 3, 0, 4],
         [0, 0, 0, 0]],
    )
    # exactly one unit per window, and nothing lost: the routed gradient sums to the deltas
    blocks = grad.reshape(2, 2, 2, 2).transpose(0, 2, 1, 3).reshape(4, 4)
    np.testing.assert_array_equal((blocks != 0).sum(axis=1), 1)
    assert grad.sum() == float(jnp.sum(delta))
    _, vjp_ref = jax.vjp(lambda x_: reference.max_pool(x_, 2), x)
    np.testing.assert_array_equal(grad, _hw(vjp_ref(delta)[0]))


@pytest.mark.parametrize(
    "config",
    [((6, 6), 2, None, "VALID"), ((5, 6), 3, 1, "SAME"), ((5, 5), 2, 1, "FULL"),
     ((7, 5), 3, 2, ((1, 2), (0, 1)))],
    ids=str,
)
def test_ties_agree_with_reference(config):
    """Small-integer inputs: most windows hold ties."""
    hw, window, stride, padding = config
    x = jnp.asarray(np.random.default_rng(5).integers(0, 3, (2, *hw, 2)), jnp.float32)
    kw = _kw(window, stride, padding)
    g = _cotangent("max_pool", x, kw)
    y, dx = _custom("max_pool", x, g, kw)
    y_ref, dx_ref = _reference("max_pool", x, g, kw)
    np.testing.assert_array_equal(y, y_ref)
    assert_close(dx, dx_ref)
    if stride is None and padding == "VALID":
        assert_close(jnp.sum(dx), jnp.sum(g))


def test_nan_wins_and_propagates(pool_forward):
    x = _nhwc([[1, np.nan, 2, 0],
               [np.nan, 5, 1, 3]])
    y, vjp = jax.vjp(lambda x_: pooling.max_pool(x_, 2), x)
    y_ref = reference.max_pool(x, 2)
    assert np.isnan(_hw(y)[0, 0]) and _hw(y)[0, 1] == 3
    np.testing.assert_array_equal(np.isnan(_hw(y)), np.isnan(_hw(y_ref)))
    # the delta goes to the first NaN in row-major order. (The reference's autodiff,
    # select_and_scatter_add with `>=`, skips a NaN unless it is the window's last unit: it
    # would route this delta to the 5, so only the forward pass is compared with it.)
    np.testing.assert_array_equal(_hw(vjp(_nhwc([[7, 9]]))[0]), [[0, 7, 0, 0], [0, 0, 0, 9]])


def test_minus_inf_windows(pool_forward):
    inf = np.inf
    x = _nhwc([[-inf, -inf, -inf, 2],
               [-inf, -inf, 1, -inf]])
    delta = _nhwc([[7, 9]])
    y, vjp = jax.vjp(lambda x_: pooling.max_pool(x_, 2), x)
    grad = vjp(delta)[0]
    np.testing.assert_array_equal(_hw(y), [[-inf, 2]])
    np.testing.assert_array_equal(_hw(grad), [[7, 0, 0, 9], [0, 0, 0, 0]])
    y_ref, vjp_ref = jax.vjp(lambda x_: reference.max_pool(x_, 2), x)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(grad, vjp_ref(delta)[0])


def test_minus_inf_window_with_padding_routes_to_a_real_unit():
    """The -inf padding never wins: an all -inf window's delta goes to its first real unit
    (the reference's autodiff picks the padding there and drops the delta)."""
    x = jnp.full((1, 2, 2, 1), -jnp.inf)
    delta = _nhwc([[1, 2], [3, 4]])
    for blockwise, sliced in itertools.product((True, False), repeat=2):
        plan = pooling._Plan(pool_spec("max_pool", x, 2, None, 1), blockwise, sliced=sliced)
        y, vjp = jax.vjp(lambda x_, plan=plan: pooling._max_pool(x_, plan), x)
        np.testing.assert_array_equal(_hw(y), np.full((2, 2), -np.inf))
        np.testing.assert_array_equal(_hw(vjp(delta)[0]), [[1, 2], [3, 4]])


# ----------------------------------------------------------------------------- transforms
SMALL = ((2, 5, 6, 2), 3, 2, "SAME")


@pytest.mark.parametrize("variant", VARIANTS[:2] + VARIANTS[3:], ids=["max", "avg", "l2"])
def test_jit_equals_eager(variant):
    name, extra = variant
    shape, window, stride, padding = SMALL
    x = _normal(6, shape, jnp.float32)
    kw = _kw(window, stride, padding, extra)
    g = _cotangent(name, x, kw)
    y, vjp = jax.vjp(lambda x_: _apply(pooling, name, x_, kw), x)
    assert_close(_custom(name, x, g, kw), (y, vjp(g)[0]))


@pytest.mark.parametrize("name", NAMES)
def test_vmap_per_example_gradients(name):
    shape, window, stride, padding = SMALL
    x = _normal(7, shape, jnp.float32)
    kw = _kw(window, stride, padding)
    c = _cotangent(name, x, kw)

    def loss(x1, c1):  # one example
        return jnp.sum(_apply(pooling, name, x1[None], kw) * c1[None])

    per_example = jax.jit(jax.vmap(jax.grad(loss)))(x, c)
    one = jax.jit(jax.grad(loss))
    looped = jnp.stack([one(x[i], c[i]) for i in range(x.shape[0])])
    assert_close(per_example, looped)
    _, dx_ref = _reference(name, x, c, kw)
    assert_close(per_example, dx_ref)


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint(name):
    shape, window, stride, padding = SMALL
    x = _normal(8, shape, jnp.float32)
    kw = _kw(window, stride, padding)
    c = _cotangent(name, x, kw)

    def loss(x_):
        return jnp.sum(_apply(pooling, name, x_, kw) * c)

    _, dx_ref = _reference(name, x, c, kw)
    assert_close(jax.jit(jax.grad(jax.checkpoint(loss)))(x), dx_ref)


@pytest.mark.parametrize("name", NAMES)
def test_second_order_matches_reference(name, dtype):
    shape, window, stride, padding = SMALL
    x = _normal(9, shape, dtype)
    kw = _kw(window, stride, padding)
    c = _cotangent(name, x, kw, seed=10)
    d = _normal(11, shape, dtype)

    def grad_of_grad(module, x_):
        def inner(z):
            return jnp.sum(_apply(module, name, z, kw) ** 2 * c)

        return jax.grad(lambda z: jnp.sum(jax.grad(inner)(z) * d))(x_)

    def vjp_of_vjp(module, x_):  # second order with respect to the cotangent
        _, vjp = jax.vjp(lambda z: _apply(module, name, z, kw), x_)
        _, vjp2 = jax.vjp(lambda g: vjp(g)[0], c)
        return vjp2(d)[0]

    for second in (grad_of_grad, vjp_of_vjp):
        got = jax.jit(partial(second, pooling))(x)
        expected = second(reference, x)
        assert_close(got, expected)
        assert_dtype(got, dtype)


# ----------------------------------------------------------------------- residuals, dtypes
def test_winner_offsets_are_small_integers():
    x = _normal(12, (2, 6, 6, 3), jnp.float32)
    spec = pool_spec("max_pool", x, 2, None, "VALID")
    y, res = pooling._max_pool_fwd(x, pooling._plan(spec))
    assert res._fields == ("offsets", "along") and res.along == ()
    assert res.offsets.dtype == jnp.int8
    assert res.offsets.shape == y.shape == (2, 3, 3, 3)  # one index per output, not a copy of x
    assert int(res.offsets.min()) >= 0 and int(res.offsets.max()) < 4
    # overlapping windows of a large input (or forced): also each row's winning column per window
    # column, for the backward one dim at a time
    overlapping = pool_spec("max_pool", x, 3, 2, 1)
    assert pooling._max_pool_fwd(x, pooling._plan(overlapping))[1].along == ()  # small
    with _lowering.force(pool="by_dim"):
        y, res = pooling._max_pool_fwd(x, pooling._plan(overlapping))
    assert res.offsets.shape == y.shape == (2, 3, 3, 3) and int(res.offsets.max()) < 9
    (columns,) = res.along
    assert columns.dtype == jnp.int8 and columns.shape == (2, 6, 3, 3) and int(columns.max()) < 3
    large = jax.ShapeDtypeStruct((1, 64, 64, pooling._ROUTE_BY_DIM // 64 // 64), jnp.float32)
    plan = pooling._plan(pool_spec("max_pool", jnp.zeros(large.shape), 3, 2, 1))
    assert len(jax.eval_shape(lambda x: pooling._max_pool_fwd(x, plan), large)[1].along) == 1
    x_big = _normal(13, (1, 12, 11, 1), jnp.float32)  # 132 taps do not fit in int8
    big = pool_spec("max_pool", x_big, (12, 11), None, "VALID")
    _, res_big = pooling._max_pool_fwd(x_big, pooling._plan(big))
    assert res_big.offsets.dtype == jnp.int32
    assert int(res_big.offsets[0, 0, 0, 0]) == int(jnp.argmax(x_big[0, :, :, 0]))


@pytest.mark.parametrize("low", [jnp.bfloat16, jnp.float16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_low_precision_keeps_dtype(variant, low):
    name, extra = variant
    x32 = _normal(14, (2, 5, 6, 2), jnp.float32)
    kw = _kw(3, 2, "SAME", extra)
    x = x32.astype(low)
    g = _cotangent(name, x, kw)
    y, dx = _custom(name, x, g, kw)
    assert_dtype((y, dx), low)
    y_ref, dx_ref = _reference(name, x.astype(jnp.float32), g.astype(jnp.float32), kw)
    assert_close(y, y_ref, dtype=low)
    assert_close(dx, dx_ref, dtype=low)


@pytest.mark.parametrize("module", [pooling, reference], ids=["custom", "reference"])
def test_float16_sums_that_leave_float16_but_whose_results_fit(module):
    """Worked by hand: a global average pool of 256 x 256 halves is 0.5 and sends 1/65536 to each
    unit (the divisor 65536 was float16's inf: 0 and a zero gradient); 81 units of 1000 average
    1000 (their float16 sum was inf, on the path for windows of more than 64 taps); the l2 norm of
    four 200s is 400 (200**2 * 4 overflowed)."""
    x = jnp.full((1, 256, 256, 1), 0.5, jnp.float16)
    y, pull = jax.vjp(lambda a: module.avg_pool(a, 256), x)
    dx = pull(jnp.ones_like(y))[0]
    assert y.dtype == dx.dtype == jnp.float16
    np.testing.assert_array_equal(np.asarray(y, np.float64).ravel(), [0.5])
    np.testing.assert_array_equal(np.unique(np.asarray(dx, np.float64)), [2.0**-16])
    np.testing.assert_array_equal(module.avg_pool(jnp.full((1, 9, 9, 1), 1000.0, jnp.float16), 9), 1000.0)
    np.testing.assert_array_equal(module.avg_pool(jnp.full((1, 8, 8, 1), 1100.0, jnp.float16), 8), 1100.0)
    np.testing.assert_array_equal(module.l2_pool(jnp.full((1, 2, 2, 1), 200.0, jnp.float16), 2), 400.0)
    np.testing.assert_array_equal(module.l2_pool(jnp.full((1, 9, 9, 1), 100.0, jnp.float16), 9), 900.0)


@pytest.mark.parametrize("module", [pooling, reference], ids=["custom", "reference"])
def test_max_of_plus_and_minus_zero_is_plus_zero(module):
    """By hand: max(+0, -0) = max(-0, +0) = +0 (the rules gave -0 where the second tap was -0), the
    delta routed to the first tap of the tie."""
    x = jnp.asarray([0.0, -0.0, -0.0, 0.0]).reshape(1, 4, 1)
    # stride 2: windows [+0, -0], [-0, +0]; stride 1: [+0, -0], [-0, -0] (whose max is -0), [-0, +0]
    for stride, signs, routed in ((2, [False, False], [1.0, 0.0, 2.0, 0.0]),
                                  (1, [False, True, False], [1.0, 2.0, 3.0, 0.0])):
        y, pull = jax.vjp(lambda a, s=stride: module.max_pool(a, 2, stride=s), x)
        np.testing.assert_array_equal(np.asarray(y).ravel(), 0.0)
        np.testing.assert_array_equal(np.signbit(np.asarray(y)).ravel(), signs)
        delta = jnp.arange(1.0, y.shape[1] + 1).reshape(y.shape)
        np.testing.assert_array_equal(np.asarray(pull(delta)[0]).ravel(), routed)


@pytest.mark.parametrize("module", [pooling, reference], ids=["custom", "reference"])
def test_max_pool_refuses_float8_types_without_infinity(module):
    """-inf is NaN in float8_e4m3fn: every window's max was NaN. float4_e2m1fn, whose -inf saturates
    to its lowest value, still works."""
    x = jnp.asarray([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1)
    with pytest.raises(TypeError, match=r"`max_pool`: `x` has dtype float8_e4m3fn, in which -inf .* is NaN"):
        module.max_pool(x.astype(jnp.float8_e4m3fn), 2)
    np.testing.assert_array_equal(module.max_pool(x.astype(jnp.float4_e2m1fn), 2).astype(jnp.float32).ravel(),
                                  [2.0, 4.0])


# -------------------------------------------------------------------------------- API, errors
def test_public_api_matches_reference():
    assert pooling.__all__ == list(NAMES)
    for name in NAMES:
        ours = inspect.signature(getattr(pooling, name)).parameters
        theirs = inspect.signature(getattr(reference, name)).parameters
        assert [(p.name, p.kind, p.default) for p in ours.values()] == [
            (p.name, p.kind, p.default) for p in theirs.values()
        ]


X = np.zeros((1, 4, 4, 1), np.float32)
BAD = [
    ("max_pool", np.zeros((1, 4, 4, 1), np.int32), 2, {}, TypeError,
     r"`max_pool`: `x` must be a floating-point array"),
    ("avg_pool", np.zeros((1, 4, 4, 1), bool), 2, {}, TypeError,
     r"`avg_pool`: `x` must be a floating-point array"),
    ("l2_pool", np.zeros((4, 1), np.float32), 2, {}, ValueError,
     r"`l2_pool`: `x` must have 1, 2 or 3 spatial dims"),
    ("max_pool", np.zeros((1, 2, 2, 2, 2, 1), np.float32), 2, {}, ValueError,
     r"`max_pool`: `x` must have 1, 2 or 3 spatial dims"),
    ("max_pool", X, 0, {}, ValueError, r"`max_pool`: `window` must be >= 1"),
    ("avg_pool", X, (2, -1), {}, ValueError, r"`avg_pool`: `window` must be >= 1"),
    ("l2_pool", X, 2.0, {}, TypeError, r"`l2_pool`: `window` must be an int or 2 ints"),
    ("max_pool", X, 2, {"stride": 0}, ValueError, r"`max_pool`: `stride` must be >= 1"),
    ("avg_pool", X, 5, {}, ValueError,
     r"`avg_pool`: window extent 5 along H is larger than the padded input"),
    ("l2_pool", X, 2, {"padding": "same-ish"}, ValueError, r"`l2_pool`: `padding` must be"),
    ("max_pool", X, 2, {"padding": (1, 2, 3)}, ValueError, r"`max_pool`: `padding` must be"),
    ("avg_pool", X, 2, {"padding": ((1,), (1, 1))}, ValueError, r"`avg_pool`: `padding` must be"),
    ("l2_pool", X, 2, {"padding": 1.5}, TypeError, r"`l2_pool`: `padding` must be"),
    ("max_pool", X, 2, {"padding": -1}, ValueError,
     r"`max_pool`: `padding` amounts must be >= 0"),
    ("avg_pool", X, 2, {"padding": 2}, ValueError,
     r"`avg_pool`: `padding` \(2, 2\) along H must be smaller than the window"),
    ("max_pool", X, 3, {"padding": ((0, 0), (0, 3))}, ValueError,
     r"`max_pool`: `padding` \(0, 3\) along W must be smaller than the window"),
    ("avg_pool", X, 2, {"count_include_pad": 1}, TypeError,
     r"`avg_pool`: `count_include_pad` must be a bool"),
    ("avg_pool", X, 2, {"count_include_pad": "yes"}, TypeError,
     r"`avg_pool`: `count_include_pad` must be a bool"),
]


@pytest.mark.parametrize("module", [pooling, reference], ids=["pooling", "reference"])
@pytest.mark.parametrize("name, x, window, kwargs, exc, match", BAD,
                         ids=[f"{b[0]}-{b[-1][:40]}" for b in BAD])
def test_bad_input(module, name, x, window, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        getattr(module, name)(x, window, **kwargs)
