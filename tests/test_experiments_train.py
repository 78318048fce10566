"""experiments/lecun1989.py and experiments/lenet5.py run end to end on tiny settings (in-process,
through their main(argv)), and write results.json with the documented keys and the PNG; resume and
divergence; the reporting module beside them (experiments/_report.py)."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import os
import struct
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import datasets, models, registry, train

ROOT = Path(__file__).resolve().parents[1]
RUN_KEYS = {"ops", "epochs", "lr", "history", "final", "train_seconds", "compile_seconds"}
FINAL_KEYS = {"train_error", "test_error", "train_loss", "test_loss"}
MACHINE_KEYS = {"platform", "cpu", "cores", "jax_version", "backend"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def experiments_on_path(monkeypatch):
    """The scripts import their reporting module as ``_report``: when run as
    ``python experiments/x.py`` their folder is on sys.path; here, for these tests only."""
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_experiment_{name}", ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_results(out: Path, ops: list[str], epochs: int) -> dict:
    assert (out / "curves.png").read_bytes()[:8] == PNG_MAGIC
    results = json.loads((out / "results.json").read_text())
    assert MACHINE_KEYS <= set(results["machine"])
    assert [r["ops"] for r in results["runs"]] == ops
    for run in results["runs"]:
        assert RUN_KEYS <= set(run), RUN_KEYS - set(run)
        assert set(run["final"]) == FINAL_KEYS
        assert all(0.0 <= run["final"][k] <= 1.0 for k in ("train_error", "test_error"))
        assert len(run["history"]) == epochs
        assert FINAL_KEYS <= set(run["history"][-1])
        assert run["compile_seconds"] > 0 and run["train_seconds"] > 0
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files
    return results


@pytest.fixture
def standard_promotion():
    """The scripts run under JAX's default promotion (optax's Adam needs it; see test_train)."""
    with jax.numpy_dtype_promotion("standard"):
        yield


def test_lecun1989_tiny_both_paths(tmp_path, capsys):
    lecun1989 = _load("lecun1989")
    out = tmp_path / "run"
    code = lecun1989.main(["--epochs", "2", "--train-per-class", "4", "--test-per-class", "2",
                           "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "LeCun et al. 1989 (paper)" in printed and "jaxcnn.reference (autodiff)" in printed
    assert "max |param diff|" in printed and "PASS" in printed
    results = _check_results(out, ["custom", "reference"], 2)
    agreement = results["agreement"]
    assert agreement["passed"] and agreement["max_param_abs_diff"] <= 1e-4
    assert results["paper"]["test_error"] == 0.05
    assert results["data"]["train_size"] == 40 and results["data"]["test_size"] == 20
    custom, reference = results["runs"]
    assert custom["final_errors"] == reference["final_errors"]
    assert (out / "checkpoints" / "custom.npz").is_file()

    # --resume after the 2 saved passes: one more pass, from the checkpoint
    code = lecun1989.main(["--epochs", "3", "--train-per-class", "4", "--test-per-class", "2",
                           "--out", str(out), "--no-progress", "--ops", "custom", "--resume"])
    assert code == 0
    resumed = _check_results(out, ["custom"], 3)["runs"][0]
    assert resumed["resumed_from_epoch"] == 2
    # "train s" counts the restored passes too (it used to count the last pass only)
    assert resumed["train_seconds"] == pytest.approx(sum(h["seconds"] for h in resumed["history"]), rel=1e-9)
    assert resumed["train_seconds"] > resumed["history"][-1]["seconds"]

    # --resume with fewer passes than the checkpoint holds: refused, and results.json is left alone
    before = (out / "results.json").read_bytes()
    with pytest.raises(ValueError, match=r"`fit`: checkpoint '.*custom.npz' has 3 epochs, `epochs` is 1; "
                                         r"pass epochs >= 3 or start without resume"):
        lecun1989.main(["--epochs", "1", "--train-per-class", "4", "--test-per-class", "2",
                        "--out", str(out), "--no-progress", "--ops", "custom", "--resume"])
    assert (out / "results.json").read_bytes() == before


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_lecun1989_data_dir(tmp_path):
    rng = np.random.default_rng(0)
    for kind, n in (("train", 30), ("t10k", 12)):
        _write_idx(tmp_path / f"{kind}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{kind}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    out = tmp_path / "run"
    code = _load("lecun1989").main(["--epochs", "1", "--data-dir", str(tmp_path), "--train-size", "20",
                                    "--test-size", "10", "--ops", "custom", "--out", str(out),
                                    "--schedule", "linear", "--no-progress"])
    assert code == 0
    results = _check_results(out, ["custom"], 1)
    assert results["data"]["train_size"] == 20 and results["data"]["test_size"] == 10
    assert results["agreement"] is None


def test_lenet5_tiny(tmp_path, capsys, standard_promotion):
    out = tmp_path / "run"
    code = _load("lenet5").main(["--epochs", "1", "--train-per-class", "3", "--test-per-class", "2",
                                 "--batch-size", "10", "--out", str(out), "--ops", "both",
                                 "--pooling", "avg", "--activation", "tanh"])
    assert code == 0
    assert "jaxcnn (custom VJP)" in capsys.readouterr().out
    results = _check_results(out, ["custom", "reference"], 1)
    assert results["runs"][0]["model"] == "lenet5-tanh-avg"
    assert results["agreement"]["max_param_abs_diff"] < 1e-4


def test_random_shift_moves_digits_by_whole_pixels():
    lenet5 = _load("lenet5")
    x = jnp.full((6, 28, 28, 1), -1.0, jnp.float32).at[:, 10:14, 12:15, :].set(1.0)
    shifted = jax.jit(lenet5.random_shift, static_argnums=2)(jax.random.key(0), x, 2)
    assert shifted.shape == x.shape and shifted.dtype == x.dtype
    for image in np.asarray(shifted[..., 0]):
        rows, cols = np.nonzero(image > 0)
        assert len(rows) == 12  # the blob is moved, never cut (it is 2+ pixels from the border)
        assert -2 <= rows.min() - 10 <= 2 and -2 <= cols.min() - 12 <= 2
        assert set(np.unique(image)) == {-1.0, 1.0}  # the border is filled with background
    again = lenet5.random_shift(jax.random.key(0), x, 2)
    assert np.array_equal(np.asarray(again), np.asarray(shifted))  # seeded


def test_lecun1989_nan_stop_still_writes_results(tmp_path, monkeypatch, capsys):
    """A loss that becomes NaN stops the run with exit status 1, and results.json still holds what
    was measured (it used to end in a traceback and write nothing)."""
    lecun1989 = _load("lecun1989")
    out = tmp_path / "run"
    argv = ["--train-per-class", "4", "--test-per-class", "2", "--out", str(out), "--no-progress",
            "--ops", "custom"]
    assert lecun1989.main(["--epochs", "1", *argv]) == 0
    clean = datasets.lecun1989_data

    def poisoned(**kwargs):
        x_tr, y_tr, x_te, y_te = clean(**kwargs)
        x_tr = x_tr.copy()
        x_tr[3, 5, 5, 0] = np.nan  # the same run, continued on data with one NaN pixel
        return x_tr, y_tr, x_te, y_te

    monkeypatch.setattr(datasets, "lecun1989_data", poisoned)
    assert lecun1989.main(["--epochs", "3", "--resume", *argv]) == 1
    err = capsys.readouterr().err
    assert "became nan at epoch 2" in err and "keeps epoch 1" in err and "Lower the learning rate" in err
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "diverged" and results["agreement"] is None
    (run,) = results["runs"]
    assert "became nan at epoch 2" in run["diverged"] and run["checkpoint_epoch"] == 1
    assert [h["epoch"] for h in run["history"]] == [1] and set(run["final"]) == FINAL_KEYS
    assert (out / "curves.png").read_bytes()[:8] == PNG_MAGIC


def test_lecun1989_agreement_counts_errors_after_every_pass():
    """The paths agree pass by pass when their error *counts* match (the check used to round the
    error rates themselves, so that any two rates below 50% agreed)."""
    lecun1989 = _load("lecun1989")
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}

    def run(test_errors):  # 40 train / 20 test digits; the last pass's counts equal
        history = [{"train_error": 0.1, "test_error": e} for e in test_errors]
        return {"history": history, "final_errors": {"train": 4, "test": round(test_errors[-1] * 20)},
                "_params": params}

    same = lecun1989.compare({"custom": run([0.2, 0.1]), "reference": run([0.2, 0.1])}, 40, 20)
    assert same["same_error_rates_every_pass"] and same["passed"] and same["max_param_abs_diff"] == 0.0
    apart = lecun1989.compare({"custom": run([0.2, 0.1]), "reference": run([0.25, 0.1])}, 40, 20)
    assert not apart["same_error_rates_every_pass"] and apart["same_final_error_counts"]
    assert apart["passed"]  # reported, not required: the final counts and parameters decide
    moved = {"custom": run([0.1]), "reference": {**run([0.1]), "_params": {**params, "b": jnp.full(3, 1e-3)}}}
    assert not lecun1989.compare(moved, 40, 20)["passed"]  # 1e-3 > the 1e-4 tolerance
    assert lecun1989.compare({"custom": run([0.1])}, 40, 20) is None  # one path: nothing to compare


def test_experiment_choices_come_from_the_op_table():
    lenet5, lecun1989 = _load("lenet5"), _load("lecun1989")
    for activation in registry.ACTIVATIONS:
        for pooling in models.LENET5_POOLINGS:
            args = lenet5.parse_args(["--activation", activation, "--pooling", pooling])
            assert (args.activation, args.pooling) == (activation, pooling)
    for activation in models.LECUN1989_ACTIVATIONS:
        assert lecun1989.parse_args(["--activation", activation]).activation == activation
    with pytest.raises(SystemExit):
        lenet5.parse_args(["--activation", "gelu"])


# -------------------------------------------------------------------------- experiments/_report.py
def test_figures_and_json_are_written_whole():
    """figures.py and sdlm_figure.py saved their PNGs in place (an interrupted savefig truncated a
    committed figure); sdlm_figure.py wrote bare NaN tokens, which strict JSON readers refuse."""
    import _report

    class Interrupted:  # a figure whose rendering stops half-way
        def savefig(self, target, **options):
            target.write(b"\x89PNG half")
            raise KeyboardInterrupt

    with tempfile.TemporaryDirectory() as folder:
        png, record = Path(folder) / "fig.png", Path(folder) / "r.json"
        png.write_bytes(PNG_MAGIC + b"old")
        with pytest.raises(KeyboardInterrupt):
            _report.save_png(Interrupted(), png, dpi=110)
        assert png.read_bytes() == PNG_MAGIC + b"old" and sorted(os.listdir(folder)) == ["fig.png"]
        _report.write_json(record, {"r": float("nan"), "s": [1.5, float("-inf")], "t": (float("inf"),)})
        assert json.loads(record.read_text(), parse_constant=lambda token: pytest.fail(token)) == {
            "r": "nan", "s": [1.5, "-inf"], "t": ["inf"]}


def test_format_table_aligns_columns_with_a_rule_under_the_header():
    import _report

    rows = [("", "err", "loss"), ("custom", "5.00%", "0.1"), ("reference", "12.50%", "0.25")]
    assert _report.format_table(rows).split("\n") == [
        "              err  loss",
        "-----------------------",
        "custom      5.00%   0.1",
        "reference  12.50%  0.25",
    ]


def test_tqdm_bar_shows_the_test_error_in_100_columns():
    """The postfix used to list every key in full (``train_loss_running=...``), so a 100-column
    terminal cut it before the test error."""
    pytest.importorskip("tqdm")
    import _report

    record = {"epoch": 10, "train_loss_running": 0.01234, "train_loss": 0.004321, "train_error": 0.0123,
              "test_loss": 0.0234, "test_error": 0.0512, "seconds": 2.0}
    screen = io.StringIO()
    bar = _report.TqdmProgress(file=screen, ncols=100)
    assert isinstance(bar, train.Progress)
    bar.start(desc="lecun1989 reference", total=23, initial=0, unit="epoch")
    bar.advance(10)
    bar.epoch_done(record, 23)
    line = screen.getvalue().split("\r")[-1].rstrip("\n")
    bar.close()
    assert len(line) <= 100
    assert "test 5.12% train 1.23%" in line  # both error rates, test first


def test_progress_falls_back_to_plain_lines_without_tqdm(monkeypatch):
    import _report

    assert _report.progress(False) is False
    assert isinstance(_report.progress(True), _report.TqdmProgress)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    assert _report.progress(True) is True  # fit's own PrintProgress

