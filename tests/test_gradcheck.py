"""Tests of `jaxcnn.gradcheck`: the checker must pass correct rules and catch planted wrong ones.

Two planted rules, each a `jax.custom_vjp` with a correct forward and one mistake in the backward:

* `_unrotated_conv2d` — Eq 22 without rotating the kernel (the classic slip: the deltas are
  cross-correlated with ``w`` instead of convolved with it);
* `_tie_spreading_max_pool` — the delta of a window sent to *every* unit equal to the maximum
  instead of the first one (the "winning unit").

and, for the ``gn:`` rows (the second-order rules of `jaxcnn.curvature`), the first-order rule in
place of the second-order one: a `jaxcnn.reference` op, whose VJP under ``second_order()`` still
multiplies ``h`` by ``J`` instead of ``J**2``.
"""

from __future__ import annotations

import json
import types
from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn import gradcheck, reference
from jaxcnn.gradcheck import Case, Family
from tests import tolerances

# ------------------------------------------------------------------------ planted wrong rules
_CONV_DEFAULTS = {"stride": 1, "padding": "VALID", "dilation": 1, "groups": 1, "flip": False,
                  "pad_value": 0.0}


def _unrotated_conv2d(x, w, b=None, **kw):
    """`jaxcnn.conv2d` whose dE/dx forgets the 180-degree rotation of Eq 22 (public API only)."""
    return _unrotated(tuple(sorted({**_CONV_DEFAULTS, **kw}.items())), x, w, b)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _unrotated(kw, x, w, b):
    return jaxcnn.conv2d(x, w, b, **dict(kw))


def _unrotated_fwd(kw, x, w, b):
    return _unrotated(kw, x, w, b), (x, w, b)


def _unrotated_bwd(kw, res, delta):
    x, w, b = res
    kw = dict(kw)
    pad_value = kw.pop("pad_value")
    dw = jaxcnn.conv2d_weight_grad(x, delta, w.shape, pad_value=pad_value, **kw)
    # `conv2d_input_grad` rotates the kernel it is given; handing it rot180(w) cancels the rotation.
    dx = jaxcnn.conv2d_input_grad(delta, jaxcnn.rot180(w), x.shape, **kw)
    db = None if b is None else jnp.sum(delta, axis=(0, 1, 2) if b.ndim == 1 else 0)
    return dx, dw, db


_unrotated.defvjp(_unrotated_fwd, _unrotated_bwd)


def _blocks_up(a):
    """(N, H/2, W/2, C) -> (N, H, W, C): each value repeated over its 2x2 block."""
    return jnp.repeat(jnp.repeat(a, 2, axis=1), 2, axis=2)


@jax.custom_vjp
def _tie_spreading_max_pool(x):
    """2x2 max pool, stride 2, VALID (even H, W) whose backward feeds every tied maximum."""
    n, h, w, c = x.shape
    return jnp.max(x.reshape(n, h // 2, 2, w // 2, 2, c), axis=(2, 4))


def _tie_spreading_fwd(x):
    y = _tie_spreading_max_pool(x)
    return y, (x, y)


def _tie_spreading_bwd(res, delta):
    x, y = res
    return (jnp.where(x == _blocks_up(y), _blocks_up(delta), jnp.zeros_like(x)),)


_tie_spreading_max_pool.defvjp(_tie_spreading_fwd, _tie_spreading_bwd)


def _normal(seed, shape, dtype=jnp.float32):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape).astype(jnp.dtype(dtype)))


def _ties(seed, shape):
    """Values in {-1, -0.5, 0, 0.5, 1}: most 2x2 blocks hold a tied maximum."""
    return jnp.asarray((np.random.default_rng(seed).integers(-2, 3, shape) * 0.5).astype(np.float32))


CONV_KW = {"stride": 2, "padding": "SAME", "dilation": (1, 2), "groups": 2, "flip": True,
           "pad_value": -1.0}


def _conv_args(dtype=jnp.float32):
    x = _normal(0, (2, 9, 8, 4), dtype)
    w = _normal(1, (3, 2, 2, 6), dtype)
    b = _normal(2, (5, 4, 6), dtype)  # untied: (H_out, W_out, D) for SAME, stride 2
    return x, w, b


