r"""Benchmark: the article's backward formulas (jaxcnn's custom VJPs) against ``jax.grad`` of
`jaxcnn.reference`, and against PyTorch eager when it is installed.

What is timed, each a median over interleaved repeats after warm-up (every repeat runs custom,
reference and torch one after the other, in a rotating order, so that machine noise hits all
of them alike; JAX results are waited for with ``block_until_ready``):

(a) each op's forward + backward (``jax.vjp`` with a random cotangent, gradients for every
    differentiable input): conv2d at LeNet-5's shapes (C1: 28x28x1 -> 6, 5x5, padding 2; C3:
    14x14x6 -> 16, 5x5) and 64 -> 64 3x3 SAME on 32x32, batch 128; max/avg pool 2x2 and
    relu/tanh on 128x28x28x6;
(b) the LeNet-5 train step at batch 128 (`jaxcnn.models.lenet5`, `jaxcnn.train.make_train_step`,
    ``optax.adam``), custom ops vs reference ops;
(c) one lecun1989 per-example SGD epoch (3000 examples, `jaxcnn.train.make_sgd_epoch`,
    ``optax.sgd``); training time only, compilation apart;
(d) PyTorch eager equivalents of (a)-(c) (``torch.set_num_threads`` = the core count; "torch not
    installed" when absent — torch is never a dependency of jaxcnn);
(e) compiled temporary memory of (b), ``jit(step).lower(...).compile().memory_analysis()``;
(f) achieved GFLOP/s of the 64-channel conv's forward + backward (three convolutions' worth,
    ``2*N*H_out*W_out*k1*k2*C*D`` each) against this machine's float32 matmul (a 2048x2048
    ``jnp.dot`` timed the same way, in the same interleaved loop).

The 1-minute load average before and after the run is recorded: on a shared machine other jobs
slow every column (PyTorch's OpenMP threads most of all), so re-run when it is high.

Ratios are custom / reference time (and custom / torch): below 1 the article's formulas win.

Usage::

    python experiments/benchmark.py [--quick] [--repeats N] [--json PATH]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import _report  # experiments/_report.py: this script's folder is on sys.path
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxcnn
from jaxcnn import models, reference, train

DEFAULT_JSON = "runs/benchmark/benchmark.json"
CONV64 = "conv 64->64 3x3 fwd+bwd"
CONV64_FLOPS = 3 * 2 * 128 * 32 * 32 * 3 * 3 * 64 * 64  # forward, input and weight gradients
MATMUL_FLOPS = 2 * 2048**3
BATCH = 128
EPOCH_EXAMPLES = 3000
LR = 0.01
WARMUP_S = 0.3  # each thunk is also run for at least this long before timing

# The targets, each a ratio from one run: (row, column, bound, "<=" or ">=").
TARGETS = [
    ("LeNet-5 train step", "custom/reference", 0.5, "<="),
    ("LeNet-5 train step", "custom/torch", 1.0, "<="),
    ("LeNet-5 step temp memory", "custom/reference", 0.5, "<="),
    ("lecun1989 epoch", "custom/reference", 1.0, "<="),
    ("lecun1989 epoch", "torch/custom", 20.0, ">="),
    (CONV64, "custom/matmul GFLOP/s", 0.5, ">="),
]


# ------------------------------------------------------------------------------------ timing
def interleaved(
    thunks: dict[str, Callable[[], Any]], repeats: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Wall-clock seconds of each thunk, `repeats` times, the thunks alternated within each repeat.

    Each thunk must block until its work is done. Warm-up: `warmup` calls and at least `WARMUP_S`
    seconds per thunk (the first calls of a torch op or an XLA executable pay for fresh pages).
    The order rotates from repeat to repeat.
    """
    names = list(thunks)
    for name in names:  # compile, and let allocators and thread pools settle
        start, calls = time.perf_counter(), 0
        while calls < warmup or (time.perf_counter() - start < WARMUP_S and calls < 50):
            thunks[name]()
            calls += 1
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            start = time.perf_counter()
            thunks[name]()
            times[name].append(time.perf_counter() - start)
    return times


def jax_thunk(fn: Callable, *args: Any) -> Callable[[], Any]:
    return lambda: jax.block_until_ready(fn(*args))


class Stateful:
    """A thunk that threads state through a function whose state arguments are donated."""

    def __init__(self, fn: Callable, state: tuple, *rest: Any):
        self.fn, self.state, self.rest = fn, state, rest

    def __call__(self) -> None:
        out = self.fn(*self.state, *self.rest)
        self.state = tuple(out[: len(self.state)])
        jax.block_until_ready(out)


# ------------------------------------------------------------------------------------ torch
def load_torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    return torch


