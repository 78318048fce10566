"""jaxcnn._lowering: every lowering of conv2d's formulas, forced, against the XLA-convolution lowering
and the autodiff reference; pooling's two paths forced through the public functions.

The lowerings are chosen at trace time with the private switch ``jaxcnn._lowering.force``: "xla"
(Eq 7, 14, 22 as XLA convolutions), "taps" and "patches" (the sums of Eq 7, 13, 20 as matmuls:
per tap, and im2col / col2im), the last two also with ``chunk_bytes=1`` so that batches run
through the chunked ``lax.scan``; "auto" is the per-platform choice. No timings here
(experiments/benchmark.py measures them).
"""

from __future__ import annotations

import functools
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import _choice, _eq22, _fold, _lowering, _windows, pooling, reference
from jaxcnn import convolution as conv
from jaxcnn._specs import conv_spec, pool_spec
from tests.tolerances import assert_close, assert_dtype, normal

# (name, force(...) keyword arguments): every path of conv2d's three formulas.
LOWERINGS = [
    ("xla", {"name": "xla"}),
    ("taps", {"name": "taps"}),
    ("patches", {"name": "patches"}),
    ("patches-chunked", {"name": "patches", "chunk_bytes": 1, "rows": False}),
    ("auto", {"name": "auto"}),
    ("taps-chunked", {"name": "taps", "chunk_bytes": 1, "rows": False}),  # the same scans as patches-chunked
    ("patches-rows", {"name": "patches", "chunk_bytes": 1}),  # a scan over blocks of output rows
    ("phases", {"name": "phases"}),
]
GRID_LOWERINGS = LOWERINGS[:4]  # "auto" and the chunked taps: test_public_grads_every_lowering

# (id, x shape NHWC, w shape HWIO, bias None/"tied"/"untied", options): stride 1-3 and pairs,
# dilation 1-2 and pairs, groups 1/2/3, every padding form, flip, pad_value 0/-1, channels 1-6,
# batches of 4 and 6 (four and six scan steps with a one-byte budget).
GRID = [
    ("valid-c1", (4, 6, 6, 1), (3, 3, 1, 2), None, {}),
    ("s1x3-g3-same-untied", (6, 8, 7, 6), (3, 3, 2, 6), "untied",
     {"stride": (1, 3), "groups": 3, "padding": "SAME"}),
    ("d2-g2-full-flip-tied", (4, 9, 8, 4), (5, 3, 2, 6), "tied",
     {"dilation": 2, "groups": 2, "padding": "FULL", "flip": True}),
    ("s3-k4-pad1-minus1-untied", (4, 6, 7, 2), (4, 4, 2, 5), "untied",
     {"stride": 3, "padding": 1, "pad_value": -1.0}),
    ("s2-k1x1-pair-minus1", (4, 5, 6, 3), (1, 1, 3, 2), "tied",
     {"stride": 2, "padding": (2, 1), "pad_value": -1.0}),
    ("s2-k3x2-tied", (4, 7, 6, 4), (3, 2, 4, 3), "tied", {"stride": 2}),
    ("explicit-odd-s2x1-d1x2-g2-flip-minus1", (6, 7, 5, 2), (3, 4, 1, 4), None,
     {"stride": (2, 1), "dilation": (1, 2), "groups": 2, "flip": True,
      "padding": ((0, 3), (2, 1)), "pad_value": -1.0}),
    ("same-odd-s3-d2x1-flip-untied", (4, 5, 5, 1), (2, 3, 1, 2), "untied",
     {"stride": 3, "padding": "SAME", "dilation": (2, 1), "flip": True}),
    ("lecun-h1-s2-pad2-minus1", (4, 16, 16, 1), (5, 5, 1, 3), "untied",
     {"stride": 2, "padding": 2, "pad_value": -1.0}),
    ("stride-gaps-s3-k2", (4, 8, 8, 2), (2, 2, 2, 2), None, {"stride": 3}),  # unreached rows
    # over 16 channels: the CPU's "xla" computes an extra output row, cropped (`_choice.widen`)
    ("c20-d24-s1x2-same-tied", (2, 6, 7, 20), (3, 3, 20, 24), "tied", {"stride": (1, 2), "padding": "SAME"}),
    # a strided input gradient with 256 deltas' channels over few positions: the CPU's "auto" is "taps"
    ("c16-d256-s2-pad1", (2, 6, 5, 16), (3, 3, 16, 256), None, {"stride": 2, "padding": 1}),
]
GRID_IDS = [g[0] for g in GRID]
CASES = {g[0]: g for g in GRID}
GRAD_OPTIONS = ("stride", "padding", "dilation", "groups", "flip")

# The grids compile many small programs: LLVM's optimisation level 0 halves the compile time
# (the HLO, where the lowerings differ, is the same; only the machine code is less optimised).
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def make_args(case, dtype, seed=0):
    _, x_shape, w_shape, bias, options = case
    x, w = normal(seed, x_shape, dtype), normal(seed + 1, w_shape, dtype)
    y_shape = jax.eval_shape(functools.partial(reference.conv2d, **options), x, w).shape
    b = None
    if bias is not None:
        b = normal(seed + 2, y_shape[3:] if bias == "tied" else y_shape[1:], dtype)
    return x, w, b, options, normal(seed + 3, y_shape, dtype)


def conv_vjp(f, x, w, b, ct, options):
    """Output and the VJP of a random cotangent (never a plain sum) for x, w and b."""
    args = (x, w) if b is None else (x, w, b)
    y, pull = jax.vjp(lambda *a: f.conv2d(*a, **options), *args)
    return y, pull(ct)


def public_grads(f, x, w, ct, options):
    """The two public gradient functions (what the VJP is made of)."""
    g_opts = {k: v for k, v in options.items() if k in GRAD_OPTIONS}
    return (f.conv2d_input_grad(ct, w, x.shape, **g_opts),
            f.conv2d_weight_grad(x, ct, w.shape, **options))


@pytest.mark.parametrize("case", GRID, ids=GRID_IDS)
def test_every_lowering_matches_xla_and_reference(case, dtype):
    x, w, b, options, ct = make_args(case, dtype)

    @jit
    def run(x, w, b, ct):
        out = {}
        for name, kw in GRID_LOWERINGS:
            with _lowering.force(**kw):
                out[name] = conv_vjp(conv, x, w, b, ct, options)
        return out, conv_vjp(reference, x, w, b, ct, options)

    out, ref = run(x, w, b, ct)
    for name, _ in GRID_LOWERINGS:
        assert_close(out[name], out["xla"])
        assert_close(out[name], ref)
        assert_dtype(out[name], dtype)