# ---------------------------------------------------------------------- errors and tolerances
def test_tolerance_table_is_the_test_suites():
    assert tolerances.RTOL is gradcheck.RTOL and tolerances.rtol_for is gradcheck.rtol_for  # one table
    assert dict(gradcheck.RTOL) == {"float64": 1e-10, "float32": 1e-5, "float16": 1e-2, "bfloat16": 5e-2}
    assert gradcheck.rtol_for(jnp.float32) == 1e-5 and gradcheck.rtol_for(jnp.dtype(jnp.bfloat16)) == 5e-2
    with pytest.raises(ValueError, match="no tolerance for dtype int32"):
        gradcheck.rtol_for(jnp.int32)


def test_array_errors_by_hand():
    expected = np.array([1.0, 0.0, -10.0])
    actual = np.array([1.0, 1e-6, -10.0 + 1e-4])
    max_abs, max_rel = gradcheck.array_errors(actual, expected)
    # scale max|e| = 10: rel = [0, 1e-6 / (0 + 10), 1e-4 / (10 + 10)]
    assert max_abs == pytest.approx(1e-4)
    assert max_rel == pytest.approx(5e-6)
    # a small array is judged on its own scale: 15% off is 0.15 / 2, however small (it was 1e-7 / 2
    # when the scale was floored at 1, within float32's 1e-5)
    assert gradcheck.array_errors(expected * 1.15e-6, expected * 1e-6)[1] == pytest.approx(0.075)
    assert gradcheck.array_errors(np.zeros(2), np.zeros(2)) == (0.0, 0.0)
    assert gradcheck.array_errors(np.array([0.0, 1e-30]), np.zeros(2))[1] > 1e200  # zeros met by zeros
    # a comparison holding larger values floors the scale, up to 1 (`comparison_floor`)
    floored = gradcheck.array_errors(expected * 1.15e-6, expected * 1e-6, 1.0)[1]
    assert floored == pytest.approx(1.5e-6, rel=1e-4)
    assert gradcheck.comparison_floor((np.array([0.5, -0.2]), [np.array([1e-6])])) == 0.5
    assert gradcheck.comparison_floor({"y": np.array([3.0, np.inf])}) == 1.0
    # the scale itself: the largest finite |entry| (an inf no longer makes it infinite), or the floor
    assert gradcheck.array_scale(np.array([3.0, -np.inf, np.nan]), 0.5) == 3.0
    assert gradcheck.array_scale(np.array([1e-6]), 0.25) == 0.25 and 0 < gradcheck.array_scale(np.zeros(2))
    assert gradcheck.array_errors(np.array([np.nan, np.inf]), np.array([np.nan, np.inf])) == (0.0, 0.0)
    assert gradcheck.array_errors(np.array([np.nan, 1.0]), np.array([0.0, 1.0])) == (np.inf, np.inf)
    assert gradcheck.array_errors(np.zeros((0, 3)), np.zeros((0, 3))) == (0.0, 0.0)
    with pytest.raises(ValueError, match="shape"):
        gradcheck.array_errors(np.zeros(3), np.zeros(4))


def test_relative_error_is_the_test_suites_criterion():
    """rel <= rtol exactly when tests/tolerances' |a-e| <= rtol (|e| + max|e|) holds, at any scale."""
    rng = np.random.default_rng(0)
    for size in (3.0, 1e-6):
        e = rng.standard_normal(50) * size
        a = e + rng.standard_normal(50) * 1e-4 * size
        _, rel = gradcheck.array_errors(a, e)
        scale = float(np.max(np.abs(e)))
        chex.assert_trees_all_close(a, e, rtol=rel * 1.001, atol=rel * 1.001 * scale)
        with pytest.raises(AssertionError):
            chex.assert_trees_all_close(a, e, rtol=rel * 0.999, atol=rel * 0.999 * scale)
        with pytest.raises(AssertionError):  # the suite's own check, at float32's 1e-5 (rel ~ 1e-4)
            tolerances.assert_close(a, e, dtype=jnp.float32)


