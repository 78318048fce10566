"""experiments/figures.py draws every figure, from real computations, in --quick mode."""

from __future__ import annotations

import importlib.util
import pathlib
import struct
import sys

import pytest

pytest.importorskip("matplotlib")

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "figures.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def figures():
    """experiments/figures.py as a module (registered: its dataclasses look themselves up)."""
    spec = importlib.util.spec_from_file_location("jaxcnn_experiments_figures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a valid PNG has first."""
    assert data[:8] == PNG_MAGIC, "not a PNG (magic bytes)"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13, "PNG without a leading IHDR chunk"
    return struct.unpack(">II", data[16:24])


def test_quick_run_writes_every_figure(figures, tmp_path, capsys):
    assert figures.main(["--quick", "--out", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(figures.FIGURES)
    assert len(figures.FIGURES) == 8
    for name in figures.FIGURES:
        data = (tmp_path / name).read_bytes()
        width, height = png_size(data)
        assert data[-12:-4] == b"\x00\x00\x00\x00IEND", f"{name}: truncated PNG"
        assert len(data) > 20_000, f"{name}: only {len(data)} bytes"
        assert width >= 600 and height >= 300, f"{name}: {width}x{height} pixels"
    out = capsys.readouterr().out
    # the numbers the figures show are computed, and printed as they are drawn
    assert "dE/dw [[14, 17], [23, 26]]" in out  # Eq 13 worked by hand in tests/test_conv.py
    assert "dE/do [[1, 0, -4], [6, 5, -6], [9, 15, 4]]" in out  # Eq 22, idem


def test_check_refuses_a_false_identity(figures):
    with pytest.raises(AssertionError, match="does not hold"):
        figures.check("1 == 2", 1.0, 2.0)


def test_run_without_checkpoint_is_a_clear_error(figures, tmp_path):
    with pytest.raises(SystemExit, match="no checkpoint found"):
        figures._load_run(tmp_path)


def test_run_checkpoint_of_lecun1989_is_loaded(figures, tmp_path):
    """--run DIR reads DIR/checkpoints/custom.npz, the file experiments/lecun1989.py writes."""
    import jax
    import numpy as np
    import optax

    from jaxcnn import models, train

    params = models.lecun1989().init(jax.random.key(3))
    train.save_checkpoint(
        tmp_path / "checkpoints" / "custom.npz",
        {"params": params, "opt_state": optax.sgd(0.1).init(params)},
        {"epoch": 2, "config": {"model": "lecun1989-scaled_tanh"}},
    )
    loaded, activation, note = figures._load_run(tmp_path)
    assert activation == "scaled_tanh" and "pass 2" in note
    np.testing.assert_array_equal(loaded["H1"]["w"], params["H1"]["w"])