PUBLIC_CASES = ("s1x3-g3-same-untied", "explicit-odd-s2x1-d1x2-g2-flip-minus1")


@pytest.mark.parametrize("case", [CASES[k] for k in PUBLIC_CASES], ids=PUBLIC_CASES)
def test_public_grads_every_lowering(case, dtype):
    """conv2d_input_grad / conv2d_weight_grad under each forced lowering equal the reference's
    (and the VJPs of "auto" and the chunked taps, which the grid leaves out)."""
    x, w, _, options, ct = make_args(case, dtype, seed=3)

    @jit
    def run(x, w, ct):
        out = {}
        for name, kw in LOWERINGS[1:]:
            with _lowering.force(**kw):
                out[name] = conv_vjp(conv, x, w, None, ct, options), public_grads(conv, x, w, ct, options)
        return out, (conv_vjp(reference, x, w, None, ct, options),
                     public_grads(reference, x, w, ct, options))

    out, ref = run(x, w, ct)
    for grads in out.values():
        assert_close(grads, ref)
        assert_dtype(grads, dtype)


@pytest.mark.parametrize("name", ["taps", "patches", "patches-chunked", "patches-rows", "phases"])
def test_second_order_every_lowering(name, x64):
    """grad of a function of the VJP (w.r.t. x, w, b and the cotangent): the backward rules are
    differentiable code on every path."""
    kw = dict(LOWERINGS)[name]
    x, w, b, options, ct = make_args(CASES["s3-k4-pad1-minus1-untied"], jnp.float64, seed=5)
    u = (normal(9, x.shape, jnp.float64), normal(10, w.shape, jnp.float64),
         normal(11, b.shape, jnp.float64))

    def second(f):
        def inner(x, w, b, ct):
            grads = jax.vjp(functools.partial(f, **options), x, w, b)[1](ct)
            return sum(jnp.vdot(g, v) for g, v in zip(grads, u, strict=True))

        return jax.grad(inner, argnums=(0, 1, 2, 3))(x, w, b, ct)

    with _lowering.force(**kw):
        custom = jit(lambda: second(conv.conv2d))()
    assert_close(custom, second(reference.conv2d))


@pytest.mark.parametrize("name", ["taps", "patches"])
def test_vmap_per_example_every_lowering(name):
    x, w, b, options, ct = make_args(CASES["lecun-h1-s2-pad2-minus1"], jnp.float32, seed=7)

    def per_example(f):
        def loss(params, x_n, ct_n):
            return jnp.vdot(f(x_n[None], *params, **options)[0], ct_n)
        return jax.vmap(jax.grad(loss, argnums=(0, 1)), in_axes=(None, 0, 0))

    with _lowering.force(name):
        grads = jit(per_example(conv.conv2d))((w, b), x, ct)
    assert_close(grads, per_example(reference.conv2d)((w, b), x, ct))


@pytest.mark.parametrize("rows", [False, True], ids=["batch-chunks", "row-blocks"])
def test_vmap_over_chunked_batches(rows):
    """vmap over groups of 4 examples, each group's conv running through the chunked scans: batch
    chunks (`rows=False`), or the row blocks a one-byte budget takes by default."""
    x, w, b, options, ct = make_args(CASES["s3-k4-pad1-minus1-untied"], jnp.float32, seed=8)
    xs, cts = jnp.stack([x, -2 * x]), jnp.stack([ct, ct[::-1]])

    def grads(f):
        def loss(w, b, x, ct):
            return jnp.vdot(f(x, w, b, **options), ct)
        return jax.vmap(jax.grad(loss, argnums=(0, 1, 2)), in_axes=(None, None, 0, 0))

    with _lowering.force("patches", chunk_bytes=1, rows=rows):
        custom = jit(grads(conv.conv2d))(w, b, xs, cts)
    assert_close(custom, grads(reference.conv2d)(w, b, xs, cts))


@pytest.mark.parametrize("low", [jnp.bfloat16, jnp.float16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("name", ["taps", "patches-chunked", "patches-rows", "phases"])
def test_low_precision_every_lowering(low, name):
    """16-bit inputs keep their dtype on every path (products accumulated in float32)."""
    x, w, b, options, ct = make_args(CASES["s3-k4-pad1-minus1-untied"], low)
    def run(x, w, b, ct):
        return conv_vjp(conv, x, w, b, ct, options), public_grads(conv, x, w, ct, options)

    with _lowering.force(**dict(LOWERINGS)[name]):
        out = jit(run)(x, w, b, ct)
    assert_dtype(out, low)
    up = lambda t: jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), t)  # noqa: E731
    x32, w32, b32, ct32 = up((x, w, b, ct))
    expected = (conv_vjp(reference, x32, w32, b32, ct32, options),
                public_grads(reference, x32, w32, ct32, options))
    assert_close(out, expected, dtype=low)


def test_forced_lowering_is_traced_into_the_backward():
    """A VJP taken under force("taps") and pulled back outside it still runs the taps: the
    lowering is static configuration, not a global read when the backward is traced."""
    x, w, _, options, ct = make_args(CASES["s2-k3x2-tied"], jnp.float32)
    with _lowering.force("taps"):
        _, pull = jax.vjp(functools.partial(conv.conv2d, **options), x, w)
    assert "conv_general_dilated" not in str(jax.make_jaxpr(pull)(ct))
    with _lowering.force("xla"):
        _, pull = jax.vjp(functools.partial(conv.conv2d, **options), x, w)
    assert "conv_general_dilated" in str(jax.make_jaxpr(pull)(ct))


def test_auto_on_cpu_uses_the_matmul_forms_and_elsewhere_xla():
    """The C1 forward of LeNet-5 is lowered per platform: the taps' dots for CPU, an XLA
    convolution for the other platforms (lax.platform_dependent keeps both in the jaxpr)."""
    x, w = jnp.zeros((128, 8, 8, 1)), jnp.zeros((5, 5, 1, 6))
    jaxpr = str(jax.make_jaxpr(functools.partial(conv.conv2d, padding=2))(x, w))
    assert "platform_index" in jaxpr and "conv_general_dilated" in jaxpr and "dot_general" in jaxpr
    hlo = jax.jit(functools.partial(conv.conv2d, padding=2)).lower(x, w).compile().as_text()
    assert "convolution(" not in hlo  # lowered for CPU: the taps only (no convolution op)