def torch_op_thunk(torch: Any, fn: Callable, arrays: list[np.ndarray], ct: np.ndarray) -> Callable[[], Any]:
    """Forward + backward of `fn` on NCHW tensors made from NHWC arrays, with cotangent `ct`."""
    tensors = [torch.tensor(np.ascontiguousarray(a), requires_grad=True) for a in arrays]
    ct_t = torch.tensor(np.ascontiguousarray(ct))

    def run() -> None:
        for t in tensors:
            t.grad = None
        fn(*tensors).backward(ct_t)

    return run


def torch_lenet5(torch: Any) -> Any:
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def torch_lecun1989(torch: Any) -> Any:
    """LeCun et al. 1989 in idiomatic PyTorch: -1 padding, untied biases, the H2 connection mask."""
    nn, F = torch.nn, torch.nn.functional
    mask = torch.tensor(models.h2_connection_mask().T[:, :, None, None], dtype=torch.float32)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w1 = nn.Parameter(torch.randn(12, 1, 5, 5) * 0.1)
            self.b1 = nn.Parameter(torch.zeros(12, 8, 8))
            self.w2 = nn.Parameter(torch.randn(12, 12, 5, 5) * 0.1)
            self.b2 = nn.Parameter(torch.zeros(12, 4, 4))
            self.h3 = nn.Linear(192, 30)
            self.out = nn.Linear(30, 10)

        def forward(self, x):
            h = torch.tanh(F.conv2d(F.pad(x, (2, 2, 2, 2), value=-1.0), self.w1, stride=2) + self.b1)
            h = torch.tanh(F.conv2d(F.pad(h, (2, 2, 2, 2), value=-1.0), self.w2 * mask, stride=2) + self.b2)
            return torch.tanh(self.out(torch.tanh(self.h3(h.flatten(1)))))

    return Net()


# ------------------------------------------------------------------------------------- parts
def rng_array(seed: int, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def op_cases(torch: Any) -> list[tuple[str, Callable[[Any], Callable], list[np.ndarray], Callable | None]]:
    """(name, ops -> fn, NHWC/HWIO inputs, the torch fn on NCHW/OIHW tensors or None)."""
    x1, w1 = rng_array(1, (BATCH, 28, 28, 1)), rng_array(2, (5, 5, 1, 6), 0.2)
    x3, w3 = rng_array(3, (BATCH, 14, 14, 6)), rng_array(4, (5, 5, 6, 16), 0.1)
    x64, w64 = rng_array(5, (BATCH, 32, 32, 64)), rng_array(6, (3, 3, 64, 64), 0.05)
    xp = rng_array(7, (BATCH, 28, 28, 6))
    tf = None if torch is None else torch.nn.functional

    def tconv(**kw):
        return None if tf is None else (lambda x, w: tf.conv2d(x, w, **kw))

    def tpool(name):
        return None if tf is None else (lambda x: getattr(tf, name)(x, 2))

    return [
        ("conv C1 28x28x1->6 5x5 pad2", lambda ops: functools.partial(ops.conv2d, padding=2), [x1, w1],
         tconv(padding=2)),
        ("conv C3 14x14x6->16 5x5", lambda ops: ops.conv2d, [x3, w3], tconv()),
        (CONV64, lambda ops: functools.partial(ops.conv2d, padding="SAME"), [x64, w64],
         tconv(padding=1)),
        ("max_pool 2x2", lambda ops: functools.partial(ops.max_pool, window=2), [xp], tpool("max_pool2d")),
        ("avg_pool 2x2", lambda ops: functools.partial(ops.avg_pool, window=2), [xp], tpool("avg_pool2d")),
        ("relu", lambda ops: ops.relu, [xp], None if torch is None else torch.relu),
        ("tanh", lambda ops: ops.tanh, [xp], None if torch is None else torch.tanh),
    ]


def vjp_fn(fn: Callable) -> Callable:
    """jit of forward + backward: the output and the pull-back of `ct` for every input."""

    def run(ct, *args):
        y, pull = jax.vjp(fn, *args)
        return y, pull(ct)

    return jax.jit(run)


def to_nchw(a: np.ndarray) -> np.ndarray:
    """NHWC activations -> NCHW, HWIO kernels -> OIHW (rank 4 only; the layout torch uses)."""
    return a.transpose(0, 3, 1, 2) if a.shape[0] == BATCH else a.transpose(3, 2, 0, 1)


def bench_ops(torch: Any, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for name, make, arrays, torch_fn in op_cases(torch):
        fn_c, fn_r = make(jaxcnn), make(reference)
        args = [jnp.asarray(a) for a in arrays]
        y_shape = jax.eval_shape(fn_r, *args).shape
        ct = rng_array(11, y_shape)
        thunks = {
            "custom": jax_thunk(vjp_fn(fn_c), jnp.asarray(ct), *args),
            "reference": jax_thunk(vjp_fn(fn_r), jnp.asarray(ct), *args),
        }
        if torch_fn is not None:
            thunks["torch"] = torch_op_thunk(torch, torch_fn, [to_nchw(a) for a in arrays], to_nchw(ct))
        if name == CONV64:  # (f): the matmul it is compared with, in the same interleaved loop
            thunks["matmul"] = matmul_thunk()
        rows.append({"name": name, "kind": "op", "times": interleaved(thunks, repeats)})
    return rows


def bench_lenet5(torch: Any, repeats: int) -> tuple[dict[str, Any], dict[str, Any]]:
    model = models.lenet5()
    x = jnp.asarray(rng_array(21, (BATCH, 28, 28, 1)))
    y = jnp.asarray(np.random.default_rng(22).integers(0, 10, BATCH))
    thunks, memory = {}, {}
    for name, ops in (("custom", jaxcnn), ("reference", reference)):
        apply_fn = functools.partial(model.apply, ops=ops)
        step = train.make_train_step(apply_fn, ops.softmax_cross_entropy, optax.adam(1e-3))
        params = model.init(jax.random.key(0))
        state = (params, optax.adam(1e-3).init(params))
        memory[name] = [float(step.lower(*state, x, y).compile().memory_analysis().temp_size_in_bytes)]
        thunks[name] = Stateful(step, state, x, y)
    if torch is not None:
        net = torch_lenet5(torch)
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        xt = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2).copy())
        yt = torch.tensor(np.asarray(y).astype(np.int64))
        loss_fn = torch.nn.CrossEntropyLoss()

        def torch_step() -> None:
            opt.zero_grad()
            loss_fn(net(xt), yt).backward()
            opt.step()

        thunks["torch"] = torch_step
    step_row = {"name": "LeNet-5 train step", "kind": "step", "times": interleaved(thunks, repeats)}
    memory_row = {"name": "LeNet-5 step temp memory", "kind": "bytes", "times": memory}
    return step_row, memory_row


