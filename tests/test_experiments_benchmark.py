"""experiments/benchmark.py's summary arithmetic on made-up rows (no timing): the per-row shares of
the matmul's GFLOP/s, the issue-11 targets, and the rows whose 0.8x-PyTorch target would outrun the
faster float32 matmul (`beyond_matmul`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def benchmark(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))  # it imports its `_report` beside it
    path = ROOT / "experiments" / "benchmark.py"
    spec = importlib.util.spec_from_file_location("_experiment_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(name: str, flops: float, custom: float, reference: float, torch: float | None) -> dict:
    times = {"custom": [custom] * 3, "reference": [reference] * 3}
    if torch is not None:
        times["torch"] = [torch] * 3
    return {"name": name, "kind": "conv", "flops": flops, "times": times,
            "memory": {"custom": 1.0, "reference": 2.0}}


def test_summary_shares_and_the_rows_beyond_the_matmul(benchmark):
    # 100 GFLOP/s matmul; 1 GFLOP a row. PyTorch at 10 ms = 100 GFLOP/s: 0.8x its time needs 125%;
    # at 20 ms = 50 GFLOP/s: 62.5%, within reach; no PyTorch time: not judged.
    rows = [_row("fast torch", 1e9, 0.012, 0.020, 0.010), _row("slow torch", 1e9, 0.012, 0.020, 0.020),
            _row("no torch", 1e9, 0.012, 0.020, None)]
    targets = benchmark.suite_summary(rows, 100.0)
    assert rows[0]["ratios"]["custom/matmul GFLOP/s"] == pytest.approx(1e9 / 0.012 / 1e9 / 100.0)
    assert rows[0]["ratios"]["torch/matmul GFLOP/s"] == pytest.approx(1.0)
    assert rows[1]["ratios"]["torch/matmul GFLOP/s"] == pytest.approx(0.5)
    assert "torch/matmul GFLOP/s" not in rows[2]["ratios"]
    assert targets["max custom/torch"]["value"] == pytest.approx(1.2)
    assert targets["geomean custom/torch"]["met"] is False
    assert benchmark.beyond_matmul(rows, 100.0, None) == pytest.approx({"fast torch": 1.25})
    # a faster PyTorch matmul is the yardstick when it is the faster one: 1.25 * 100 / 125 = 1.0, not beyond
    assert benchmark.beyond_matmul(rows, 100.0, 125.0) == {}
    assert benchmark.beyond_matmul(rows, 100.0, 80.0) == pytest.approx({"fast torch": 1.25})


def test_suite_table_prints_the_shares_and_the_rows_beyond(benchmark):
    rows = [_row("fast torch", 1e9, 0.012, 0.020, 0.010), _row("slow torch", 1e9, 0.012, 0.020, 0.020)]
    result = {"machine": {"cpu": "cpu", "cores": 2, "jax_version": "0", "backend": "cpu"}, "torch": "2",
              "torch_threads": 2, "torch_skipped": False, "load_average": {"before": [0.0], "after": [0.0]},
              "repeats": 3, "epoch_repeats": 1, "epoch_examples": 1, "matmul_gflops": 100.0,
              "torch_matmul_gflops": 90.0, "rows": rows}
    result["targets"] = benchmark.suite_summary(rows, 100.0)
    result["beyond_matmul"] = benchmark.beyond_matmul(rows, 100.0, 90.0)
    text = benchmark.suite_table(result)
    assert "XLA's, 2048^3, median; PyTorch's 90.0" in text
    assert "torch %mm" in text and "100%" in text and "50%" in text
    assert "faster float32 matmul on 1 row " in text and "fast torch 125%" in text
    assert "slow torch 62" not in text


def test_memory_ratio_of_a_reference_without_temporaries(benchmark):
    """A `jax.grad` program with no temporaries makes any custom ones fail the memory target (the ratio
    used to be 0.0 there, which always met it); both without any meet it."""
    rows = [_row("some", 1e9, 0.01, 0.02, None), _row("none", 1e9, 0.01, 0.02, None)]
    rows[0]["memory"] = {"custom": 64.0 * 2**20, "reference": 0.0}
    rows[1]["memory"] = {"custom": 0.0, "reference": 0.0}
    targets = benchmark.suite_summary(rows, 100.0)
    assert rows[0]["ratios"]["memory custom/reference"] == 64.0 * 2**20
    assert rows[1]["ratios"]["memory custom/reference"] == 0.0
    assert targets["max temp memory custom/reference"]["met"] is False


@pytest.mark.parametrize("skipped, says", [(True, "not run (--no-torch)"), (False, "not installed")])
def test_tables_say_why_torch_is_missing(benchmark, skipped, says):
    rows = [_row("a", 1e9, 0.01, 0.02, None)]
    result = {"machine": {"cpu": "cpu", "cores": 2, "jax_version": "0", "backend": "cpu"}, "torch": None,
              "torch_threads": None, "torch_skipped": skipped,
              "load_average": {"before": [0.0], "after": [0.0]},
              "repeats": 3, "epoch_repeats": 1, "epoch_examples": 1, "matmul_gflops": 100.0,
              "torch_matmul_gflops": None, "rows": rows}
    result["targets"] = benchmark.suite_summary(rows, 100.0)
    result["beyond_matmul"] = {}
    assert f"torch {says}" in benchmark.suite_table(result)
    legacy = {**result, "rows": [{**rows[0], "name": benchmark.CONV64,
                                  "gflops": {"custom": 1.0, "reference": 1.0}}], "targets": []}
    legacy["rows"][0]["ratios"]["custom/matmul GFLOP/s"] = 0.01
    text = benchmark.table(legacy)
    assert f"torch {says}" in text and "n/a" in text.split("\n")[4]