@pytest.mark.parametrize(
    ("formula", "n", "c", "d", "groups", "expected"),
    [
        ("forward", 128, 1, 6, 1, "taps"),  # LeNet C1
        ("forward", 1, 1, 12, 1, "patches"),  # LeCun H1, one example
        ("forward", 128, 6, 16, 1, "xla"),  # LeNet C3
        ("forward", 1, 12, 12, 1, "xla"),  # LeCun H2, one example
        ("forward", 128, 64, 64, 1, "xla"),  # 2-D, XLA's own convolution (`_choice.widen`)
        ("input", 128, 6, 16, 1, "patches"),
        ("input", 128, 64, 64, 1, "xla"),  # 19 MiB col2im buffer (measured: xla 3.7 ms, patches 6.6)
        ("input", 8, 64, 64, 1, "patches"),  # 1.2 MiB
        ("input", 128, 64, 64, 2, "xla"),  # grouped: XLA's (measured faster than batched taps)
        ("weight", 128, 1, 6, 1, "patches"),
        ("weight", 128, 64, 64, 1, "patches"),
        ("forward", 128, 64, 64, 64, "taps"),  # depthwise: broadcast products
        ("input", 128, 64, 64, 64, "phases"),
        ("weight", 128, 64, 64, 64, "taps"),
        ("weight", 128, 64, 64, 8, "patches"),
    ],
)
def test_cpu_choice(formula, n, c, d, groups, expected):
    spec = conv_spec("conv2d", jnp.zeros((n, 8, 8, c)), jnp.zeros((3, 3, c // groups, d)), None,
                     stride=1, padding="SAME", dilation=1, groups=groups, flip=False, pad_value=0.0)
    assert _choice.choose(formula, spec, n, c, d) == expected


def test_force_validates_and_restores():
    with pytest.raises(ValueError, match="`force`: `name` must be one of"):
        with _lowering.force("im2col"):
            pass
    with pytest.raises(ValueError, match="`pool` must be one of"):
        with _lowering.force(pool="blockwise"):
            pass
    with pytest.raises(ValueError, match="`chunk_bytes` must be a positive int"):
        with _lowering.force("patches", chunk_bytes=0):
            pass
    with pytest.raises(RuntimeError):
        with _lowering.force("taps", pool="general"):
            raise RuntimeError
    assert _lowering.requested() == _lowering.Plan()


# ------------------------------------------------------------------------------------ pooling
POOLS = [
    ("max_pool", {}),
    ("avg_pool", {"count_include_pad": False}),
    ("l2_pool", {}),
]
POOL_CONFIGS = [  # stride == window: the reshape path unless forced to the general one
    ((6, 6), 2, "VALID"),
    ((7, 5), 3, 1),
    ((6, 5), (2, 3), "SAME"),
]


@pytest.mark.parametrize("hw, window, padding", POOL_CONFIGS, ids=str)
def test_pool_paths_forced_through_the_public_functions(hw, window, padding, dtype):
    x = normal(0, (2, *hw, 3), dtype)

    def vjps(module, x):
        out = {}
        for name, extra in POOLS:
            f = functools.partial(getattr(module, name), window=window, padding=padding, **extra)
            y, pull = jax.vjp(f, x)
            out[name] = y, pull(normal(1, y.shape, dtype))[0]
        return out

    @jit
    def run(x):
        blockwise = vjps(pooling, x)
        with _lowering.force(pool="general"):
            general = vjps(pooling, x)
        with _lowering.force(pool="sliced"):  # these windows' "auto" already: the same program
            sliced = vjps(pooling, x)
        with _lowering.force(pool="stacked"):
            stacked = vjps(pooling, x)
        with _lowering.force(pool="by_dim"):
            by_dim = vjps(pooling, x)
        return blockwise, general, sliced, stacked, by_dim

    blockwise, general, sliced, stacked, by_dim = run(x)
    expected = vjps(reference, x)
    for forced in (blockwise, general, sliced, stacked, by_dim):
        assert_close(forced, expected)
    chex.assert_trees_all_equal(sliced["max_pool"], blockwise["max_pool"])  # the same units win
    chex.assert_trees_all_equal(by_dim["max_pool"], blockwise["max_pool"])
    assert_dtype((blockwise, general, sliced, by_dim), dtype)
    spec = pool_spec("max_pool", x, window, None, padding)
    assert pooling._plan(spec).tiled and not pooling._plan(spec).sliced
    with _lowering.force(pool="general"):
        assert not pooling._plan(spec).tiled
    with _lowering.force(pool="sliced"):
        assert pooling._plan(spec).tiled and pooling._plan(spec, summed=True).sliced
        assert not pooling._plan(spec).sliced  # a max pool has no sliced forward pass


@pytest.mark.parametrize("nd, window, stride, sliced", [
    (2, 3, 2, True),  # up to 64 taps: the sum of the tap slices
    (2, 8, 8, True),
    (1, 3, 2, True),
    (3, 4, 2, True),
    (2, 9, None, False),  # 81 taps: the stacked taps' reduction
    (3, 5, 2, False),  # 125 taps
])
def test_pool_forward_sliced_by_the_measured_rule(nd, window, stride, sliced):
    x = jnp.zeros((1, *(9,) * nd, 4))
    spec = pool_spec("avg_pool", x, window, stride, "VALID")
    assert pooling._plan(spec, summed=True).sliced is sliced
    assert not pooling._plan(spec).sliced  # a max pool's forward pass is never sliced
    with _lowering.force(pool="stacked"):
        assert not pooling._plan(spec, summed=True).sliced
    with _lowering.force(pool="sliced"):
        assert pooling._plan(spec, summed=True).sliced
        assert not pooling._plan(spec).sliced


def test_chunk_sizes():
    assert _lowering.chunk(128, 1000, 1 << 20) == 128  # small: one piece
    assert _lowering.chunk(128, 80_000, 1 << 20) == 8  # 13 fit, 8 divides 128
    assert _lowering.chunk(128, 500_000, 1 << 20) == 2  # two fit
    assert _lowering.chunk(128, 800_000, 1 << 20) == 1  # one fits
    assert _lowering.chunk(128, 3 << 20, 1 << 20) == 1  # over the budget alone: one at a time
    assert _lowering.chunk(7, 300_000, 1 << 20) == 1  # a prime batch: one at a time
    assert np.all([128 % _lowering.chunk(128, p, 1 << 20) == 0 for p in (1, 10**4, 10**5, 10**6)])


@pytest.mark.parametrize("case", [CASES[k] for k in PUBLIC_CASES], ids=PUBLIC_CASES)
def test_chunks_of_two_examples(case, dtype):
    """A budget of two examples' patches: scan steps of two examples (the forced one-byte budget of
    the grids runs one example per step), for the VJP and the public grads."""
    x, w, _, options, ct = make_args(case, dtype, seed=4)
    full = {"stride": 1, "padding": "VALID", "dilation": 1, "groups": 1, "flip": False, "pad_value": 0.0}
    spec = conv_spec("conv2d", x, w, None, **{**full, **options})
    per_example = _lowering.patch_bytes(spec, x.shape[-1], dtype)
    assert _lowering.chunk(x.shape[0], per_example, 2 * per_example) == 2 < x.shape[0]
    with _lowering.force("patches", chunk_bytes=2 * per_example, rows=False):
        custom = jit(lambda x, w, ct: (conv_vjp(conv, x, w, None, ct, options),
                                       public_grads(conv, x, w, ct, options)))(x, w, ct)
    expected = conv_vjp(reference, x, w, None, ct, options), public_grads(reference, x, w, ct, options)
    assert_close(custom, expected)
    assert_dtype(custom, dtype)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "steps"),
    [
        ((4, 9, 9, 1), (5, 5, 1, 3), 2),  # 25 taps, one input channel: two steps of two examples
        ((3, 9, 9, 2), (4, 4, 2, 3), 3),  # 16 taps, two channels, a prime batch: one example a step
        ((4, 9, 9, 1), (3, 3, 1, 3), 0),  # 9 taps: the broadcast products stay fused, no scan
        ((1, 9, 9, 1), (5, 5, 1, 3), 0),  # one example: nothing to split
        ((4, 9, 9, 3), (5, 5, 3, 3), 0),  # three channels: per-tap matmuls, no scan
    ],
)
def test_broadcast_taps_of_a_batch_in_one_piece_go_through_a_scan(x_shape, w_shape, steps, dtype):
    """`_lowering._REUSED_TAPS`: the forward taps of a conv with one or two input channels and 16
    taps or more run through a scan of two steps or more even when the batch fits one piece, so that
    XLA writes them once rather than fusing them into every consumer; same values."""
    x, w = normal(20, x_shape, dtype), normal(21, w_shape, dtype)
    f = functools.partial(conv.conv2d, padding=1)
    with _lowering.force("taps"):
        jaxpr = jax.make_jaxpr(f)(x, w)
        y = jit(f)(x, w)
    lengths = re.findall(r"scan\[[^\]]*?length=(\d+)", str(jaxpr))
    assert lengths == ([str(steps)] if steps else []), lengths
    assert_close(y, reference.conv2d(x, w, padding=1))
    assert_dtype(y, dtype)


