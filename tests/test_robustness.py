"""Issue 10, the robustness contract, for every public function of `jaxcnn` and its `jaxcnn.reference` twin:

1. sizes whose arrays cannot exist (padding 2**31, window 2**20, stride 2**40, ...) raise the library's
   ValueError naming the argument: never an abort or XLA's RESOURCE_EXHAUSTED. These calls run in a
   child interpreter, so that a regression fails its rows instead of killing the suite;
2. a batch of 0 (and a zero-sized dim the math allows) gives an empty result of the right shape, and
   gradients of the right shapes, through every function and through whole models;
3. NaN propagates through every op forward and through its rule backward as in JAX: a NaN input gives
   NaN exactly where the input reaches, and a NaN gradient where the derivative reads it (relu and
   leaky_relu take the x <= 0 branch's derivative at a NaN input, as jax.nn.relu does).

Plus: a nested Python list is refused with the library's TypeError, not NumPy's dump of the list.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn import models, reference
from tests.tolerances import assert_dtype, normal

ROOT = Path(__file__).resolve().parents[1]
MODULES = [pytest.param(jaxcnn, id="custom"), pytest.param(reference, id="reference")]

PUBLIC = (
    "conv", "conv1d", "conv2d", "conv3d", "conv_input_grad", "conv_weight_grad", "conv2d_input_grad",
    "conv2d_weight_grad", "conv_transpose", "correlate2d", "convolve2d", "relu", "leaky_relu", "tanh",
    "scaled_tanh", "sigmoid", "max_pool", "avg_pool", "l2_pool", "dense", "flatten", "squared_error",
    "softmax_cross_entropy",
)
F32 = jnp.float32


def _z(*shape, dtype=F32):
    return jnp.zeros(shape, dtype)


# ===================================================================== 1. sizes that cannot exist
# (id, call on module `m` as source text, the argument names the message may give). Inputs are small;
# only the configuration is huge. `x2`, `w2`, ... are defined in the child's preamble.
HUGE = [
    ("conv2d-padding-2**31", "m.conv2d(x2, w2, padding=2**31)", "padding"),
    ("conv2d-padding-pair-2**40", "m.conv2d(x2, w2, padding=((0, 2**40), (0, 0)))", "padding"),
    ("conv2d-stride-2**40", "m.conv2d(x2, w2, stride=2**40)", "stride"),
    ("conv2d-dilation-2**40", "m.conv2d(x2, w2, dilation=2**40)", "dilation"),
    ("conv2d-dilation-2**31-same", "m.conv2d(x2, w2, dilation=2**31, padding='SAME')", "dilation|padding"),
    ("conv-1d-full-dilation-2**30", "m.conv(x1, w1, dilation=2**30, padding='FULL')", "dilation|padding"),
    ("conv1d-padding-2**31", "m.conv1d(x1, w1, padding=2**31)", "padding"),
    ("conv3d-padding-2**20", "m.conv3d(x3, w3, padding=2**20)", "padding"),
    ("conv3d-stride-2**40", "m.conv3d(x3, w3, stride=(1, 2**40, 1))", "stride"),
    ("conv_input_grad-x_shape-2**40", "m.conv_input_grad(d1, w1, (2, 2**40, 3))", "x_shape|delta"),
    ("conv_input_grad-stride-2**40", "m.conv_input_grad(d1, w1, (2, 8, 3), stride=2**40)", "stride"),
    ("conv_weight_grad-padding-2**31", "m.conv_weight_grad(x1, d1, (3, 3, 4), padding=2**31)",
     "padding|delta"),
    ("conv2d_input_grad-padding-2**31", "m.conv2d_input_grad(d2, w2, (2, 8, 8, 3), padding=2**31)",
     "padding|delta"),
    ("conv2d_weight_grad-w_shape-2**40", "m.conv2d_weight_grad(x2, d2, (2**40, 3, 3, 4))",
     "w_shape|w|delta"),
    ("conv_transpose-stride-2**40", "m.conv_transpose(d1, w1, stride=2**40)", "stride"),
    ("conv_transpose-stride-2**30-output", "m.conv_transpose(d1, w1, stride=2**30)", "stride"),
    ("conv_transpose-dilation-2**31", "m.conv_transpose(d1, w1, dilation=2**31)", "dilation"),
    ("conv_transpose-3d-stride-2**12", "m.conv_transpose(x3t, w3t, stride=2**12)", "stride"),
    ("conv_transpose-padding-2**31", "m.conv_transpose(d1, w1, padding=2**31)", "padding"),
    ("conv_transpose-output_padding-2**40",
     "m.conv_transpose(d1, w1, stride=2**40, output_padding=2**40 - 1)", "stride|output_padding"),
]
for _name in ("max_pool", "avg_pool", "l2_pool"):
    HUGE += [
        (f"{_name}-window-10**5", f"m.{_name}(x2, 10**5)", "window"),
        (f"{_name}-window-2**20-same", f"m.{_name}(x2, 2**20, padding='SAME')", "window|padding"),
        (f"{_name}-window-2**20-3d", f"m.{_name}(x3, (2**20, 2**20, 2), padding='SAME')", "window|padding"),
        (f"{_name}-window-2**40-1d", f"m.{_name}(x1, 2**40)", "window"),
        (f"{_name}-stride-2**40", f"m.{_name}(x2, 2, stride=2**40)", "stride"),
        (f"{_name}-padding-2**31", f"m.{_name}(x1, 2**32, padding=2**31)", "window|padding"),
    ]

_HUGE_SCRIPT = """
import json, sys
import jax
jax.config.update("jax_platforms", "cpu")
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
import jax.numpy as jnp
import jaxcnn
from jaxcnn import reference