def bench_lecun1989(torch: Any, repeats: int, examples: int) -> dict[str, Any]:
    model = models.lecun1989(activation="tanh")
    x = jnp.asarray(np.tanh(rng_array(31, (examples, 16, 16, 1))))
    labels = np.random.default_rng(32).integers(0, 10, examples)
    t = jnp.asarray(np.where(np.eye(10)[labels] > 0, 1.0, -1.0).astype(np.float32))
    order = jnp.arange(examples)
    thunks = {}
    for name, ops in (("custom", jaxcnn), ("reference", reference)):
        apply_fn = functools.partial(model.apply, ops=ops)
        epoch = train.make_sgd_epoch(apply_fn, ops.squared_error, optax.sgd(LR))
        params = model.init(jax.random.key(0))
        thunks[name] = Stateful(epoch, (params, optax.sgd(LR).init(params)), x, t, order)
    if torch is not None:
        net = torch_lecun1989(torch)
        opt = torch.optim.SGD(net.parameters(), LR)
        xt = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2).copy())
        tt = torch.tensor(np.asarray(t))

        def torch_epoch() -> None:
            for i in range(examples):  # per-example SGD, the paper's protocol
                opt.zero_grad()
                (0.5 * ((net(xt[i : i + 1]) - tt[i : i + 1]) ** 2).sum()).backward()
                opt.step()

        thunks["torch"] = torch_epoch
    # torch's eager epoch takes seconds: fewer repeats keep the run short, still interleaved
    return {"name": "lecun1989 epoch", "kind": "epoch", "examples": examples,
            "times": interleaved(thunks, repeats, warmup=1)}


def matmul_thunk() -> Callable[[], Any]:
    """A float32 2048x2048 ``jnp.dot``: this machine's matmul throughput, `MATMUL_FLOPS` a call."""
    a, b = jnp.asarray(rng_array(41, (2048, 2048))), jnp.asarray(rng_array(42, (2048, 2048)))
    return jax_thunk(jax.jit(jnp.dot), a, b)


# ------------------------------------------------------------------------------------ report
def medians(row: dict[str, Any]) -> dict[str, float]:
    return {k: float(np.median(v)) for k, v in row["times"].items()}


def ratio(m: dict[str, float], a: str, b: str) -> float | None:
    return m[a] / m[b] if a in m and b in m and m[b] > 0 else None