@pytest.mark.parametrize("kernel, expected", [((8, 8), "patches"), ((9, 8), "xla"), ((28, 28), "xla")])
def test_large_kernels_stay_on_xla(kernel, expected):
    """More than 64 taps: the unrolled per-tap/patches forms compile too slowly; XLA's conv is used."""
    spec = conv_spec("conv2d", jnp.zeros((1, 32, 32, 1)), jnp.zeros((*kernel, 1, 1)), None,
                     stride=1, padding="VALID", dilation=1, groups=1, flip=False, pad_value=0.0)
    assert _choice.choose("weight", spec, 1, 1, 1) == expected


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "options", "expected"),
    [
        ((8, 56, 56, 64), (3, 3, 64, 64), {"padding": 1}, ("xla", "xla", "patches")),  # 7 MiB patches each
        ((8, 14, 14, 256), (3, 3, 256, 256), {"padding": 1}, ("xla", "patches", "patches")),
        # strided 2-D forward passes: folded into 1-D convs over 17-64 input channels, else XLA's (widened
        # where one axis has stride 1)
        ((8, 56, 56, 64), (3, 3, 64, 128), {"padding": 1, "stride": 2}, ("fold", "xla", "patches")),
        ((8, 28, 28, 128), (3, 3, 128, 256), {"padding": 1, "stride": 2}, ("xla", "xla", "patches")),
        ((4, 224, 224, 3), (7, 7, 3, 64), {"padding": 3, "stride": 2}, ("xla", "patches", "patches")),
        ((8, 56, 56, 64), (3, 3, 64, 64), {"padding": 1, "stride": (2, 1)}, ("xla", "xla", "patches")),
        ((8, 14, 14, 256), (3, 3, 256, 512), {"padding": 1, "stride": 2}, ("xla", "taps", "patches")),
        ((8, 14, 14, 128), (3, 3, 128, 128), {"padding": 1, "stride": 2}, ("xla", "xla", "patches")),
        ((4, 8, 32, 32, 16), (3, 3, 3, 16, 32), {"padding": 1}, ("fold",) * 3),  # 3-D: 2-D convs
        ((4, 16, 32, 32, 16), (4, 4, 4, 16, 32), {"padding": 1, "stride": 2},
         ("fold", "subpixel", "fold")),  # the transposed 3-D conv's: Eq 22 over whole phases
        ((4, 16, 32, 32, 16), (2, 2, 2, 16, 32), {"stride": 2, "padding": 0}, ("fold",) * 3),  # k = s
        ((4, 16, 32, 32, 16), (3, 3, 3, 16, 32), {"padding": 1, "stride": 2}, ("fold",) * 3),  # k % s
        ((4, 32, 32, 16), (4, 4, 16, 32), {"padding": 1, "stride": 2}, ("xla", "xla", "patches")),  # 2-D
    ],
)
def test_cpu_choice_measured_shapes(x_shape, w_shape, options, expected):
    """The per-shape choices of the measured table in `_lowering` (issue 11's suite)."""
    x, w = jnp.zeros(x_shape), jnp.zeros(w_shape)
    spec = conv_spec("conv", x, w, None, stride=options.get("stride", 1), padding=options["padding"],
                     dilation=1, groups=1, flip=False, pad_value=0.0, nd=None)
    got = tuple(_choice.choose(f, spec, x_shape[0], x_shape[-1], w_shape[-1])
                for f in ("forward", "input", "weight"))
    assert got == expected


