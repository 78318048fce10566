"""experiments/flax_digits.py (a Flax NNX CNN on jaxcnn's rules) runs end to end on tiny settings."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import jax
import pytest

pytest.importorskip("flax")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def experiments_on_path(monkeypatch):
    """The script imports its reporting module as ``_report`` from its folder (on sys.path when run)."""
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))


def _load():
    path = ROOT / "experiments" / "flax_digits.py"
    spec = importlib.util.spec_from_file_location("_experiment_flax_digits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flax_digits_tiny(capsys):
    module = _load()
    # the scripts run under JAX's default promotion (optax's Adam needs it)
    with jax.numpy_dtype_promotion("standard"):
        code = module.main(["--epochs", "2", "--train-per-class", "8", "--test-per-class", "3",
                            "--batch-size", "16"])
    printed = capsys.readouterr().out
    assert code == 0
    assert printed.count("epoch ") == 2 and "conv: jaxcnn" in printed
    first, second = (float(v) for v in re.findall(r"mean train loss ([0-9.]+)", printed))
    assert second < first  # it learns (2.59 -> 2.06 with these settings)
    assert "80 train / 30 test digits" in printed


@pytest.mark.parametrize("argv, says", [(["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
                                        (["--epochs", "-1"], "--epochs must be >= 1, got -1"),
                                        (["--lr", "0"], "--lr must be finite and > 0, got 0.0"),
                                        (["--lr", "inf"], "--lr must be finite and > 0, got inf"),
                                        (["--seed", "-1"], "--seed must be finite and >= 0, got -1"),
                                        (["--test-per-class", "201"], "--train-per-class + "
                                         "--test-per-class must be at most the 500 embedded digits of each "
                                         "class, got 300 + 201")])
def test_flax_digits_refuses_bad_settings(argv, says, capsys):
    module = _load()
    with pytest.raises(SystemExit) as exit_info:
        module.parse_args(argv)
    assert exit_info.value.code == 2 and says in capsys.readouterr().err
