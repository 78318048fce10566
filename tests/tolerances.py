"""The comparisons of the test-suite, built on the one per-dtype tolerance table.

`RTOL` and `rtol_for` are `jaxcnn.gradcheck`'s (one table for the tests and for
``python -m jaxcnn.gradcheck``). `rtol` is relative to the magnitude of the expected array: two
arrays agree when ``|actual - expected| <= rtol * (|expected| + S)`` elementwise, with ``S`` the
leaf's largest finite ``|entry|``, or ``min(1, the tree's largest)`` if that is more (`array_scale`):
entries near zero are judged on a scale rather than on their own (sums taken in another order
differ by rounding proportional to the terms, not to the result); see `jaxcnn.gradcheck.errors`.
Beside them, what the comparisons are fed: seeded inputs (`normal`) and a compiled value-and-VJP
(`compiled_vjp`).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.gradcheck import RTOL, array_scale, comparison_floor, rtol_for

__all__ = ["RTOL", "assert_close", "assert_dtype", "compiled_vjp", "normal", "rtol_for"]


def assert_close(actual, expected, dtype=None) -> None:
    """Trees agree to the table's tolerance for `dtype` (default: the dtype of `expected`'s leaves)."""
    floor = comparison_floor(expected)

    def one(a, e):
        d = jnp.dtype(dtype) if dtype is not None else jnp.result_type(e)
        rtol = rtol_for(d)
        scale = array_scale(e, floor)
        chex.assert_trees_all_close(
            np.asarray(a, np.float64), np.asarray(e, np.float64), rtol=rtol, atol=rtol * scale
        )

    jax.tree_util.tree_map(one, actual, expected)


def assert_dtype(tree, dtype) -> None:
    """Every leaf of `tree` has `dtype` (JAX does not enforce this for custom rules)."""
    for leaf in jax.tree_util.tree_leaves(tree):
        if jnp.result_type(leaf) != jnp.dtype(dtype):
            raise AssertionError(f"expected dtype {jnp.dtype(dtype)}, got {jnp.result_type(leaf)}")


def normal(seed: int, shape, dtype) -> jax.Array:
    """A seeded standard-normal array of `dtype`, drawn with NumPy in float32, then cast.

    (NumPy rather than `jax.random`: the latter compiles once per new shape, ~0.7 s each on CPU.)
    """
    a = np.random.default_rng(seed).standard_normal(tuple(shape)).astype(np.float32)
    return jnp.asarray(a.astype(jnp.dtype(dtype)))


def compiled_vjp(f, *args, seed: int):
    """``(f(*args), vjp(ct))``: the value and the pull-back to every argument of the cotangent
    ``ct = normal(seed, y.shape, y.dtype)``, as one compiled program (op by op every operation
    compiles on its own: tests/test_pooling_options.py took 46 s that way, 12 s this way)."""

    @jax.jit
    def run(*args):
        y, pull = jax.vjp(f, *args)
        return y, pull(normal(seed, y.shape, y.dtype))

    return run(*args)