# ------------------------------------------------------- 1-3 spatial dims, groups, transposed
# Every path forced, in 1-D, 2-D and 3-D: the grouped matmul forms (batched over the groups, and the
# depthwise broadcast products), Eq 22 by phases (`_eq22.by_phases`: the "phases" lowering on
# CPU, and the XLA form of a strided Eq 22) and over the input's phases (`_eq22.by_subpixel`), for
# conv and conv_transpose.
ND_LOWERINGS = [
    ("xla", {"name": "xla"}),
    ("taps", {"name": "taps"}),
    ("patches", {"name": "patches"}),
    ("phases", {"name": "phases"}),
    ("phases-rows", {"name": "phases", "chunk_bytes": 1}),
    ("taps-rows", {"name": "taps", "chunk_bytes": 1}),
    ("patches-chunked", {"name": "patches", "chunk_bytes": 1, "rows": False}),
    ("fold", {"name": "fold"}),  # one dim fewer (in 1-D the patches' matmul), the rest "auto"
    ("fold-rows", {"name": "fold", "chunk_bytes": 1}),
    ("subpixel", {"name": "subpixel"}),  # Eq 22 over the input's phases (`_eq22.by_subpixel`)
]
# (id, transposed, x shape, w shape, options)
ND_GRID = [
    ("1d-s3-d2-pad", False, (4, 17, 3), (3, 3, 4), {"stride": 3, "dilation": 2, "padding": 2}),
    ("1d-depthwise-s2", False, (4, 12, 4), (3, 1, 4), {"stride": 2, "groups": 4, "padding": 1}),
    ("t1d-s4-out-pad", True, (4, 7, 2), (5, 3, 2), {"stride": 4, "padding": 1, "output_padding": 2}),
    ("2d-depthwise-mult2-s2", False, (4, 9, 8, 3), (3, 3, 1, 6), {"stride": 2, "groups": 3, "padding": 1}),
    ("2d-groups3-s2x1-d1x2", False, (6, 9, 8, 6), (3, 2, 2, 9),
     {"stride": (2, 1), "dilation": (1, 2), "groups": 3, "padding": "SAME"}),
    ("2d-groups2-c3-d1-flip", False, (4, 7, 7, 6), (2, 3, 3, 2), {"groups": 2, "flip": True, "padding": 1}),
    ("2d-s2-d2-gcd", False, (4, 11, 10, 2), (3, 3, 2, 3), {"stride": 2, "dilation": 2}),
    ("3d-s2-g2", False, (4, 6, 7, 5, 4), (3, 2, 3, 2, 4), {"stride": 2, "groups": 2, "padding": 1}),
    ("3d-depthwise", False, (2, 5, 6, 4, 3), (3, 3, 3, 1, 3), {"groups": 3, "padding": 1}),
    ("3d-s2x1x3-d2-flip-pad-1", False, (2, 9, 5, 7, 2), (3, 2, 2, 2, 3),
     {"stride": (2, 1, 3), "dilation": (2, 1, 1), "padding": ((2, 1), (0, 1), (1, 1)), "flip": True,
      "pad_value": -1.0}),
    ("t1d-s2-k4", True, (4, 9, 6), (4, 3, 6), {"stride": 2, "padding": 1}),
    ("t2d-s2-k4-g2", True, (4, 5, 6, 4), (4, 4, 3, 4), {"stride": 2, "padding": 1, "groups": 2}),
    ("t2d-s3-d2-outpad", True, (4, 4, 5, 3), (3, 2, 2, 3), {"stride": 3, "dilation": 2, "output_padding": 1}),
    ("t3d-s2-k4", True, (2, 3, 4, 3, 4), (4, 4, 4, 2, 4), {"stride": 2, "padding": 1}),
    ("t2d-depthwise-s2", True, (4, 5, 5, 4), (3, 3, 1, 4), {"stride": 2, "groups": 4, "padding": 1}),
]


@pytest.mark.parametrize("case", ND_GRID, ids=[c[0] for c in ND_GRID])
def test_nd_every_lowering_matches_xla_and_reference(case, dtype):
    _, transposed, x_shape, w_shape, options = case
    x, w = normal(0, x_shape, dtype), normal(1, w_shape, dtype)

    def vjp(module, x, w, ct=None):
        f = module.conv_transpose if transposed else module.conv
        y, pull = jax.vjp(lambda x, w: f(x, w, **options), x, w)
        return y, pull(normal(2, y.shape, dtype) if ct is None else ct)

    @jit
    def run(x, w):
        out = {}
        for name, kw in ND_LOWERINGS:
            with _lowering.force(**kw):
                out[name] = vjp(conv, x, w)
        return out, vjp(reference, x, w)

    out, ref = run(x, w)
    for name, _ in ND_LOWERINGS:
        assert_close(out[name], out["xla"])
        assert_close(out[name], ref)
        assert_dtype(out[name], dtype)


@pytest.mark.parametrize("stride, dilation, pads, groups", [
    (1, 1, (1, 1), 1), (2, 1, (0, 1), 2), (3, 2, (2, 0), 1), (2, 2, (1, 2), 3)])
def test_fold_pieces_are_transposes(stride, dilation, pads, groups, x64):
    """The "fold" lowering's machinery: `unfold_input` is the transpose of `fold_input` (zero
    padding: <fold(x), z> = <x, unfold(z)>), `unfold_kernel` inverts `fold_kernel`, and the folded
    2-D forward pass equals the 3-D one."""
    x = normal(0, (2, 7, 5, 4, 3 * groups), jnp.float64)
    w = normal(1, (3, 2, 2, 3, 2 * groups), jnp.float64)
    spec = conv_spec("conv", x, w, None, stride=(stride, 1, 1), padding=(pads, (1, 0), (0, 1)),
                     dilation=(dilation, 1, 1), groups=groups, flip=False, pad_value=0.0, nd=3)
    x3 = _fold.fold_input(x, spec)
    assert x3.shape == (2 * spec.out[0], 5, 4, 3 * 3 * groups)
    z = normal(2, x3.shape, jnp.float64)
    back = _fold.unfold_input(z, spec, 2)
    assert back.shape == x.shape
    np.testing.assert_allclose(jnp.vdot(x3, z), jnp.vdot(x, back), rtol=1e-12)
    np.testing.assert_array_equal(_fold.unfold_kernel(_fold.fold_kernel(w), spec), w)
    with _lowering.force("fold"):
        folded = conv.conv3d(x, w, stride=(stride, 1, 1), padding=(pads, (1, 0), (0, 1)),
                             dilation=(dilation, 1, 1), groups=groups)
    direct = reference.conv3d(x, w, stride=(stride, 1, 1), padding=(pads, (1, 0), (0, 1)),
                              dilation=(dilation, 1, 1), groups=groups)
    assert_close(folded, direct)


