"""experiments/flax_digits.py (a Flax NNX CNN on jaxcnn's rules) runs end to end on tiny settings."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import jax
import pytest

pytest.importorskip("flax")
ROOT = Path(__file__).resolve().parents[1]


def test_flax_digits_tiny(capsys):
    path = ROOT / "experiments" / "flax_digits.py"
    spec = importlib.util.spec_from_file_location("_experiment_flax_digits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # the scripts run under JAX's default promotion (optax's Adam needs it)
    with jax.numpy_dtype_promotion("standard"):
        code = module.main(["--epochs", "2", "--train-per-class", "8", "--test-per-class", "3",
                            "--batch-size", "16"])
    printed = capsys.readouterr().out
    assert code == 0
    assert printed.count("epoch ") == 2 and "conv: jaxcnn" in printed
    accuracy = float(re.search(r"test accuracy: ([0-9.]+)", printed).group(1))
    assert 0.0 <= accuracy <= 1.0
    assert "80 train / 30 test digits" in printed