# ------------------------------------------------------------------------------ compare_vjp
def test_a_wrong_rule_of_a_small_function_fails_in_float32():
    """Outputs and gradients all ~1e-6, the rule 15% off: it passed when every scale was floored at 1
    (errors of ~1e-7 against float32's 1e-5, in absolute terms)."""
    @jax.custom_vjp
    def wrong(x):
        return 1e-6 * jnp.sin(x)

    wrong.defvjp(lambda x: (wrong(x), x), lambda x, g: (1.15e-6 * jnp.cos(x) * g,))
    x = _normal(0, (4, 5), jnp.float32)
    res = gradcheck.compare_vjp(wrong, lambda x: 1e-6 * jnp.sin(x), (x,), seed=0)
    assert res.forward[0].passed and not res.passed
    assert res.grads[0].max_rel > 0.05 and res.grads[0].max_abs < 1e-5
    # finite differences too (their scale was never below 1 either); the right rule passes
    fd = gradcheck.check_finite_differences(wrong, lambda x: 1e-6 * jnp.sin(x), (x,), seed=0)
    assert not fd.custom[0].passed and fd.custom[0].max_rel > 0.05 and fd.reference[0].passed
    assert fd.custom[0].max_abs < 1e-6  # under FD_RTOL in absolute terms: the old check passed it


def test_correct_conv2d_passes_with_tiny_errors():
    x, w, b = _conv_args()
    res = gradcheck.compare_vjp(partial(jaxcnn.conv2d, **CONV_KW), partial(reference.conv2d, **CONV_KW),
                                (x, w, b), seed=3)
    assert res.passed, res
    assert [s.name for s in res.grads] == ["x", "w", "b"]
    assert [s.name for s in res.forward] == ["output"]
    assert res.grad("b").shape == (5, 4, 6) and res.grad("b").dtype == "float32"
    assert res.worst_rel < 1e-6 and res.seed == 3
    assert all(s.rtol == 1e-5 for s in res.stats)


def test_correct_conv2d_passes_in_float64(x64):
    x, w, b = _conv_args(jnp.float64)
    res = gradcheck.compare_vjp(partial(jaxcnn.conv2d, **CONV_KW), partial(reference.conv2d, **CONV_KW),
                                (x, w, b))
    assert res.passed, res
    assert res.worst_rel < 1e-12
    assert all(s.rtol == 1e-10 and s.dtype == "float64" for s in res.stats)


def test_unrotated_kernel_is_reported_on_x_only():
    x, w, b = _conv_args()
    res = gradcheck.compare_vjp(partial(_unrotated_conv2d, **CONV_KW), partial(reference.conv2d, **CONV_KW),
                                (x, w, b))
    assert not res.passed
    assert res.failures() == ["x"]
    assert res.grad("x").max_rel > 1e-2
    assert res.grad("w").max_rel < 1e-6 and res.forward[0].max_rel < 1e-6


def test_tie_spreading_max_pool_is_reported_on_ties_only():
    ref = partial(reference.max_pool, window=2)
    tied = gradcheck.compare_vjp(_tie_spreading_max_pool, ref, (_ties(0, (2, 6, 6, 3)),))
    assert not tied.passed and tied.failures() == ["x"]
    assert tied.grad("x").max_rel > 1e-2
    untied = gradcheck.compare_vjp(_tie_spreading_max_pool, ref, (_normal(0, (2, 6, 6, 3)),))
    assert untied.passed, untied
    # the library's own max pool routes a tie to the first maximum, like the reference
    assert gradcheck.compare_vjp(partial(jaxcnn.max_pool, window=2), ref, (_ties(0, (2, 6, 6, 3)),)).passed


def test_max_pool_second_order_at_ties_is_the_exact_transpose():
    """The VJP of max_pool's VJP w.r.t. the cotangent is the transpose of that (linear) VJP, ties
    and padding included: the reason d2:max_pool may skip ties (see the next test)."""
    x = _ties(3, (2, 5, 6, 3))
    f = partial(jaxcnn.max_pool, window=(3, 2), stride=(2, 1), padding="SAME")
    y, vjp = jax.vjp(f, x)

    def first(u):
        return vjp(u)[0]

    c = _normal(4, x.shape)
    matrix = jax.jacfwd(first)(jnp.zeros_like(y)).reshape(x.size, y.size)  # the VJP, materialised
    exact = (matrix.T @ c.ravel()).reshape(y.shape)
    np.testing.assert_array_equal(jax.vjp(first, y)[1](c)[0], exact)