@pytest.mark.parametrize("stride, dilation, kernel", [(2, 1, 3), (3, 2, 4), (4, 2, 3), (2, 3, 5), (4, 1, 2)])
def test_phases_cover_every_tap_once(stride, dilation, kernel):
    """Eq 22 by phases: each kernel tap belongs to exactly one phase, and a phase without taps
    (possible when gcd(stride, dilation) > 1) is left out (its units get zeros)."""
    spec = conv_spec("conv", jnp.zeros((1, 20, 1)), jnp.zeros((kernel, 1, 1)), None, stride=stride, padding=1,
                     dilation=dilation, groups=1, flip=False, pad_value=0.0, nd=None)
    _, parts = _eq22.phases(spec)
    taps = sorted(t for p in parts for t in p.taps[0])
    assert taps == list(range(kernel))
    for p in parts:
        assert all((dilation * t - p.offset[0]) % stride == 0 for t in p.taps[0])


def test_subpixel_kernel_by_hand():
    """1-D, k = 4, s = 2: tap t = 2q + r is phase r of sub-kernel tap q, so W[q] = (w[2q], w[2q+1])
    per input channel; a dilation of 2 spreads the taps over 7 units, padded to 8 (two phases
    of 4: the odd phase only zeros)."""
    w = jnp.arange(1.0, 9.0).reshape(4, 2, 1)  # w[t, c]: 1 2 / 3 4 / 5 6 / 7 8
    spec = conv_spec("conv", jnp.zeros((1, 10, 2)), w, None, stride=2, padding=1, dilation=1, groups=1,
                     flip=False, pad_value=0.0, nd=None)
    sub = _eq22.subpixel(spec)
    assert (sub.kernel, sub.stride, sub.pads, sub.size, sub.out) == ((2,), (1,), ((0, 0),), (6,), (5,))
    # channels (r, c): W[0] = (w[0, :], w[1, :]) = 1 2 3 4, W[1] = (w[2, :], w[3, :]) = 5 6 7 8
    np.testing.assert_array_equal(_eq22.subpixel_kernel(w, spec)[..., 0], [[1, 2, 3, 4], [5, 6, 7, 8]])
    dilated = spec._replace(dilation=(2,), out=(2,))
    assert _eq22.subpixel(dilated).kernel == (4,)  # extent 7 -> 8 taps, 4 per phase
    np.testing.assert_array_equal(_eq22.subpixel_kernel(w, dilated)[..., 0],
                                  [[1, 2, 0, 0], [3, 4, 0, 0], [5, 6, 0, 0], [7, 8, 0, 0]])


@pytest.mark.parametrize(("x_shape", "w_shape", "options"), [
    ((2, 9, 7, 2), (4, 2, 2, 3), {"stride": 2, "padding": 1}),  # whole phases
    ((2, 11, 4), (4, 4, 3), {"stride": 3, "padding": ((2, 0),), "dilation": 2}),  # zero taps, units past
    ((2, 9, 7, 4), (4, 3, 2, 4), {"stride": (2, 1), "padding": 1, "groups": 2}),  # channels (G, *s, C/G)
    ((1, 6, 5, 4, 2), (4, 2, 3, 2, 2), {"stride": (2, 2, 3), "padding": 1}),
], ids=["2d-s2", "1d-s3-d2", "2d-g2", "3d"])
def test_by_subpixel_is_eq22(x_shape, w_shape, options, x64):
    """`by_subpixel` with the reference's Eq 22 of the stride-1 conv over the phases equals the
    reference's Eq 22 of the conv itself (each phase put back at its units, cropped to the input)."""
    x, w = normal(0, x_shape, jnp.float64), normal(1, w_shape, jnp.float64)
    spec = conv_spec("conv", x, w, None, stride=options["stride"], padding=options["padding"],
                     dilation=options.get("dilation", 1), groups=options.get("groups", 1), flip=False,
                     pad_value=0.0, nd=None)
    delta = normal(2, (x_shape[0], *spec.out, w_shape[-1]), jnp.float64)

    def eq22(delta, kernel, sub):  # the reference's dE/dx of the sub-spec's conv
        def f(x):
            return reference.conv(x, kernel, stride=sub.stride, padding=sub.pads, dilation=sub.dilation,
                                  groups=sub.groups)
        return jax.vjp(f, jnp.zeros((delta.shape[0], *sub.size, kernel.shape[-2] * sub.groups)))[1](delta)[0]

    expected = jax.vjp(lambda x: reference.conv(x, w, **options), x)[1](delta)[0]
    assert_close(_eq22.by_subpixel(delta, w, spec, eq22), expected)


@pytest.mark.parametrize(
    ("size", "extent", "stride", "pads", "channels", "expected"),
    [
        ((56, 56), (3, 3), (1, 1), ((1, 1), (1, 1)), (64, 64), (((1, 2), (1, 1)), (0, 56))),  # +1 row
        ((6, 7), (3, 3), (1, 2), ((0, 0), (0, 0)), (20, 24), (((0, 3), (0, 0)), (0, 4))),  # the stride-1 axis
        ((56, 56), (3, 3), (2, 2), ((1, 1), (1, 1)), (64, 64), (((1, 1), (1, 1)), None)),  # strided: kept
        ((56, 56), (3, 3), (1, 1), ((1, 1), (1, 1)), (16, 16), (((1, 1), (1, 1)), None)),  # few channels
        ((56, 56), (3, 3), (1, 1), ((2, 2), (2, 2)), (64, 64), (((2, 2), (2, 2)), None)),  # wider already
        ((56,), (3,), (1,), ((1, 1),), (64, 64), (((1, 1),), None)),  # 1-D: never YNNPACK's
    ],
)
def test_widen(size, extent, stride, pads, channels, expected):
    """The CPU's padding of a 2-D XLA convolution: one output more than the input along a stride-1
    axis (XLA keeps its own convolution then), or the padding unchanged."""
    assert _choice.widen(size, extent, stride, pads, channels) == expected


