"""Strict configuration for every test: no silent dtype or rank promotion, warnings are errors
(pyproject), float64 switched on only inside the tests that ask for it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_platforms", "cpu")


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    """Run a test in float32 and in float64 (x64 on for that test only, always restored)."""
    if request.param == "float64":
        with jax.enable_x64(True):
            yield jnp.float64
    else:
        yield jnp.float32


@pytest.fixture
def x64():
    """float64 enabled for one test, restored afterwards."""
    with jax.enable_x64(True):
        yield
