"""jaxcnn.registry: the one table of op names that models, gradcheck and the experiments read."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

import jaxcnn
from jaxcnn import activations, gradcheck, losses, models, pooling, reference, registry

ROWS = gradcheck.default_registry()
TABLE = [(kind, name) for kind, names in (("activation", registry.ACTIVATIONS), ("pool", registry.POOLS),
                                          ("loss", registry.LOSSES)) for name in names]


def _first_valid_case(family):
    """The first static configuration of the row that the library accepts (some draws are invalid
    on purpose: the sweep counts them)."""
    rng = np.random.default_rng(0)
    for i in range(20):
        try:
            return family.build(family.draw(rng, i), "float32")
        except ValueError:
            continue
    raise AssertionError(f"{family.name}: no valid configuration in 20 draws")


def test_the_table_is_the_modules_all():
    assert registry.ACTIVATIONS == tuple(activations.__all__) == models.LENET5_ACTIVATIONS
    assert registry.POOLS == tuple(pooling.__all__)
    assert registry.LOSSES == tuple(losses.__all__)
    assert len(TABLE) == len({name for _, name in TABLE}) >= 10
    assert {name for _, name in TABLE} <= set(jaxcnn.__all__)  # re-exported from the modules' __all__


@pytest.mark.parametrize(("kind", "name"), TABLE, ids=[name for _, name in TABLE])
def test_every_name_is_in_jaxcnn_and_reference_and_has_a_gradcheck_family(kind, name):
    custom, twin = getattr(jaxcnn, name), getattr(reference, name)
    assert callable(custom) and callable(twin) and custom is not twin
    assert inspect.signature(custom).parameters.keys() == inspect.signature(twin).parameters.keys()
    assert ROWS[name].kind == "vjp" and ROWS[f"fd:{name}"].kind == "fd"
    assert f"d2:{name}" in ROWS  # second order too
    case = _first_valid_case(ROWS[name])
    assert twin in (case.reference, getattr(case.reference, "func", None))  # the row checks this op


def test_gradcheck_finds_options_from_the_signature():
    """leaky_relu's ``negative_slope`` and avg_pool's ``count_include_pad`` are drawn without being
    named in the gradcheck table."""
    slopes = {ROWS["leaky_relu"].draw(np.random.default_rng(s), 0)["negative_slope"] for s in range(20)}
    assert slopes == {0.01, 0.1, 0.3}  # 1, 10 and 30 times the default
    assert "negative_slope" not in ROWS["relu"].draw(np.random.default_rng(0), 0)
    pads = {ROWS["avg_pool"].draw(np.random.default_rng(0), i)["count_include_pad"] for i in range(8)}
    assert pads == {True, False}
    assert "count_include_pad" not in ROWS["max_pool"].draw(np.random.default_rng(0), 0)


def test_an_option_named_like_a_draw_key_gets_its_own_key(monkeypatch):
    """An activation ``f(x, scale=2.0)`` must not overwrite the draw's own ``scale`` (of the input)."""
    from jaxcnn.gradcheck import table

    monkeypatch.setattr(reference, "relu", lambda x, scale=2.0, inplace=False: x)
    assert table._keywords("relu", float) == {"kw_scale": ("scale", 2.0)}
    options = table._draw_activation("relu", np.random.default_rng(0), 0)
    assert options["kw_scale"] in (2.0, 20.0, 60.0) and options["scale"] in (1.0, 3.0)
    assert table._keywords("relu", bool) == {"inplace": ("inplace", False)}


def test_lookup_and_choose():
    assert registry.lookup(jaxcnn, "relu", registry.ACTIVATIONS, fn="f", arg="activation") is jaxcnn.relu
    assert registry.lookup(reference, "max_pool", registry.POOLS, fn="f", arg="pooling") is reference.max_pool
    expected = f"`f`: `activation` must be one of {registry.ACTIVATIONS}, got 'gelu'"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        registry.lookup(jaxcnn, "gelu", registry.ACTIVATIONS, fn="f", arg="activation")
    with pytest.raises(ValueError, match="`loss` must be one of"):
        registry.choose("f", "loss", "relu", registry.LOSSES)  # a real op, from another table
    with pytest.raises(ValueError, match="got None"):
        registry.choose("f", "loss", None, registry.LOSSES)
    with pytest.raises(TypeError, match="`f`: `ops` must provide tanh"):
        registry.lookup(object(), "tanh", registry.ACTIVATIONS, fn="f", arg="activation")