@pytest.mark.parametrize(
    "size, kernel, stride, dilation",
    [((7,), (3,), (2,), (1,)), ((9, 8), (3, 2), (1, 2), (2, 1)),
     ((5, 6, 7), (2, 3, 2), (2, 1, 3), (1, 2, 1))],
)
def test_tap_at_is_tap(size, kernel, stride, dilation):
    """`_windows.tap_at` with a traced tap index (the depthwise Eq 13's scan over the taps) takes the
    same strided window as `_windows.tap` at every tap."""
    x = normal(3, (2, *size, 3), jnp.float32)
    spec = conv_spec("conv", x, jnp.zeros((*kernel, 3, 4)), None, stride=stride, padding=1,
                     dilation=dilation, groups=1, flip=False, pad_value=0.0)
    g, axes = _lowering.geometry(spec), tuple(range(1, len(size) + 1))
    xp = _windows.pad(x, spec.pads, 0.0)
    taps = _lowering._tap_indices(spec)
    got = jax.jit(lambda xp, ts: jax.vmap(lambda t: _windows.tap_at(xp, g, t, axes))(ts))(
        xp, jnp.asarray(taps, jnp.int32))
    for i, t in enumerate(taps):
        np.testing.assert_array_equal(got[i], _windows.tap(xp, g, t, axes))


@pytest.mark.parametrize(
    "size, kernel, stride, dilation, padding",
    [((9,), (5,), (2,), (1,), 2), ((7,), (2,), (3,), (1,), 0), ((8, 7), (3, 4), (2, 1), (1, 2), 1),
     ((6, 5, 7), (3, 2, 5), (3, 2, 2), (1, 1, 1), 1), ((10,), (4,), (2,), (1,), ((3, 0),))],
)
def test_scatter_is_gathers_transpose(size, kernel, stride, dilation, padding):
    """`_windows.scatter` (col2im: runs of adjacent taps, or one placement per tap with dilation) is
    the transpose of ``gather(pad(x))``: it equals JAX's transpose of that linear map on integer-valued
    deltas (every sum exact, so equal to the bit)."""
    x = jnp.zeros((2, *size, 3), jnp.float32)
    spec = conv_spec("conv", x, jnp.zeros((*kernel, 3, 1)), None, stride=stride, padding=padding,
                     dilation=dilation, groups=1, flip=False, pad_value=0.0)
    g, axes, nd = _lowering.geometry(spec), tuple(range(1, len(size) + 1)), len(size)

    def gather(x):
        return _windows.gather(_windows.pad(x, spec.pads, 0.0), g, axes, nd + 1)

    z = jnp.asarray(np.random.default_rng(5).integers(-4, 5, jax.eval_shape(gather, x).shape), jnp.float32)
    want = jax.jit(jax.linear_transpose(gather, x))(z)[0]
    got = jax.jit(lambda z: _windows.scatter(z, g, axes, nd + 1))(z)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "size, kernel, stride, dilation, padding",
    [((9,), (3,), (2,), (1,), 1), ((8, 7), (3, 3), (2, 1), (1, 1), 1), ((8, 7), (3, 2), (1, 3), (2, 1), 0),
     ((6, 5, 7), (3, 2, 3), (2, 2, 1), (1, 1, 1), 1), ((10,), (4,), (2,), (1,), ((3, 0),))],
)
def test_spread_is_the_window_sums_transpose(size, kernel, stride, dilation, padding):
    """`_windows.spread` (avg and l2 pooling's backward, one axis at a time) is the transpose of the
    window sums ``sum_t tap(pad(x), t)``: equal to the bit to JAX's transpose of that linear map on
    integer-valued windows' values, and to `scatter` of the values copied to every tap."""
    x = jnp.zeros((2, *size, 3), jnp.float32)
    spec = conv_spec("conv", x, jnp.zeros((*kernel, 3, 1)), None, stride=stride, padding=padding,
                     dilation=dilation, groups=1, flip=False, pad_value=0.0)
    g, axes, nd = _lowering.geometry(spec), tuple(range(1, len(size) + 1)), len(size)

    def sums(x):
        xp = _windows.pad(x, spec.pads, 0.0)
        return _windows.total(_windows.tap(xp, g, t, axes) for t in np.ndindex(*kernel))

    v = jnp.asarray(np.random.default_rng(6).integers(-4, 5, jax.eval_shape(sums, x).shape), jnp.float32)
    got = jax.jit(lambda v: _windows.spread(v, g, axes))(v)
    np.testing.assert_array_equal(got, jax.jit(jax.linear_transpose(sums, x))(v)[0])
    copies = jnp.broadcast_to(v.reshape(*v.shape, *(1,) * nd), (*v.shape, *kernel))
    np.testing.assert_array_equal(got, _windows.scatter(copies, g, axes, nd + 2))


def test_own_loop_is_exact(dtype):
    """`own_loop` (which keeps the depthwise Eq 13's products and pooling's sums out of YNNPACK)
    changes no value: every bit of normals, subnormals, signed zeros, the extremes and infinities; NaN
    stays NaN."""
    info = jnp.finfo(dtype)
    special = np.array([0.0, -0.0, info.tiny, info.tiny / 4, info.max, -info.max, np.inf, -np.inf, 1 / 3],
                       dtype=dtype)
    p = np.concatenate([special, np.asarray(normal(0, (64,), dtype))])
    got = np.asarray(jax.jit(_lowering.own_loop)(p))
    assert got.dtype == p.dtype
    assert got.tobytes() == p.tobytes()
    assert np.isnan(np.asarray(jax.jit(_lowering.own_loop)(np.array([np.nan], dtype)))).all()


