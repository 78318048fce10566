"""The second-order (diagonal Gauss-Newton) rules of `jaxcnn.curvature`: exact per op against the
squared Jacobian of the reference, the trace-time mode, and LeCun's approximation on lecun1989."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn import _curvature_cases as cases
from jaxcnn import curvature, models
from tests.tolerances import assert_close, assert_dtype, normal


@pytest.mark.parametrize("case", cases.CASES, ids=[c.name for c in cases.CASES])
def test_rule_is_the_squared_jacobian(case, x64):
    args = cases.arguments(case, seed=3)
    h = cases.seed_h(case, args, seed=4)
    got, want = jax.jit(lambda a, h: (cases.second_order(case, a, h), cases.oracle(case, a, h)))(args, h)
    if case.chain is not None:
        # a copy-pad (reflect/replicate/circular) then the conv: LeCun's rule through the two steps,
        # exact only where no window holds a unit and its copy
        chained = jax.jit(lambda a, h: cases.chained_oracle(case, a, h))(args, h)
        assert_close(got, chained)
        assert_close(got[1:], want[1:])  # the kernel and bias rules stay exact
        return
    assert_close(got, want)
    assert_dtype(got, jnp.float64)
    assert all(bool(jnp.all(g >= 0)) for g in got)  # h >= 0 in, h >= 0 out


def test_padding_mode_chain_from_the_options(x64):
    """`padding_mode_chain` (the gradient cross-check's gn:conv_padding_mode builds its chains with
    it) resolves the options of each copy-padded case to its hand-written chain."""
    chained = [c for c in cases.CASES if c.chain is not None]
    assert len(chained) == 3
    for case in chained:
        derived = cases.padding_mode_chain(case.shapes[0], case.shapes[1], **case.custom.keywords)
        assert derived[:2] == case.chain[:2]  # jnp.pad mode, (lo, hi) per spatial dim
        args = cases.arguments(case, seed=5)
        h = cases.seed_h(case, args, seed=6)
        want = cases.chained_oracle(case, args, h)
        assert_close(cases.chained_oracle(case._replace(chain=derived), args, h), want)


def test_first_order_rules_unchanged_outside_the_mode(x64):
    # the same ops traced outside the mode are gradients again (J, not J**2)
    x = normal(0, (2, 3), jnp.float64)
    h = normal(1, (2, 3), jnp.float64)
    _, vjp = jax.vjp(jaxcnn.tanh, x)
    assert_close(vjp(h)[0], h * (1 - jnp.tanh(x) ** 2))


def test_mode_is_baked_in_when_traced(x64):
    x = normal(0, (2, 3), jnp.float64)
    h = jnp.ones((2, 3), jnp.float64)
    with curvature.second_order():
        _, vjp = jax.vjp(jaxcnn.tanh, x)
    assert not curvature.active()
    assert_close(vjp(h)[0], (1 - jnp.tanh(x) ** 2) ** 2)  # called outside: still the traced rule


def test_bad_arguments_are_the_librarys_errors():
    x, t = normal(0, (2, 3), jnp.float32), normal(1, (2, 4), jnp.float32)
    params = {"w": normal(2, (3, 4), jnp.float32)}

    def loss(p, x, t):
        return jaxcnn.squared_error(jaxcnn.dense(x, p["w"]), t)

    gn = curvature.diag_gauss_newton
    with pytest.raises(TypeError, match="`diag_gauss_newton`: `loss_fn` must be callable"):
        gn("loss", params, x, t)
    for bad in (3, -1, "a", 1.0, True):
        with pytest.raises(ValueError, match=r"`argnums` must be an int in \[0, 2\]"):
            gn(loss, params, x, t, argnums=bad)
    with pytest.raises(TypeError, match=r"`params\['w'\]` must be a floating-point array, got dtype int32"):
        gn(loss, {"w": jnp.zeros((3, 4), jnp.int32)}, x, t)
    with pytest.raises(ValueError, match=r"`loss_fn` must return a floating-point scalar loss, got shape "
                                         r"\(2, 4\) and dtype float32"):
        gn(lambda p, x, t: jaxcnn.dense(x, p["w"]) - t, params, x, t)
    with pytest.raises(ValueError, match=r"scalar loss, got shape \(\) and dtype int32"):  # was jax.grad's
        gn(lambda p, x, t: jnp.sum(jaxcnn.dense(x, p["w"]) > t, dtype=jnp.int32), params, x, t)
    h = gn(loss, params, x, t)  # the checks let a good call through
    assert h["w"].shape == (3, 4) and bool(jnp.all(h["w"] >= 0))


def test_mode_restored_after_an_error():
    with pytest.raises(RuntimeError), curvature.second_order():
        assert curvature.active()
        with curvature.second_order():
            pass
        assert curvature.active()  # nested exit keeps the outer mode
        raise RuntimeError
    assert not curvature.active()


def _lecun_problem(n: int = 2):
    model = models.lecun1989()
    params = model.init(jax.random.key(0), jnp.float64)
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (n, 16, 16, 1)))
    t = -jnp.ones((n, 10), jnp.float64).at[jnp.arange(n), jnp.arange(n)].set(1.0)
    return model, params, x, t


def test_lecun1989_curvature_against_exact_gauss_newton(x64):
    model, params, x, t = _lecun_problem()

    def loss(p):
        return jaxcnn.squared_error(model.apply(p, x), t)

    h = jax.jit(lambda p: curvature.diag_gauss_newton(loss, p))(params)
    # exact Gauss-Newton diagonal of Eq 9 (loss Hessian I): sum over outputs of J**2
    # (one row of the Jacobian at a time: a single compiled reference gradient, indices traced)
    row = jax.jit(jax.grad(lambda p, i, k: model.apply(p, x, ops=jaxcnn.reference)[i, k]))
    rows = [row(params, i, k) for i in range(x.shape[0]) for k in range(10)]
    exact = jax.tree.map(lambda *r: sum(j * j for j in r), *rows)
    # the last two layers see the loss Hessian (the identity) without dropped cross terms: exact
    for layer in ("out", "H3"):
        assert_close(h[layer], exact[layer])
    # below, cross terms are dropped: positive, the same masked zeros, not equal
    for layer in ("H1", "H2"):
        for name in ("w", "b"):
            assert bool(jnp.all(h[layer][name] >= 0))
            assert bool(jnp.all((h[layer][name] == 0) == (exact[layer][name] == 0)))
        assert float(jnp.max(jnp.abs(h[layer]["w"] - exact[layer]["w"]))) > 1e-6


def test_diag_gauss_newton_argnums(x64):
    x = normal(0, (3, 4), jnp.float64)
    w = normal(1, (4, 2), jnp.float64)
    t = normal(2, (3, 2), jnp.float64)
    def loss(x, w):
        return jaxcnn.squared_error(jaxcnn.dense(x, w), t)

    hw = curvature.diag_gauss_newton(loss, w, x, argnums=1)
    assert_close(hw, jnp.sum(x * x, axis=0)[:, None] * jnp.ones((1, 2)))