def summarize(rows: list[dict[str, Any]]) -> float:
    """Medians and ratios of every row; returns the matmul GFLOP/s measured beside the big conv."""
    matmul_gflops = float("nan")
    for row in rows:
        m = row["median"] = medians(row)
        row["ratios"] = {
            "custom/reference": ratio(m, "custom", "reference"),
            "custom/torch": ratio(m, "custom", "torch"),
            "torch/custom": ratio(m, "torch", "custom"),
        }
        if row["name"] == CONV64:
            matmul_gflops = MATMUL_FLOPS / m.pop("matmul") / 1e9
            row["flops"], row["matmul_gflops"] = CONV64_FLOPS, matmul_gflops
            row["gflops"] = {k: CONV64_FLOPS / v / 1e9 for k, v in m.items()}
            row["ratios"]["custom/matmul GFLOP/s"] = row["gflops"]["custom"] / matmul_gflops
    return matmul_gflops


def check_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name = {r["name"]: r for r in rows}
    out = []
    for name, column, bound, sense in TARGETS:
        value = by_name.get(name, {}).get("ratios", {}).get(column)
        met = None if value is None else (value <= bound if sense == "<=" else value >= bound)
        out.append({"row": name, "ratio": column, "target": f"{sense} {bound:g}", "value": value, "met": met})
    return out


def fmt_time(row: dict[str, Any], col: str, torch_missing: bool) -> str:
    if col not in row["median"]:
        return "torch not installed" if col == "torch" and torch_missing else "-"
    v = row["median"][col]
    if row["kind"] == "bytes":
        return f"{v / 2**20:.2f} MiB"
    return f"{v * 1e3:.2f} ms" if v < 10 else f"{v:.2f} s"


def fmt_ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def table(result: dict[str, Any]) -> str:
    m, torch_missing = result["machine"], result["torch"] is None
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores; jax {m['jax_version']} ({m['backend']}); "
        f"torch {result['torch'] or 'not installed'}",
        f"medians of {result['repeats']} interleaved repeats after warm-up"
        f" (lecun1989 epoch: {result['epoch_repeats']} repeats of {result['epoch_examples']} examples);"
        f" 1-min load average {result['load_average']['before'][0]:.2f} before,"
        f" {result['load_average']['after'][0]:.2f} after",
        "",
    ]
    head = ("", "custom (Eq 14/22)", "jax.grad(reference)", "torch eager", "custom/ref", "custom/torch")
    body = [
        (r["name"], fmt_time(r, "custom", torch_missing), fmt_time(r, "reference", torch_missing),
         "-" if r["kind"] == "bytes" else fmt_time(r, "torch", torch_missing),
         fmt_ratio(r["ratios"]["custom/reference"]), fmt_ratio(r["ratios"]["custom/torch"]))
        for r in result["rows"]
    ]
    widths = [max(len(str(c[i])) for c in [head, *body]) for i in range(len(head))]
    for line in [head, *body]:
        lines.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(line, widths, strict=True))))
    conv = next(r for r in result["rows"] if r["name"] == CONV64)
    g = conv["gflops"]
    lines += [
        "",
        f"{CONV64}: custom {g['custom']:.1f} GFLOP/s, reference {g['reference']:.1f}"
        + (f", torch {g['torch']:.1f}" if "torch" in g else "")
        + f"; float32 matmul (2048^3, timed in the same loop) {result['matmul_gflops']:.1f} GFLOP/s"
        f" -> custom at {conv['ratios']['custom/matmul GFLOP/s']:.0%} of matmul",
        "",
        "targets:",
    ]
    for t in result["targets"]:
        state = "n/a" if t["met"] is None else ("met" if t["met"] else "NOT met")
        value = "-" if t["value"] is None else f"{t['value']:.2f}"
        lines.append(f"  {t['row']}: {t['ratio']} = {value} (target {t['target']}) {state}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats and a 300-example epoch")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 15, quick 5)")
    p.add_argument("--json", default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    args = p.parse_args(argv)
    repeats = args.repeats or (5 if args.quick else 15)
    if repeats < 1:
        p.error("--repeats must be >= 1")
    examples = 300 if args.quick else EPOCH_EXAMPLES
    epoch_repeats = max(3, repeats // 3)
    torch = load_torch()

    load_before = os.getloadavg()
    rows = bench_ops(torch, repeats)
    rows.extend(bench_lenet5(torch, repeats))
    rows.append(bench_lecun1989(torch, epoch_repeats, examples))
    matmul_gflops = summarize(rows)
    result = {
        "machine": _report.machine_info(),
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "torch": None if torch is None else torch.__version__,
        "repeats": repeats,
        "epoch_repeats": epoch_repeats,
        "epoch_examples": examples,
        "matmul_gflops": matmul_gflops,
        "rows": rows,
    }
    result["targets"] = check_targets(rows)
    text = table(result)
    print(text)
    result["table"] = text
    train.atomic_write(args.json, json.dumps(result, indent=1).encode())
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