def test_cpu_one_channel_forward_taps_stay_out_of_ynnpack_reductions():
    """A conv over one input channel sums broadcast taps (the "taps" forward pass); a reduction of its
    output (here the loss ``sum(y * ct)``) took them into a YNNPACK fusion whose operands were every
    tap's slice. Through `own_loop` they stay in XLA's own loop: no YNNPACK fusion takes a tap (an
    ``f32[8,4000,1]`` slice of the padded input). The values are the reference's."""
    x, w = normal(0, (8, 16000, 1), jnp.float32), normal(1, (9, 1, 32), jnp.float32)
    ct = normal(2, (8, 4000, 32), jnp.float32)

    def loss(module, x, w):
        return jnp.sum(module.conv(x, w, stride=4, padding=4) * ct)

    f = jax.jit(jax.value_and_grad(functools.partial(loss, conv), argnums=(0, 1)))
    hlo = f.lower(x, w).compile().as_text()
    fusions = re.findall(r"kind=kCustom, calls=%(\S+),[^\n]*__ynn_fusion", hlo)
    starts = [hlo[hlo.index(f"%{name} ("):] for name in fusions]
    bodies = [body[: body.index("\n}\n")] for body in starts]
    assert not [b for b in bodies if "f32[8,4000,1]" in b], "a YNNPACK fusion takes the taps"
    got = f(x, w)
    want = jax.value_and_grad(functools.partial(loss, reference), argnums=(0, 1))(x, w)
    assert_close(got, want)


def test_cpu_xla_form_is_xla_own_convolution():
    """On CPU the "xla" forward of a wide 2-D conv computes a wider output and crops it; a 1x1 conv
    is a matmul of the strided input (no convolution at all); both equal the reference."""
    x, w = normal(0, (2, 9, 9, 20), jnp.float32), normal(1, (3, 3, 20, 24), jnp.float32)
    with _lowering.force("xla"):
        f = jax.jit(functools.partial(conv.conv2d, padding=1))
        hlo = f.lower(x, w).compile().as_text()  # the CPU's branch only
    assert re.search(r"f32\[2,10,9,24\]\{[0-9,]*\} convolution\(", hlo)
    assert_close(f(x, w), reference.conv2d(x, w, padding=1))
    w1 = normal(2, (1, 1, 20, 24), jnp.float32)
    with _lowering.force("xla"):
        f = jax.jit(functools.partial(conv.conv2d, stride=2, padding=1, pad_value=-1.0))
        hlo = f.lower(x, w1).compile().as_text()
    assert "convolution(" not in hlo and " dot(" in hlo
    assert_close(f(x, w1), reference.conv2d(x, w1, stride=2, padding=1, pad_value=-1.0))


def test_strided_xla_input_grad_inserts_no_zeros():
    """The XLA form of a strided Eq 22 is by phases: no convolution with inserted zeros (lhs
    dilation) and no interior padding of the deltas."""
    spec_args = {"stride": 2, "padding": 1}
    x, w = jnp.zeros((2, 8, 8, 4)), jnp.zeros((3, 3, 4, 4))
    with _lowering.force("xla"):
        _, pull = jax.vjp(lambda x, w: conv.conv2d(x, w, **spec_args), x, w)
        hlo = jax.jit(pull).lower(jnp.zeros((2, 4, 4, 4))).as_text()
    dilations = re.findall(r"lhs_dilate = \[([0-9, ]*)\]", hlo)
    assert dilations and all(set(d.replace(" ", "").split(",")) == {"1"} for d in dilations)
    interiors = re.findall(r"interior = \[([0-9, ]*)\]", hlo)
    assert all(set(i.replace(" ", "").split(",")) == {"0"} for i in interiors)


@pytest.mark.parametrize(("groups", "split"), [(2, True), (_choice._SPLIT_GROUPS + 1, False)])
def test_cpu_xla_form_of_grouped_eq22_is_one_convolution_per_group(groups, split, dtype):
    """On CPU the "xla" Eq 22 of a grouped conv is one convolution per group (`_choice.split_groups`),
    each widened as an ungrouped one of its channels would be and written into the whole in a scan;
    past the measured group counts it stays one grouped convolution. Values and both gradients
    equal the reference."""
    c_g = 20 if split else 1  # 20 channels a group: each group's convolution is widened
    x, w = normal(0, (2, 9, 9, groups * c_g), dtype), normal(1, (3, 3, c_g, groups * 2 * c_g), dtype)
    ct = normal(2, (2, 9, 9, groups * 2 * c_g), dtype)
    f = functools.partial(conv.conv2d, padding=1, groups=groups)
    with _lowering.force("xla"):
        forward, run = jax.jit(f), jax.jit(lambda x, w: jax.vjp(f, x, w)[1](ct))
        hlo = run.lower(x, w).compile().as_text()
        y, grads = forward(x, w), run(x, w)
    t = f"{jnp.dtype(dtype).name[0]}{jnp.dtype(dtype).itemsize * 8}"
    one_group = re.findall(rf"{t}\[2,10,9,{c_g}\]\{{[0-9,]*\}} convolution\(", hlo)  # Eq 22 widened
    if split:  # group 0, then the scan's body for the rest; Eq 22 has no grouped convolution left
        assert len(one_group) == 2 and "feature_group_count" not in hlo
    else:  # Eq 22 and Eq 14, one convolution each
        assert not one_group and len(re.findall(r" convolution\(", hlo)) == 2
    y_ref, pull = jax.vjp(lambda x, w: reference.conv2d(x, w, padding=1, groups=groups), x, w)
    assert_close(y, y_ref)
    for got, want in zip(grads, pull(ct), strict=True):
        assert_close(got, want)


@pytest.mark.parametrize("nd", [1, 3])
def test_cpu_xla_form_of_grouped_eq22_per_group_in_every_dim(nd, dtype):
    """The per-group Eq 22 in 1-D and 3-D (strided too: by phases, each phase's correlation per
    group): no grouped convolution left in the backward, gradients equal to the reference."""
    size, groups = (7,) * nd, 3
    x, w = normal(0, (2, *size, groups * 4), dtype), normal(1, (*(3,) * nd, 4, groups * 5), dtype)
    for stride in (1, 2):
        f = functools.partial(conv.conv, padding=1, stride=stride, groups=groups)
        ct = normal(2, jax.eval_shape(f, x, w).shape, dtype)
        with _lowering.force("xla"):
            run = jax.jit(lambda x, w, f=f, ct=ct: jax.vjp(f, x, w)[1](ct))
            hlo, grads = run.lower(x, w).compile().as_text(), run(x, w)
        # Eq 14's XLA form is a batch-grouped convolution, and float64's grouped convolutions are
        # rewritten by the compiler: the feature groups are looked for in float32 only
        if dtype == jnp.float32:
            assert "feature_group_count" not in hlo
        _, pull = jax.vjp(lambda x, w, stride=stride: reference.conv(x, w, padding=1, stride=stride,
                                                                     groups=groups), x, w)
        for got, want in zip(grads, pull(ct), strict=True):
            assert_close(got, want)