def test_reference_max_pool_second_order_is_inconsistent_at_ties():
    """Tripwire for the JAX issue that keeps deliberate ties out of d2:max_pool: autodiff's JVP of
    lax.reduce_window(max) (and so its VJP of the VJP) picks another tied unit than its VJP. When
    this starts failing, JAX agrees with itself: put ties back into d2:max_pool."""
    x = jnp.asarray([[0.0, 1.0], [1.0, 1.0]]).reshape(1, 2, 2, 1)
    t = jnp.asarray([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    kw = {"window": 2, "stride": (2, 1), "padding": ((0, 0), (0, 1))}
    results = {}
    for name, module in (("custom", jaxcnn), ("reference", reference)):
        y, vjp = jax.vjp(partial(module.max_pool, **kw), x)
        results[name] = jax.vjp(lambda u, vjp=vjp: vjp(u)[0], y)[1](t)[0].ravel().tolist()
    assert results["custom"] == [2.0, 2.0]  # t at the first maximum of each window, as the VJP routes
    assert results["reference"] == [3.0, 2.0]
    assert jax.jvp(partial(reference.max_pool, **kw), (x,), (t,))[1].ravel().tolist() == [3.0, 2.0]


def test_cotangent_seeded_or_given_and_shared():
    x, w, _ = _conv_args()
    f, g = partial(jaxcnn.conv2d, **CONV_KW), partial(reference.conv2d, **CONV_KW)
    u = _normal(9, (2, 5, 4, 6))
    given = gradcheck.compare_vjp(f, partial(_unrotated_conv2d, **CONV_KW), (x, w), cotangent=u)
    assert given.seed is None and not given.passed  # the planted rule as the *reference* side
    a = gradcheck.compare_vjp(f, g, (x, w), seed=5)
    b = gradcheck.compare_vjp(f, g, (x, w), seed=5, jit=False)
    assert a.passed and b.passed and a.seed == 5
    with pytest.raises(ValueError, match="cotangent"):
        gradcheck.compare_vjp(f, g, (x, w), cotangent=u[:1])


def test_pytree_arguments_integer_labels_and_argnums():
    params = {"w": _normal(0, (6, 4)), "b": _normal(1, (4,))}
    x = _normal(2, (3, 6))
    labels = jnp.asarray([0, 3, 1], jnp.int32)

    def loss(ops):
        def f(params, x, labels):
            return ops.softmax_cross_entropy(ops.dense(x, params["w"], params["b"]), labels)

        return f

    res = gradcheck.compare_vjp(loss(jaxcnn), loss(reference), (params, x, labels))
    assert res.passed, res
    assert [s.name for s in res.grads] == ["params['b']", "params['w']", "x"]  # labels: integer, held
    only = gradcheck.compare_vjp(loss(jaxcnn), loss(reference), (params, x, labels), argnums=1,
                                 argnames=("p", "inputs", "t"))
    assert [s.name for s in only.grads] == ["inputs"]
    with pytest.raises(TypeError, match="not floating point"):
        gradcheck.compare_vjp(loss(jaxcnn), loss(reference), (params, x, labels), argnums=2)


def test_dtype_and_shape_mismatches_are_problems(x64):
    x = _normal(0, (3, 4), jnp.float64)
    res = gradcheck.compare_vjp(lambda x: jaxcnn.tanh(x).astype(jnp.float32), reference.tanh, (x,))
    assert not res.passed
    assert res.problems and "float32" in res.problems[0] and "float64" in res.problems[0]


def test_library_validation_errors_propagate():
    x = _normal(0, (1, 3, 3, 1))
    w = _normal(1, (5, 5, 1, 1))  # larger than the input with VALID padding
    with pytest.raises(ValueError, match="conv2d"):
        gradcheck.compare_vjp(jaxcnn.conv2d, reference.conv2d, (x, w))


# ------------------------------------------------------------------------- finite differences
def test_finite_differences_pass_for_correct_rules():
    x, w, b = _conv_args()
    res = gradcheck.check_finite_differences(partial(jaxcnn.conv2d, **CONV_KW),
                                             partial(reference.conv2d, **CONV_KW), (x, w, b), seed=1)
    assert res.passed, res
    assert [s.name for s in res.custom] == ["x", "w", "b"] == [s.name for s in res.reference]
    assert all(len(s.fd) == len(s.vjp) == 2 for s in res.stats)
    assert res.worst_rel < 1e-8
    assert not jax.config.jax_enable_x64  # enabled for the check only


def test_finite_differences_catch_the_unrotated_kernel():
    x, w, b = _conv_args()
    res = gradcheck.check_finite_differences(partial(_unrotated_conv2d, **CONV_KW),
                                             partial(reference.conv2d, **CONV_KW), (x, w, b))
    assert not res.passed
    assert [s.name for s in res.custom if not s.passed] == ["x"]
    assert all(s.passed for s in res.reference)  # the oracle agrees with the differences


def test_finite_differences_of_a_smooth_nonlinear_function():
    x = _normal(0, (2, 5)) * 2
    res = gradcheck.check_finite_differences(jaxcnn.scaled_tanh, reference.scaled_tanh, (x,), directions=3)
    assert res.passed and res.directions == 3
    assert res.worst_rel < 1e-8


# ------------------------------------------------------------------------------------- CLI
def _planted_registry():
    ops = types.SimpleNamespace(**{n: getattr(jaxcnn, n) for n in jaxcnn.__all__})
    ops.conv2d = _unrotated_conv2d
    return gradcheck.default_registry(ops)


def _load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_cli_small_correct_run_passes_and_writes_json(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    rows = "conv2d,max_pool,relu,softmax_cross_entropy,d2:tanh,vmap:dense,fd:sigmoid"
    code = gradcheck.main(["--configs", "60", "--seed", "1", "--only", rows, "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "backend cpu" in text and "matmul precision highest" in text and "result: ok" in text
    for row in rows.split(","):
        assert f"\n{row} " in text
    data = _load(out)
    assert data["tool"] == "jaxcnn.gradcheck" and data["passed"] and data["backend"] == "cpu"
    assert data["precision"] == "highest" and data["dtype"] == "float32" and data["seed"] == 1
    checked = [c for c in data["configs"] if c["status"] != "invalid"]
    assert len(checked) == sum(r["configs"] for r in data["summary"].values()) >= 14
    for c in checked:
        assert c["status"] == "pass"
        assert set(c) >= {"function", "kind", "options", "dtype", "seed", "shapes", "errors", "rtol",
                          "worst_abs", "worst_rel", "status"}
    conv_cfg = next(c for c in checked if c["function"] == "conv2d")
    assert {"x", "w"} <= set(conv_cfg["shapes"]) and conv_cfg["dtype"] == "float32"
    assert set(conv_cfg["errors"]["grads"]) >= {"x", "w"} and "output" in conv_cfg["errors"]["forward"]
    fd_cfg = next(c for c in checked if c["function"] == "fd:sigmoid")
    assert fd_cfg["dtype"] == "float64" and fd_cfg["kind"] == "fd"
    assert not jax.config.jax_enable_x64
    assert not list(tmp_path.glob(".*.tmp"))  # `atomic_write`'s temporary file was renamed


def test_cli_catches_planted_rule_and_replays_exactly(tmp_path, capsys):
    registry = _planted_registry()
    sweep, replay = tmp_path / "sweep.json", tmp_path / "replay.json"
    code = gradcheck.main(["--configs", "40", "--only", "conv2d,d2:conv2d,relu", "--json", str(sweep),
                           "--no-progress"], registry=registry)
    text = capsys.readouterr().out
    assert code == 1 and "result: FAIL" in text
    data = _load(sweep)
    failed = [c for c in data["configs"] if c["status"] == "fail"]
    assert failed and {c["function"] for c in failed} == {"conv2d", "d2:conv2d"}
    assert data["summary"]["relu"]["failed"] == 0
    assert all("x" in c["errors"]["grads"] and c["errors"]["grads"]["x"]["rel"] > 1e-5 for c in failed
               if c["function"] == "conv2d")

    assert gradcheck.main(["--replay", str(sweep), "--json", str(replay)], registry=registry) == 1
    text = capsys.readouterr().out
    assert f"{len(failed)} configs replayed, {len(failed)} failed" in text
    again = _load(replay)["configs"]
    key = ("function", "options", "dtype", "seed", "shapes", "errors", "worst_rel")
    assert [tuple(json.dumps(c[k], sort_keys=True) for k in key) for c in again] == \
        [tuple(json.dumps(c[k], sort_keys=True) for k in key) for c in failed]

    # with the rule fixed, the same configs pass
    assert gradcheck.main(["--replay", str(sweep)]) == 0
    assert f"{len(failed)} configs replayed, 0 failed" in capsys.readouterr().out


def _toy_family(invalid_every_other: bool, invalid_always: bool = False) -> Family:
    def draw(rng, i):  # a window of 5 over a 4x4 input: the library's ValueError
        refused = invalid_always or invalid_every_other and i % 2
        return {"x_shape": [2, 4, 4, 1], "window": 5 if refused else 2}

    def build(o, dtype):
        args = (o["window"],)
        kw = {"window": args[0]}

        def make_args(seed):
            rng = np.random.default_rng(seed)
            return (jnp.asarray(rng.standard_normal(o["x_shape"]).astype(jnp.dtype(dtype))),)

        return Case(partial(jaxcnn.avg_pool, **kw), partial(reference.avg_pool, **kw), make_args, ("x",),
                    (0,), (True,))

    return Family("toy_pool", draw, build, configs=12, values_per_shape=3)


def test_cli_counts_invalid_configs_as_skipped_and_runs_float64(tmp_path, capsys):
    unavailable = Family("toy_net", lambda rng, i: {}, lambda o, d: None, 5, 5,
                         unavailable=lambda: "jaxcnn.models has no toy_net()")
    registry = {"toy_pool": _toy_family(True), "toy_net": unavailable}
    out = tmp_path / "toy.json"
    code = gradcheck.main(["--dtype", "float64", "--json", str(out), "--no-progress"], registry=registry)
    text = capsys.readouterr().out
    assert code == 0, text
    assert "note: toy_net skipped: jaxcnn.models has no toy_net()" in text
    summary = _load(out)["summary"]
    assert summary["toy_pool"]["configs"] == 12 and summary["toy_pool"]["invalid"] == 3
    assert summary["toy_pool"]["rtol"] == 1e-10 and summary["toy_net"]["status"] == "n/a"
    invalid = [c for c in _load(out)["configs"] if c["status"] == "invalid"]
    assert len(invalid) == 3 and all(c["seed"] is None and "window" in c["message"] for c in invalid)
    assert not jax.config.jax_enable_x64  # restored after the float64 sweep


def test_cli_fails_a_row_that_checked_fewer_configs_than_planned(tmp_path, capsys):
    """A row whose draws the library refuses checks nothing: the sweep fails (it said "result: ok",
    exit 0, when a regression in the shared validation disabled a whole row)."""
    out = tmp_path / "short.json"
    code = gradcheck.main(["--json", str(out), "--no-progress"],
                          registry={"toy_pool": _toy_family(False, invalid_always=True)})
    text = capsys.readouterr().out
    assert code == 1 and "result: FAIL" in text
    assert "short of their planned configs (the library refused the draws): toy_pool" in text
    summary = _load(out)["summary"]["toy_pool"]
    assert summary["configs"] == 0 and summary["short"] and summary["status"] == "FAIL (short)"
    assert not _load(out)["passed"]


def test_replay_of_a_config_the_library_now_refuses_fails(tmp_path, capsys):
    """A stored failure that the library now refuses cannot be checked: not a pass (it was one)."""
    stored = tmp_path / "old.json"
    config = {"function": "toy_pool", "kind": "vjp", "options": {"x_shape": [2, 4, 4, 1], "window": 5},
              "dtype": "float32", "seed": 7, "status": "fail", "worst_rel": 1.0}
    stored.write_text(json.dumps({"tool": "jaxcnn.gradcheck", "format": gradcheck.sweep.FORMAT,
                                  "configs": [config]}))
    code = gradcheck.main(["--replay", str(stored)], registry={"toy_pool": _toy_family(False)})
    assert code == 1 and "1 now refused by the library (not checked)" in capsys.readouterr().out


def test_cli_usage_errors(capsys):
    assert gradcheck.main(["--only", "no_such_row"]) == 2
    assert gradcheck.main(["--configs", "0"]) == 2
    assert gradcheck.main(["--dtype", "int8"]) == 2
    assert gradcheck.main(["--list", "--only", "d2:*"]) == 0
    listed = capsys.readouterr().out
    assert "d2:conv2d" in listed and "\nconv2d " not in listed


def test_cli_refuses_before_any_work(tmp_path, capsys):
    """A --json path that cannot be written was found after the sweep (its results lost, exit 1 as
    for a failed config); a --replay file that is not one was a raw traceback; empty strings meant
    "not given" (a full sweep for --only ""); a negative seed was NumPy's error; --replay ignored the
    options that choose a sweep."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "list.json").write_text("[1]")
    no_seed = {"tool": "jaxcnn.gradcheck", "format": gradcheck.sweep.FORMAT, "configs": [
        {"function": "relu", "options": {}, "dtype": "float32", "status": "fail"}]}
    (tmp_path / "no_seed.json").write_text(json.dumps(no_seed))
    cases = [
        (["--json", str(tmp_path / "dir")], "' exists and is not a file"),
        (["--json", str(tmp_path / "file" / "out.json")], "file' is not a folder"),
        (["--replay", str(tmp_path / "missing.json")], "missing.json': no such file"),
        (["--replay", str(tmp_path / "dir")], "dir': a folder, not a file"),
        (["--replay", str(tmp_path / "file")], "not a jaxcnn.gradcheck --json file (format 1): JSONDecode"),
        (["--replay", str(tmp_path / "list.json")], "list.json': not a jaxcnn.gradcheck --json file"),
        (["--replay", str(tmp_path / "no_seed.json")], "a seed >= 0 where the status is fail or error"),
        (["--replay", str(tmp_path / "list.json"), "--seed", "1", "--dtype", "float64"],
         "--seed, --dtype cannot be used with it"),
        (["--only", ""], "--only must not be empty"), (["--only", ","], "--only ',' matches no row"),
        (["--json", " "], "--json must not be empty"), (["--seed", "-1"], "--seed must be >= 0, got -1"),
        (["--configs", str(10**15)], "--configs must be between 1 and 1000000"),
    ]
    for argv, message in cases:
        assert gradcheck.main([*argv, "--no-progress"]) == 2, argv
        err = capsys.readouterr()
        assert message in err.err and "configs checked" not in err.out, (argv, err)


def test_configs_count_the_selected_rows(tmp_path, capsys):
    """``--configs N`` is the total of the rows that ``--only`` selects (it used to be spread over
    every row before the filter: ``--only conv2d --configs 20`` checked 4 configs)."""
    out = tmp_path / "two.json"
    argv = ["--only", "relu,tanh", "--configs", "10", "--json", str(out), "--no-progress"]
    assert gradcheck.main(argv) == 0
    assert "10 configs in 2 rows" in capsys.readouterr().out
    summary = _load(out)["summary"]
    assert set(summary) == {"relu", "tanh"}
    assert summary["relu"]["configs"] == 5 and summary["tanh"]["configs"] == 5


# ------------------------------------------------------------------------------ the table
def test_default_table_rows_and_counts():
    """The default sweep: 114 rows, 2,025 configs (17 gn: rows, 98 configs); every function's derived
    rows follow from its entry."""
    registry = gradcheck.default_registry()
    assert len(registry) == 114 and sum(f.configs for f in registry.values()) == 2025
    gn = [f for f in registry.values() if f.kind == "gn"]
    assert len(gn) == 17 and sum(f.configs for f in gn) == 98 and all(f.name.startswith("gn:") for f in gn)
    assert {"gn:conv1d", "gn:conv3d", "gn:conv_padding_mode", "gn:conv_transpose", "gn:leaky_relu",
            "gn:l2_pool", "gn:flatten", "gn:softmax_cross_entropy"} <= set(registry)
    assert (registry["conv2d"].configs, registry["d2:conv2d"].configs, registry["vmap:conv2d"].configs,
            registry["fd:conv2d"].configs) == (240, 40, 30, 4)
    assert registry["fd:lenet5"].kind == "fd" and registry["fd:lenet5"].dtype == "float64"
    assert "vmap:sigmoid" not in registry and "d2:flatten" not in registry


def test_a_new_function_is_one_entry():
    toy = _toy_family(False)
    entry = gradcheck.Entry("toy_pool", toy.draw, lambda ops, o, dtype: toy.build(o, dtype), 12, 3,
                            d2=(4, 2), vmap=(5, 5))
    rows = gradcheck.cases.expand([entry], jaxcnn)
    assert list(rows) == ["toy_pool", "d2:toy_pool", "vmap:toy_pool", "fd:toy_pool"]
    assert [(f.configs, f.values_per_shape, f.kind) for f in rows.values()] == \
        [(12, 3, "vjp"), (4, 2, "vjp"), (5, 5, "vjp"), (3, 3, "fd")]
    case = rows["d2:toy_pool"].build(rows["d2:toy_pool"].draw(np.random.default_rng(0), 0), "float32")
    assert case.argnames == ("x", "u")  # the VJP of the VJP: the cotangent is an argument
    assert gradcheck.compare_vjp(case.custom, case.reference, case.make_args(1), argnums=case.argnums).passed


# ------------------------------------------------------------------- second-order rules (gn:)
def test_compare_gauss_newton_passes_the_rules_and_catches_first_order_ones():
    x = _normal(0, (3, 5)) * 2
    ok = gradcheck.compare_gauss_newton(jaxcnn.tanh, reference.tanh, (x,), seed=2)
    assert ok.passed and ok.seed == 2 and [s.name for s in ok.grads] == ["x"] and not ok.forward
    assert ok.worst_rel < 1e-6 and ok.grads[0].rtol == 1e-5
    wrong = gradcheck.compare_gauss_newton(reference.tanh, reference.tanh, (x,))  # J, not J**2
    assert not wrong.passed and wrong.failures() == ["x"] and wrong.worst_rel > 1e-2
    # a loss: the Hessian's diagonal; integer labels held fixed
    labels = jnp.asarray([0, 3, 1], jnp.int32)
    loss = gradcheck.compare_gauss_newton(jaxcnn.softmax_cross_entropy, reference.softmax_cross_entropy,
                                          (x, labels), loss=True)
    assert loss.passed and [s.name for s in loss.grads] == ["logits"]
    assert not gradcheck.compare_gauss_newton(jaxcnn.softmax_cross_entropy, reference.softmax_cross_entropy,
                                              (x, labels)).passed  # squared Jacobian: not a loss's oracle
    with pytest.raises(ValueError, match="`h` must match"):
        gradcheck.compare_gauss_newton(jaxcnn.tanh, reference.tanh, (x,), h=x[:1])


def test_gauss_newton_of_a_copy_padded_conv_is_lecuns_chain(x64):
    """reflect/replicate/circular: the rule drops the cross terms of a unit and its copy in one
    window, so it matches the chained oracle (`padding_mode_chain`), not the exact squared Jacobian."""
    from jaxcnn import _curvature_cases

    kw = {"padding": ((1, 1), (1, 2)), "padding_mode": "replicate"}
    x, w = _normal(0, (1, 3, 3, 4), jnp.float64), _normal(1, (3, 1, 4, 4), jnp.float64)
    f, g = partial(jaxcnn.conv, **kw), partial(reference.conv, **kw)
    chain = _curvature_cases.padding_mode_chain(x.shape, w.shape, **kw)
    options = {"stride": (1, 1), "dilation": (1, 1), "groups": 1, "flip": False}
    assert chain == ("edge", ((1, 1), (1, 2)), options)
    assert gradcheck.compare_gauss_newton(f, g, (x, w), chain=chain).passed
    exact = gradcheck.compare_gauss_newton(f, g, (x, w))
    assert exact.failures() == ["x"] and exact.grad("w").max_rel < 1e-12


def test_cli_gn_rows_pass_and_catch_a_first_order_rule(tmp_path, capsys):
    rows = "gn:tanh,gn:dense,gn:conv_padding_mode,gn:squared_error"
    out = tmp_path / "gn.json"
    assert gradcheck.main(["--only", rows, "--configs", "8", "--json", str(out), "--no-progress"]) == 0
    assert "result: ok" in capsys.readouterr().out
    data = _load(out)
    checked = [c for c in data["configs"] if c["status"] != "invalid"]
    assert {c["function"] for c in checked} == set(rows.split(","))
    for c in checked:
        assert c["kind"] == "gn" and c["status"] == "pass" and c["rtol"] == 1e-5
        assert set(c["errors"]) == {"curvature", "problems"} and not c["errors"]["problems"]
    dense = next(c for c in checked if c["function"] == "gn:dense")
    assert {"x", "w"} <= set(dense["errors"]["curvature"])

    # dense and tanh with their first-order rules (jaxcnn.reference: J, not J**2) under second_order
    ops = types.SimpleNamespace(**{n: getattr(jaxcnn, n) for n in jaxcnn.__all__})
    ops.dense, ops.tanh = reference.dense, reference.tanh
    bad = tmp_path / "bad.json"
    argv = ["--only", rows, "--configs", "8", "--json", str(bad), "--no-progress"]
    assert gradcheck.main(argv, registry=gradcheck.default_registry(ops)) == 1
    assert "result: FAIL" in capsys.readouterr().out
    summary = _load(bad)["summary"]
    assert summary["gn:dense"]["failed"] == summary["gn:dense"]["configs"] > 0
    assert summary["gn:tanh"]["failed"] == summary["gn:tanh"]["configs"] > 0
    assert summary["gn:conv_padding_mode"]["failed"] == summary["gn:squared_error"]["failed"] == 0
    # the replay re-runs the failures with the correct rules: they pass
    assert gradcheck.main(["--replay", str(bad)]) == 0