x1, w1, d1 = jnp.ones((2, 8, 3)), jnp.ones((3, 3, 4)), jnp.ones((2, 6, 4))
x2, w2, d2 = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4)), jnp.ones((2, 6, 6, 4))
x3, w3 = jnp.ones((1, 4, 4, 4, 2)), jnp.ones((2, 2, 2, 2, 2))
x3t, w3t = jnp.ones((1, 2**10, 2**10, 2, 2)), jnp.ones((2, 2, 2, 3, 2))
rows = json.loads(sys.argv[1])
for key, module, code in rows:
    m = jaxcnn if module == "custom" else reference
    print("START " + key, flush=True)
    try:
        out = eval(code)
        result = {"outcome": "returned", "shape": list(jnp.shape(out))}
    except Exception as e:
        result = {"outcome": type(e).__name__, "message": str(e)[:600]}
    print("RESULT " + json.dumps([key, result]), flush=True)
"""


@functools.cache
def _huge_results() -> dict:
    """Run every HUGE row for both modules in child interpreters; a row that kills its child is
    recorded as crashed (with the child's stderr) and the rest continue in a new child."""
    rows = [[f"{module}:{rid}", module, code] for rid, code, _ in HUGE for module in ("custom", "reference")]
    results: dict = {}
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    while rows:
        try:
            proc = subprocess.run([sys.executable, "-c", _HUGE_SCRIPT, json.dumps(rows)], capture_output=True,
                                  text=True, timeout=300, cwd=ROOT, env=env)
            stdout, stderr, rc = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as e:
            stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            stderr, rc = "timed out after 300 s", "timeout"
        started = None
        for line in stdout.splitlines():
            if line.startswith("START "):
                started = line[6:]
            elif line.startswith("RESULT "):
                key, result = json.loads(line[7:])
                results[key] = result
                started = None
        done = len(results)
        if rc == 0 and started is None:
            break
        log = "\n".join(line for line in stderr.splitlines() if not line.lstrip().startswith("@"))
        crashed = started if started is not None else rows[0][0]
        results[crashed] = {"outcome": f"crashed (return code {rc})", "message": log[-2000:]}
        rows = [r for r in rows if r[0] not in results]
        if len(results) == done:  # nothing new: give up rather than loop
            for r in rows:
                results[r[0]] = {"outcome": "not run", "message": log[-2000:]}
            break
    return results


@pytest.mark.parametrize("module", ["custom", "reference"])
@pytest.mark.parametrize("rid, code, names", HUGE, ids=[h[0] for h in HUGE])
def test_impossible_sizes_raise_the_librarys_value_error(module, rid, code, names):
    result = _huge_results()[f"{module}:{rid}"]
    fn = code.split("(", 1)[0].split(".", 1)[1]
    assert result["outcome"] == "ValueError", f"{code}: {result}"
    # the argument in backticks; a window may be named in the text ("window extent ... larger")
    pattern = rf"^`{fn}`: .*`({names})`" if "window" not in names else rf"^`{fn}`: .*({names})"
    assert re.search(pattern, result["message"], flags=re.S), result["message"]


def test_an_existing_long_padded_array_is_fine_or_refused_cleanly():
    """1-D, window 10**5 with SAME: the padded row (10**5 units) can exist; the result is the max over
    the row (or, if the library prefers, its ValueError naming the window/padding), never a crash."""
    x = normal(0, (2, 8, 3), F32)
    for module in (jaxcnn, reference):
        try:
            y = module.max_pool(x, 10**5, padding="SAME")
        except ValueError as e:
            assert "`max_pool`" in str(e) and ("window" in str(e) or "`padding`" in str(e))
        else:
            assert y.shape == (2, 1, 3)
            np.testing.assert_array_equal(y[:, 0], np.max(np.asarray(x), axis=1))


# =========================================================================== 2. an empty batch
def _empty_rows():
    """(id, function name, args, kwargs, expected output shape, argnums to differentiate)."""
    x1, w1 = _z(0, 6, 3), normal(1, (3, 3, 4), F32)
    x2, w2 = _z(0, 5, 5, 2), normal(2, (3, 3, 2, 4), F32)
    x3, w3 = _z(0, 3, 4, 3, 2), normal(3, (2, 2, 2, 2, 3), F32)
    return [
        ("conv-1d-tied", "conv", (x1, w1, normal(4, (4,), F32)), {"stride": 2, "padding": 1}, (0, 3, 4),
         (0, 1, 2)),
        ("conv-3d", "conv", (x3, w3), {}, (0, 2, 3, 2, 3), (0, 1)),
        ("conv1d", "conv1d", (_z(0, 5, 3), w1), {"dilation": 2}, (0, 1, 4), (0, 1)),
        ("conv2d-untied", "conv2d", (x2, w2, normal(5, (3, 3, 4), F32)), {}, (0, 3, 3, 4), (0, 1, 2)),
        ("conv2d-padding-minus1", "conv2d", (x2, w2), {"padding": 2, "stride": 2, "pad_value": -1.0},
         (0, 4, 4, 4), (0, 1)),  # (5 + 2*2 - 3) // 2 + 1 = 4
        ("conv3d-same", "conv3d", (x3, w3), {"padding": "SAME"}, (0, 3, 4, 3, 3), (0, 1)),
        ("conv_input_grad", "conv_input_grad", (_z(0, 4, 4), w1, (0, 6, 3)), {}, (0, 6, 3), (0, 1)),
        ("conv_weight_grad", "conv_weight_grad", (x1, _z(0, 4, 4), (3, 3, 4)), {}, (3, 3, 4), (0, 1)),
        ("conv2d_input_grad", "conv2d_input_grad", (_z(0, 3, 3, 4), w2, (0, 5, 5, 2)), {}, (0, 5, 5, 2),
         (0, 1)),
        ("conv2d_weight_grad", "conv2d_weight_grad", (x2, _z(0, 3, 3, 4), (3, 3, 2, 4)), {}, (3, 3, 2, 4),
         (0, 1)),
        ("conv_transpose-1d", "conv_transpose",
         (_z(0, 3, 4), normal(6, (3, 2, 4), F32), normal(7, (2,), F32)), {"stride": 2}, (0, 7, 2), (0, 1, 2)),
        # (2 - 1)*2 - 2*1 + (2 - 1) + 1 + 1 = 3 per dim
        ("conv_transpose-3d", "conv_transpose", (_z(0, 2, 2, 2, 2), normal(8, (2, 2, 2, 3, 2), F32)),
         {"stride": 2, "padding": 1, "output_padding": 1}, (0, 3, 3, 3, 3), (0, 1)),
        *[(f"{a}", a, (_z(0, 4, 4, 3),), {}, (0, 4, 4, 3), (0,))
          for a in ("relu", "leaky_relu", "tanh", "scaled_tanh", "sigmoid")],
        *[(f"{p}-{nd}d", p, (_z(0, *(4,) * nd, 2), 2), {"stride": 1, "padding": "SAME"}, (0, *(4,) * nd, 2),
           (0,))
          for p in ("max_pool", "avg_pool", "l2_pool") for nd in (1, 2, 3)],
        ("avg_pool-exclude-pad", "avg_pool", (_z(0, 5, 5, 2), 3), {"padding": 1, "count_include_pad": False},
         (0, 2, 2, 2), (0,)),
        ("dense", "dense", (_z(0, 5), normal(9, (5, 3), F32), normal(10, (3,), F32)), {}, (0, 3), (0, 1, 2)),
        ("dense-no-features", "dense", (_z(4, 0), _z(0, 3), normal(11, (3,), F32)), {}, (4, 3), (0, 1, 2)),
        ("dense-no-units", "dense", (normal(12, (4, 5), F32), _z(5, 0)), {}, (4, 0), (0, 1)),
        ("flatten", "flatten", (_z(0, 3, 4, 2),), {}, (0, 24), (0,)),
        ("flatten-zero-features", "flatten", (_z(3, 0, 2),), {}, (3, 0), (0,)),
        ("squared_error-sum", "squared_error", (_z(0, 10), _z(0, 10)), {}, (), (0,)),
        ("squared_error-mean", "squared_error", (_z(0, 10), _z(0, 10)), {"reduction": "mean"}, (), (0,)),
        ("softmax_cross_entropy-int", "softmax_cross_entropy", (_z(0, 10), jnp.zeros((0,), jnp.int32)), {},
         (), (0,)),
        ("softmax_cross_entropy-onehot", "softmax_cross_entropy", (_z(0, 10), _z(0, 10)), {}, (), (0,)),
    ]


EMPTY_IDS = [r[0] for r in _empty_rows()]
# correlate2d / convolve2d take one plain 2-D image and kernel (no batch); a zero-sized image cannot
# hold the non-empty kernel, so they have no empty case.
NO_EMPTY_CASE = {"correlate2d", "convolve2d"}


def test_tables_cover_every_public_function():
    functions = {n for n in jaxcnn.__all__ if callable(getattr(jaxcnn, n)) and n != "rot180"}
    assert set(PUBLIC) <= functions
    assert functions - NO_EMPTY_CASE == {r[1] for r in _empty_rows()}
    assert functions == {r[1] for r in NAN_ROWS}
    for name in functions:
        assert callable(getattr(reference, name, None)), f"reference.{name} is missing"


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("row", EMPTY_IDS)
def test_empty_batch_result_and_gradient_shapes(row, module):
    _, name, args, kwargs, out_shape, argnums = next(r for r in _empty_rows() if r[0] == row)
    f = getattr(module, name)

    def g(*diff):
        full = list(args)
        for i, a in zip(argnums, diff, strict=True):
            full[i] = a
        return f(*full, **kwargs)

    ct = normal(20, out_shape, F32)

    @jax.jit
    def run(diff, ct):
        y, pull = jax.vjp(g, *diff)
        return y, pull(ct)

    y, grads = run(tuple(args[i] for i in argnums), ct)
    assert y.shape == out_shape
    assert_dtype(y, F32)
    assert [gr.shape for gr in grads] == [jnp.shape(args[i]) for i in argnums]
    for i, gr in zip(argnums, grads, strict=True):
        assert_dtype(gr, F32)
        assert np.all(np.isfinite(np.asarray(gr))), f"gradient {i} of {name} is not finite"
    if name == "squared_error" and kwargs.get("reduction", "sum") == "sum":
        assert float(y) == 0.0  # an empty sum
    if name in ("conv_weight_grad", "conv2d_weight_grad"):
        np.testing.assert_array_equal(y, np.zeros(out_shape))  # a sum over an empty batch
    if row == "dense-no-features":  # x @ w is 0 (an empty sum), y = b; db = the deltas summed over N
        np.testing.assert_array_equal(y, np.broadcast_to(np.asarray(args[2]), (4, 3)))
        np.testing.assert_allclose(grads[2], np.asarray(ct).sum(axis=0), rtol=1e-6)


def test_empty_batch_under_jit():
    x, w = _z(0, 5, 5, 2), normal(2, (3, 3, 2, 4), F32)

    @jax.jit
    def run(x, w):
        y, pull = jax.vjp(lambda x_, w_: jaxcnn.max_pool(jaxcnn.relu(jaxcnn.conv2d(x_, w_, padding=1)), 2),
                          x, w)
        return y, pull(jnp.zeros(y.shape, F32))

    y, (dx, dw) = run(x, w)
    assert y.shape == (0, 2, 2, 4) and dx.shape == x.shape and dw.shape == w.shape
    np.testing.assert_array_equal(dw, np.zeros(w.shape))


@pytest.mark.parametrize("ops", MODULES)
@pytest.mark.parametrize("model", [models.lecun1989(), models.lenet5()], ids=["lecun1989", "lenet5"])
def test_models_on_an_empty_batch(model, ops):
    # parameters of init's shapes (eval_shape: jax.random would compile for every shape)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    params = jax.tree.map(lambda s: normal(40, s.shape, s.dtype), shapes)
    x = _z(0, *model.input_shape)

    @jax.jit
    def run(params, x):
        y, pull = jax.vjp(lambda p: model.apply(p, x, ops=ops), params)
        return y, pull(jnp.zeros(y.shape, y.dtype))[0]

    y, grads = run(params, x)
    assert y.shape == (0, 10)
    assert jax.tree.map(jnp.shape, grads) == jax.tree.map(jnp.shape, params)
    for g in jax.tree_util.tree_leaves(grads):  # a sum over no examples
        np.testing.assert_array_equal(g, np.zeros(g.shape))


# ======================================================================================= 3. NaN
def _nan(shape, index, seed=0):
    a = np.asarray(normal(seed, shape, F32)).copy()
    a[index] = np.nan
    return jnp.asarray(a)


def _mask(shape, *indices):
    m = np.zeros(shape, bool)
    for index in indices:
        m[index] = True
    return m


S = slice(None)
# (id, name, args, kwargs, NaN mask of the output, {argnum: NaN mask of its gradient}, compare the
# reference's gradients too). A gradient mask of None: all finite. Masks worked out per row:
NAN_ROWS = [
    *[(a, a, (_nan((2, 3), (0, 1)),), {}, _mask((2, 3), (0, 1)), {0: _mask((2, 3), (0, 1))}, True)
      for a in ("tanh", "scaled_tanh", "sigmoid")],
    # relu / leaky_relu take the derivative at a NaN from the mask x > 0 (False): 0 and the slope, as
    # jax.nn.relu and PyTorch do (see test_relu_nan_convention); the output is NaN
    *[(a, a, (_nan((2, 3), (0, 1)),), {}, _mask((2, 3), (0, 1)), {0: None}, True)
      for a in ("relu", "leaky_relu")],
    # 1-D: x[2] (channel 0) is read by outputs 0, 1, 2 (window 3) on every output channel; dx reads w
    # and delta only; dw[t, 0, :] = sum_o delta[o] x[o + t, 0] reads x[2] for every tap t
    ("conv-1d", "conv", (_nan((1, 6, 2), (0, 2, 0)), normal(1, (3, 2, 3), F32)), {},
     _mask((1, 4, 3), (0, slice(0, 3))), {0: None, 1: _mask((3, 2, 3), (S, 0))}, True),
    ("conv1d", "conv1d", (_nan((1, 6, 2), (0, 2, 0)), normal(1, (3, 2, 3), F32)), {},
     _mask((1, 4, 3), (0, slice(0, 3))), {0: None, 1: _mask((3, 2, 3), (S, 0))}, True),
    # 2-D: the corner x[0, 0] is read by output (0, 0) through tap (0, 0) only
    ("conv2d-corner", "conv2d", (_nan((1, 4, 4, 1), (0, 0, 0, 0)), normal(1, (2, 2, 1, 2), F32)), {},
     _mask((1, 3, 3, 2), (0, 0, 0)), {0: None, 1: _mask((2, 2, 1, 2), (0, 0, 0))}, True),
    # 3-D: the centre of 3x3x3 is in every 2x2x2 window, through every tap
    ("conv3d-centre", "conv3d", (_nan((1, 3, 3, 3, 1), (0, 1, 1, 1, 0)), normal(1, (2, 2, 2, 1, 1), F32)), {},
     _mask((1, 2, 2, 2, 1), S), {0: None, 1: _mask((2, 2, 2, 1, 1), S)}, True),
    # Eq 22 of a NaN delta[0] (channel 1): dx[i] = sum_t delta[i - t] w[t] -> dx[0:3], every channel
    ("conv_input_grad", "conv_input_grad", (_nan((1, 4, 3), (0, 0, 1)), normal(1, (3, 2, 3), F32), (1, 6, 2)),
     {}, _mask((1, 6, 2), (0, slice(0, 3))), {0: None}, True),
    # Eq 14 of a NaN x[2] (channel 0): dw[t, 0, :] for every t; its gradient w.r.t. delta is the
    # convolution of x with the cotangent: outputs 0, 1, 2 read x[2]
    ("conv_weight_grad", "conv_weight_grad",
     (_nan((1, 6, 2), (0, 2, 0)), normal(1, (1, 4, 3), F32), (3, 2, 3)), {}, _mask((3, 2, 3), (S, 0)),
     {1: _mask((1, 4, 3), (0, slice(0, 3)))}, True),
    ("conv2d_input_grad", "conv2d_input_grad",
     (_nan((1, 3, 3, 2), (0, 1, 1, 0)), normal(1, (2, 2, 1, 2), F32), (1, 4, 4, 1)), {},
     _mask((1, 4, 4, 1), (0, slice(1, 3), slice(1, 3))), {0: None}, True),
    # x[0, 0] meets tap (0, 0) in output (0, 0) only
    ("conv2d_weight_grad", "conv2d_weight_grad",
     (_nan((1, 4, 4, 1), (0, 0, 0, 0)), normal(1, (1, 3, 3, 2), F32), (2, 2, 1, 2)), {},
     _mask((2, 2, 1, 2), (0, 0, 0)), {1: _mask((1, 3, 3, 2), (0, 0, 0))}, True),
    # x[1] scatters its kernel to outputs 2, 3, 4 (stride 2, k 3); dw[t, :, 0] reads x[:, 0] for every t
    ("conv_transpose", "conv_transpose", (_nan((1, 3, 2), (0, 1, 0)), normal(1, (3, 1, 2), F32)),
     {"stride": 2}, _mask((1, 7, 1), (0, slice(2, 5))), {0: None, 1: _mask((3, 1, 2), (S, S, 0))}, True),
    # I[0, 0] meets K[0, 0] in output (0, 0) (correlation) and K[1, 1] (convolution: K rotated)
    ("correlate2d", "correlate2d", (_nan((4, 4), (0, 0)), normal(1, (2, 2), F32)), {},
     _mask((3, 3), (0, 0)), {0: None, 1: _mask((2, 2), (0, 0))}, True),
    ("convolve2d", "convolve2d", (_nan((4, 4), (0, 0)), normal(1, (2, 2), F32)), {},
     _mask((3, 3), (0, 0)), {0: None, 1: _mask((2, 2), (1, 1))}, True),
    # max: the NaN wins its window and takes the delta (finite); the reference's autodiff routing of a
    # NaN is not the oracle here (select_and_scatter_add skips it), see test_max_pool_nan_routing
    ("max_pool", "max_pool", (_nan((1, 6, 2), (0, 1, 0)), 2), {}, _mask((1, 3, 2), (0, 0, 0)), {0: None},
     False),
    # avg: windows 0 and 1 (stride 1) hold x[1]; the gradient is delta / 2, finite
    ("avg_pool", "avg_pool", (_nan((1, 6, 2), (0, 1, 0)), 2), {"stride": 1},
     _mask((1, 5, 2), (0, slice(0, 2), 0)), {0: None}, True),
    # l2: y = NaN for the window; dx = delta * x / y is NaN on both of its units
    ("l2_pool", "l2_pool", (_nan((1, 6, 2), (0, 1, 0)), 2), {}, _mask((1, 3, 2), (0, 0, 0)),
     {0: _mask((1, 6, 2), (0, slice(0, 2), 0))}, True),
    # dense: row 1 of y; dw = x^T delta: row 0 (feature 0) of dw; dx = delta w^T and db are finite
    ("dense", "dense", (_nan((2, 3), (1, 0)), normal(1, (3, 4), F32), normal(2, (4,), F32)), {},
     _mask((2, 4), (1,)), {0: None, 1: _mask((3, 4), (0,)), 2: None}, True),
    ("flatten", "flatten", (_nan((2, 2, 3), (1, 0, 2)),), {}, _mask((2, 6), (1, 2)), {0: None}, True),
    # the loss is NaN; its gradient y - t is NaN at the unit only
    ("squared_error", "squared_error", (_nan((2, 3), (0, 1)), normal(1, (2, 3), F32)), {}, np.array(True),
     {0: _mask((2, 3), (0, 1))}, True),
    # softmax of a row holding a NaN is NaN on the whole row
    ("softmax_cross_entropy", "softmax_cross_entropy", (_nan((2, 4), (0, 1)), jnp.array([2, 3], jnp.int32)),
     {}, np.array(True), {0: _mask((2, 4), (0,))}, True),
]


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("name, args, kwargs, y_mask, grad_masks, check_ref_grads", [r[1:] for r in NAN_ROWS],
                         ids=[r[0] for r in NAN_ROWS])
def test_nan_propagates(name, args, kwargs, y_mask, grad_masks, check_ref_grads, module):
    argnums = tuple(grad_masks)

    def f(*diff):
        full = list(args)
        for i, a in zip(argnums, diff, strict=True):
            full[i] = a
        return getattr(module, name)(*full, **kwargs)

    @jax.jit
    def run(diff, ct):
        y, pull = jax.vjp(f, *diff)
        return y, pull(ct)

    y, grads = run(tuple(args[i] for i in argnums), normal(30, y_mask.shape, F32))  # a random cotangent
    np.testing.assert_array_equal(np.isnan(np.asarray(y)), y_mask, err_msg=f"{name}: NaN in the output")
    if module is reference and not check_ref_grads:
        return
    for i, g in zip(argnums, grads, strict=True):
        expected = grad_masks[i] if grad_masks[i] is not None else np.zeros(jnp.shape(args[i]), bool)
        np.testing.assert_array_equal(np.isnan(np.asarray(g)), expected,
                                      err_msg=f"{name}: NaN in the gradient of argument {i}")


@pytest.mark.parametrize("module", MODULES)
def test_relu_nan_convention(module):
    """relu(NaN) = NaN; the derivative at a NaN input is that of the x <= 0 branch (0 for relu, the
    slope for leaky_relu), as in jax.nn.relu / jax.nn.leaky_relu; a NaN delta passes where x > 0."""
    x = jnp.array([np.nan, 1.0, -1.0, 0.0], F32)
    delta = jnp.array([2.0, 3.0, 5.0, 7.0], F32)
    for name, slope, jax_fn in (("relu", 0.0, jax.nn.relu), ("leaky_relu", 0.01, jax.nn.leaky_relu)):
        y, pull = jax.vjp(getattr(module, name), x)
        np.testing.assert_allclose(y, [np.nan, 1.0, -slope, 0.0], rtol=1e-6)  # NaN where NaN
        np.testing.assert_allclose(pull(delta)[0], [slope * 2, 3, slope * 5, slope * 7], rtol=1e-6)
        if name == "relu":  # jax.nn.leaky_relu differs at 0 only (x >= 0 there), see DESIGN.md
            np.testing.assert_array_equal(pull(delta)[0], jax.vjp(jax_fn, x)[1](delta)[0])
        nan_delta = pull(jnp.full((4,), np.nan, F32))[0]
        assert np.isnan(nan_delta[1])  # x > 0: the NaN delta passes


@pytest.mark.parametrize("shape, index, window", [((1, 6, 2), (0, 1, 0), 2),
                                                  ((1, 2, 2, 2, 1), (0, 1, 1, 1, 0), 2)],
                         ids=["1d", "3d-last-unit-of-its-window"])
def test_max_pool_nan_routing(shape, index, window):
    """A NaN wins its window (even as the window's last unit) and takes the whole delta."""
    x = _nan(shape, index)
    y, pull = jax.vjp(lambda z: jaxcnn.max_pool(z, window), x)
    ct = normal(31, y.shape, F32)
    dx = np.asarray(pull(ct)[0])
    out_index = (0, *(i // window for i in index[1:-1]), index[-1])
    assert np.isnan(np.asarray(y)[out_index])
    assert dx[index] == np.asarray(ct)[out_index]
    others = np.ones(shape, bool)
    others[index] = False
    assert np.all(np.isfinite(dx))
    # the rest of that window gets nothing
    window_units = tuple(slice(o * window, (o + 1) * window) for o in out_index[1:-1])
    block = dx[(0, *window_units, index[-1])].copy()
    block[tuple(i % window for i in index[1:-1])] = 0
    np.testing.assert_array_equal(block, np.zeros(block.shape))
    assert np.isnan(np.asarray(reference.max_pool(x, window))[out_index])


# ================================================================================ nested lists
@pytest.mark.parametrize("module", MODULES)
def test_nested_list_gives_the_librarys_type_error(module):
    x_list = np.zeros((2, 8, 8, 3)).tolist()
    w = jnp.ones((3, 3, 3, 4), F32)
    with pytest.raises(TypeError, match=r"^`conv2d`: `x`") as info:
        module.conv2d(x_list, w)
    message = str(info.value)
    assert len(message) < 400 and "0.0, 0.0" not in message, message
    with pytest.raises(TypeError, match=r"^`conv`: `w`"):
        module.conv(jnp.ones((2, 8, 8, 3), F32), np.ones((3, 3, 3, 4)).tolist())


# ====================================================================== 4. found by a contract hunt
# Each of these once escaped as NumPy's or JAX's own error (no argument named), a bare OverflowError,
# or an internal TypeError of the lowering; each is now the library's error or the right result.
BAD_ARGS = [
    # (id, call on module `m`, exception, message pattern)
    ("conv_input_grad-w-list", lambda m: m.conv_input_grad(_z(1, 2, 4), [[[1.0]]], (1, 4, 2)), TypeError,
     r"^`conv_input_grad`: `w` must be a floating-point array, got a list"),
    ("conv_weight_grad-x-list", lambda m: m.conv_weight_grad([[[1.0]]], _z(1, 1, 1), (1, 1, 1)), TypeError,
     r"^`conv_weight_grad`: `x` must be a floating-point array, got a list"),
    ("correlate2d-I-list", lambda m: m.correlate2d([[1.0]], _z(1, 1)), TypeError,
     r"^`correlate2d`: `I` must be a floating-point array, got a list"),
    ("correlate2d-I-int", lambda m: m.correlate2d(jnp.zeros((3, 3), jnp.int32), _z(2, 2)), TypeError,
     r"^`correlate2d`: `I` must be a floating-point array, got dtype int32"),
    ("convolve2d-K-float16", lambda m: m.convolve2d(_z(3, 3), _z(2, 2, dtype=jnp.float16)), TypeError,
     r"^`convolve2d`: arguments must share one dtype, got `I` float32, `K` float16"),
    ("convolve2d-K-larger", lambda m: m.convolve2d(_z(2, 4), _z(3, 3)), ValueError,
     r"^`convolve2d`: `K` \(3, 3\) is larger than `I` \(2, 4\)"),
    ("correlate2d-K-empty", lambda m: m.correlate2d(_z(3, 3), _z(0, 2)), ValueError,
     r"^`correlate2d`: `K` must be a non-empty kernel, got shape \(0, 2\)"),
    ("conv-pad_value-10**400", lambda m: m.conv(_z(1, 3, 1), _z(2, 1, 1), padding=1, pad_value=10**400),
     ValueError, r"^`conv`: `pad_value` must be a number a float can hold"),
    ("leaky_relu-negative_slope-10**400", lambda m: m.leaky_relu(_z(3), -(10**400)), ValueError,
     r"^`leaky_relu`: `negative_slope` must be a number a float can hold"),
    # a static number applied in the array's dtype: 1e300 was float32's inf, silently; NaN gave the
    # custom rule a derivative of 1 at x > 0 where `jax.grad` of the reference gave NaN (0 * NaN)
    ("conv-pad_value-1e300-float32", lambda m: m.conv(_z(1, 3, 1), _z(2, 1, 1), padding=1, pad_value=1e300),
     ValueError, r"^`conv`: `pad_value` 1e\+300 overflows float32, the dtype it is applied in"),
    ("conv-pad_value-nan", lambda m: m.conv(_z(1, 3, 1), _z(2, 1, 1), padding=1, pad_value=float("nan")),
     ValueError, r"^`conv`: `pad_value` must be a finite number, got nan"),
    ("leaky_relu-negative_slope-nan", lambda m: m.leaky_relu(_z(3), float("nan")), ValueError,
     r"^`leaky_relu`: `negative_slope` must be a finite number, got nan"),
    ("leaky_relu-negative_slope-1e5-float16", lambda m: m.leaky_relu(_z(3, dtype=jnp.float16), 1e5),
     ValueError, r"^`leaky_relu`: `negative_slope` 100000.0 overflows float16"),
    # a shape without values: `float()` of it, or `<=` against it, failed inside the library
    ("conv-x-ShapeDtypeStruct", lambda m: m.conv(jax.ShapeDtypeStruct((1, 3, 1), F32), _z(2, 1, 1)),
     TypeError, r"^`conv`: `x` must be a floating-point array, got a jax.ShapeDtypeStruct"),
    ("relu-x-ShapeDtypeStruct", lambda m: m.relu(jax.ShapeDtypeStruct((3,), F32)), TypeError,
     r"^`relu`: `x` must be a floating-point array, got a jax.ShapeDtypeStruct .* jax.eval_shape"),
    ("softmax_cross_entropy-labels-list", lambda m: m.softmax_cross_entropy(_z(2, 3), [0, 2]), TypeError,
     r"^`softmax_cross_entropy`: `labels` must be integer class ids \(N,\) or float one-hot \(N, K\), "
     r"got a list"),
    ("softmax_cross_entropy-labels-None", lambda m: m.softmax_cross_entropy(_z(2, 3), None), TypeError,
     r"^`softmax_cross_entropy`: `labels` must be .*got a NoneType"),
    ("softmax_cross_entropy-no-classes-int",
     lambda m: m.softmax_cross_entropy(_z(0, 0), jnp.zeros((0,), jnp.int32)), ValueError,
     r"^`softmax_cross_entropy`: `logits` must have at least one class, got shape \(0, 0\)"),
    # the convolution a transposed one of an input without units would transpose has no outputs: it
    # does not exist (with stride 2 the lowering sliced past the end, and the reference disagreed on
    # the output's size)
    ("conv_transpose-no-input-units-s2",
     lambda m: m.conv_transpose(_z(1, 0, 4), _z(5, 2, 4), stride=2, padding=1), ValueError,
     r"^`conv_transpose`: `x` \(1, 0, 4\) has no units along W"),
    ("conv_transpose-no-input-units-2d", lambda m: m.conv_transpose(_z(1, 2, 0, 4), _z(5, 3, 2, 4)),
     ValueError, r"^`conv_transpose`: `x` \(1, 2, 0, 4\) has no units along W"),
    ("softmax_cross_entropy-no-classes-one-hot", lambda m: m.softmax_cross_entropy(_z(2, 0), _z(2, 0)),
     ValueError, r"^`softmax_cross_entropy`: `logits` must have at least one class, got shape \(2, 0\)"),
]


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("call, exc, match", [b[1:] for b in BAD_ARGS], ids=[b[0] for b in BAD_ARGS])
def test_bad_arguments_found_by_the_hunt_raise_the_librarys_error(call, exc, match, module):
    with pytest.raises(exc, match=match):
        call(module)


@pytest.mark.parametrize("module", MODULES)
def test_shapes_alone_go_through_eval_shape(module):
    """What the ShapeDtypeStruct message suggests works: shapes in, shapes out, no values."""
    sds = jax.ShapeDtypeStruct
    y = jax.eval_shape(functools.partial(module.conv2d, padding=2, pad_value=-1.0, stride=2),
                       sds((3, 16, 16, 1), F32), sds((5, 5, 1, 12), F32))
    assert (y.shape, y.dtype) == ((3, 8, 8, 12), F32)
    assert jax.eval_shape(module.leaky_relu, sds((4,), jnp.float16)).dtype == jnp.float16


def test_rot180_and_interop_refuse_non_arrays():
    with pytest.raises(TypeError, match=r"^`rot180`: `k` must be an array, got a list"):
        jaxcnn.rot180([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(TypeError, match=r"^`rot180`: `k` must be an array, got a NoneType"):
        jaxcnn.rot180(None)
    from jaxcnn import interop

    with pytest.raises(TypeError, match=r"^`conv_general_dilated`: `lhs` must be a floating-point array"):
        interop.conv_general_dilated(np.ones((1, 1, 2, 2)).tolist(), jnp.ones((1, 1, 1, 1), F32), (1, 1),
                                     "VALID")


# An empty sum: no input channels (C = 0) or no output channels (D = 0) under groups > 1, whose
# lowerings summed Python lists of per-channel terms (functools.reduce of nothing: a TypeError).
# Each entry of the result is 0 (plus the bias), its gradients 0 or empty, as in the reference.
EMPTY_SUMS = [
    # (id, function, x shape, w shape, has a tied bias of D (conv) / C (conv_transpose) units, options)
    ("conv1d-C0-g2", "conv", (2, 5, 0), (3, 0, 4), True, {"groups": 2, "padding": 1, "pad_value": -1.0}),
    ("conv2d-D0-g2", "conv", (1, 4, 4, 4), (2, 2, 2, 0), False, {"groups": 2, "stride": 2}),
    ("conv3d-C0-D0-g3", "conv", (1, 3, 3, 3, 0), (2, 2, 2, 0, 0), False, {"groups": 3}),
    ("conv2d-C0-g2-flip", "conv", (2, 3, 3, 0), (2, 2, 0, 6), True, {"groups": 2, "flip": True}),
    ("conv_transpose-1d-C0-g2", "conv_transpose", (1, 3, 4), (3, 0, 4), False, {"groups": 2, "stride": 2}),
    ("conv_transpose-2d-D0-g2", "conv_transpose", (1, 3, 3, 0), (2, 2, 1, 0), True, {"groups": 2}),
    ("conv_transpose-3d-C0-D0-g2-s2", "conv_transpose", (2, 2, 2, 2, 0), (2, 2, 2, 0, 0), True,
     {"groups": 2, "stride": 2, "output_padding": 1}),
]


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("fn, x_shape, w_shape, bias, options", [e[1:] for e in EMPTY_SUMS],
                         ids=[e[0] for e in EMPTY_SUMS])
def test_empty_sums_give_zeros_not_an_internal_error(fn, x_shape, w_shape, bias, options, module, dtype):
    x, w = normal(50, x_shape, dtype), normal(51, w_shape, dtype)
    units = w_shape[-1] if fn == "conv" else w_shape[-2] * options.get("groups", 1)
    args = (x, w, normal(52, (units,), dtype)) if bias else (x, w)
    f = functools.partial(getattr(module, fn), **options)
    y, pull = jax.vjp(f, *args)
    y_ref = getattr(reference, fn)(*args, **options)
    assert y.shape == y_ref.shape
    assert_dtype(y, dtype)
    expected = np.broadcast_to(np.asarray(args[2]), y.shape) if bias else np.zeros(y.shape)
    np.testing.assert_array_equal(y, expected)  # every unit an empty sum, plus the bias
    grads = pull(normal(53, y.shape, dtype))
    assert [g.shape for g in grads] == [a.shape for a in args]
    assert_dtype(grads, dtype)
    for g in grads[:2]:  # x and w meet no term of the sum
        np.testing.assert_array_equal(g, np.zeros(g.shape))


def test_model_params_and_choices_are_checked_before_use():
    """A params dict without a layer was a KeyError, an unhashable choice the cache's TypeError, an
    unknown dtype NumPy's; each is now the library's error naming the argument."""
    model = models.lenet5()
    params = jax.eval_shape(model.init, jax.random.key(0))
    params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), params)
    x = _z(1, 28, 28, 1)
    with pytest.raises(TypeError, match=r"^`lenet5.apply`: `params` must be the dict that init returns; "
                                        r"it has no params\['C1'\]\['b'\]"):
        model.apply({**params, "C1": {"w": params["C1"]["w"]}}, x)
    with pytest.raises(TypeError, match=r"^`lecun1989.apply`: `params` must be the dict .*params\['H1'\]"):
        models.lecun1989().apply(params, _z(1, 16, 16, 1))  # lenet5's params
    with pytest.raises(ValueError, match=r"^`lenet5.apply`: `params\['C5'\]\['w'\]` has shape \(401, 120\); "
                                         r"expected \(400, 120\)"):
        model.apply({**params, "C5": {"w": _z(401, 120), "b": params["C5"]["b"]}}, x)
    with pytest.raises(ValueError, match=r"^`lenet5`: `activation` must be one of .*got \['relu'\]"):
        models.lenet5(activation=["relu"])
    with pytest.raises(ValueError, match=r"^`lecun1989`: `activation` must be one of .*got \['tanh'\]"):
        models.lecun1989(activation=["tanh"])
    assert models.lenet5(activation="tanh") is models.lenet5(activation="tanh")  # still cached
    # the defaults spelled out are the same model (were two: two compilations of one network)
    assert models.lenet5() is models.lenet5(activation="relu", pooling="max")
    assert models.lecun1989() is models.lecun1989(activation="tanh")
    with pytest.raises(TypeError, match="unexpected keyword argument 'foo'"):
        models.lecun1989(foo=1)
    with pytest.raises(TypeError, match=r"^`lenet5.init`: `dtype` must be a floating-point dtype, got 'foo'"):
        model.init(jax.random.key(0), "foo")
    with jax.enable_x64(True):  # None was NumPy's float64 (with x64 off: float32 and JAX's warnings)
        assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(model.init(jax.random.key(0), None)))


def test_sdlm_numbers_and_curvature_trees_are_checked():
    """NumPy numbers are numbers (np.float32 mu/gamma were refused); a string or None learning rate
    was Python's TypeError from `>`, an array's NumPy's ValueError; a curvature of another shape was
    stored as is (set_curvature) or met a broadcasting error (running_curvature)."""
    from jaxcnn import sdlm

    params = {"a": jnp.ones((3,), F32)}
    state = sdlm.sdlm(np.float32(0.1), mu=np.float32(0.02)).init(params)
    new = sdlm.running_curvature(state, {"a": jnp.ones((3,), F32)}, np.float32(0.5))
    np.testing.assert_allclose(new.hessian["a"], np.full(3, 0.5))
    for bad in ("0.1", None, jnp.array([0.1, 0.2], F32), float("inf"), 10**400):
        with pytest.raises(ValueError, match=r"^`sdlm`: `learning_rate` must be positive"):
            sdlm.sdlm(bad)
    with pytest.raises(ValueError, match=r"^`sdlm`: `mu` must be a positive number \(finite\), got inf"):
        sdlm.sdlm(0.1, mu=float("inf"))
    with pytest.raises(ValueError, match=r"^`set_curvature`: `hessian`\['a'\] has shape \(4,\); expected"):
        sdlm.set_curvature(state, {"a": jnp.ones((4,), F32)})
    with pytest.raises(ValueError, match=r"^`running_curvature`: `h_p` must be a pytree like the params"):
        sdlm.running_curvature(state, {"b": jnp.ones((3,), F32)}, 0.5)
    with pytest.raises(ValueError, match=r"^`running_curvature`: `h_p`\['a'\] has shape \(4,\)"):
        sdlm.running_curvature(state, {"a": jnp.ones((4,), F32)}, 0.5)
