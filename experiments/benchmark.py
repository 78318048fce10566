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

The shapes suite (the default, issue 11): each row is one layer's forward + backward (the loss
``sum(y * ct)`` and the gradient w.r.t. every input) — ResNet-18's convolutions at batch 8 (3x3 at
56/28/14/7, the stride-2 3x3 downsampling convs and their 1x1 stride-2 projections), a 1-D audio
front end, a 3-D conv, transposed convs in 1-3 dims, depthwise and grouped 3x3 — then the LeNet-5
and a wider LeNet (32/64 maps) train step and one lecun1989 per-example epoch. Columns: medians
of interleaved repeats (custom rules, ``jax.grad`` of `jaxcnn.reference`, PyTorch eager with as
many threads as XLA's CPU pool, i.e. the core count), achieved GFLOP/s (three convolutions' worth)
and its share of this machine's float32 matmul GFLOP/s (XLA's, 2048^3, timed before and after), PyTorch's
share too, and the compiled temporary memory
(``jit(f).lower(...).compile().memory_analysis().temp_size_in_bytes``) of custom vs ``jax.grad``.
Below the targets the table lists the rows on which 0.8x PyTorch's time would mean computing the
row's FLOPs faster than the faster float32 matmul, XLA's or PyTorch's, both timed before and after
the rows (`beyond_matmul`). ``--suite legacy`` gives the README's older rows (a)-(f) above.

Usage::

    python experiments/benchmark.py [--suite shapes|legacy] [--only SUBSTR,...] [--repeats N]
                                    [--quick] [--no-torch] [--json PATH]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
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
from jaxcnn import _io, models, reference, train

DEFAULT_JSON = "runs/benchmark/benchmark.json"
SUITE_JSON = "runs/benchmark/suite.json"
CONV64 = "conv 64->64 3x3 fwd+bwd"
CONV64_FLOPS = 3 * 2 * 128 * 32 * 32 * 3 * 3 * 64 * 64  # forward, input and weight gradients
MATMUL_FLOPS = 2 * 2048**3
BATCH = 128
EPOCH_EXAMPLES = 3000
LR = 0.01
WARMUP_S = 0.3  # each thunk is also run for at least this long before timing
FAULTS_SHOWN = 256  # the suite's table lists rows whose median timed call faulted more (1 MiB of pages)

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

    Each timed call follows an untimed call of the same thunk, as in a training loop: PyTorch's
    OpenMP threads keep spinning after an op and slowed the JAX call after them (depthwise row:
    14.9 ms right after torch calls, 11.7 ms without torch, 9.9 ms after its own warm call; sleeping
    0.2 s between calls instead slowed both frameworks, torch 3-D from 10.5 to 20.5 ms).
    Each thunk must block until its work is done. Warm-up: `warmup` calls and at least `WARMUP_S`
    seconds per thunk (the first calls of a torch op or an XLA executable pay for fresh pages).
    The order rotates from repeat to repeat.
    """
    return timed(thunks, repeats, warmup)["times"]


def _minor_faults() -> int:
    """Minor page faults of this process so far (0 where `resource` is missing: Windows)."""
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed(thunks: dict[str, Callable[[], Any]], repeats: int, warmup: int = 2) -> dict[str, Any]:
    """`interleaved`'s ``times``, and ``faults``: the minor page faults of each timed call. A call
    that maps fresh memory pays a fault per 4 KiB page (glibc maps an allocation above 32 MiB afresh
    unless its heap has room; XLA allocates its temporaries on every call): before relu's masks
    became bits (`jaxcnn.activations._PACK_UNITS`), wide LeNet's step faulted ~9,000 times a call in
    a process of its own and ~900 times in this suite's, where earlier rows had left the heap room,
    and so ran faster here than alone."""
    names = list(thunks)
    for name in names:  # compile, and let allocators and thread pools settle
        start, calls = time.perf_counter(), 0
        while calls < warmup or (time.perf_counter() - start < WARMUP_S and calls < 50):
            thunks[name]()
            calls += 1
    times: dict[str, list[float]] = {name: [] for name in names}
    faults: dict[str, list[int]] = {name: [] for name in names}
    for r in range(repeats):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            thunks[name]()  # untimed: the previous framework's spinning worker threads settle first
            before, start = _minor_faults(), time.perf_counter()
            thunks[name]()
            times[name].append(time.perf_counter() - start)
            faults[name].append(_minor_faults() - before)
    return {"times": times, "faults": faults}


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
            **timed(thunks, repeats, warmup=1)}


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


def torch_absent(result: dict[str, Any]) -> str:
    """Why a result has no PyTorch times: skipped on request, or not installed."""
    return "not run (--no-torch)" if result.get("torch_skipped") else "not installed"


def fmt_time(row: dict[str, Any], col: str, torch_missing: bool) -> str:
    if col not in row["median"]:
        return "n/a" if col == "torch" and torch_missing else "-"
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
        f"torch {result['torch'] or torch_absent(result)}",
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


# ------------------------------------------------------------------------ the shapes suite
class ConvCase:
    """One conv (or transposed conv) layer: forward + backward of ``sum(y * ct)``, every gradient.

    Shapes channels last: `x_shape` ``(N, *spatial, C_in)``, `w_shape` ``(*k, C/groups, D)`` (for
    `transpose`, x has D channels, as in `jaxcnn.conv_transpose`); `options` go to the call
    unchanged (symmetric int padding only, so that PyTorch takes the same)."""

    def __init__(self, name: str, x_shape: tuple[int, ...], w_shape: tuple[int, ...], *,
                 transpose: bool = False, bias: bool = True, **options: Any):
        self.name, self.x_shape, self.w_shape = name, x_shape, w_shape
        self.transpose, self.bias, self.options = transpose, bias, options
        self.nd = len(w_shape) - 2

    def fn(self, ops: Any) -> Callable:
        call = ops.conv_transpose if self.transpose else ops.conv
        return lambda x, w, b=None: call(x, w, b, **self.options)

    def arrays(self) -> list[np.ndarray]:
        fan_in = math.prod(self.w_shape[:-1])
        out = [rng_array(51, self.x_shape), rng_array(52, self.w_shape, 1 / math.sqrt(fan_in))]
        if self.bias:
            groups = self.options.get("groups", 1)
            channels = self.w_shape[-2] * groups if self.transpose else self.w_shape[-1]
            out.append(rng_array(53, (channels,), 0.1))
        return out

    def flops(self) -> int:
        """Eq 7, Eq 14 and Eq 22 each ``2 * N * prod(conv out) * prod(k) * C/groups * D``."""
        shapes = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in self.arrays()]
        y = jax.eval_shape(self.fn(reference), *shapes)
        conv_out = self.x_shape[1:-1] if self.transpose else y.shape[1:-1]
        return 3 * 2 * self.x_shape[0] * math.prod(conv_out) * math.prod(self.w_shape)

    def torch_fn(self, torch: Any) -> Callable:
        F = torch.nn.functional
        name = f"conv_transpose{self.nd}d" if self.transpose else f"conv{self.nd}d"
        return functools.partial(getattr(F, name), **self.options)


def suite_cases() -> list[ConvCase]:
    """The shapes people train (issue 11): ResNet-18's convs at batch 8, a 1-D audio front end, a
    3-D conv, transposed convs, grouped and depthwise convs."""
    rn = [ConvCase(f"resnet 3x3 {c}->{c} {n}x{n}", (8, n, n, c), (3, 3, c, c), bias=False, padding=1)
          for c, n in ((64, 56), (128, 28), (256, 14), (512, 7))]
    rn += [ConvCase(f"resnet 3x3/2 {c}->{2 * c} {n}x{n}", (8, n, n, c), (3, 3, c, 2 * c), bias=False,
                    stride=2, padding=1) for c, n in ((64, 56), (128, 28), (256, 14))]
    rn += [ConvCase(f"resnet 1x1/2 {c}->{2 * c} {n}x{n}", (8, n, n, c), (1, 1, c, 2 * c), bias=False,
                    stride=2)
           for c, n in ((64, 56), (128, 28), (256, 14))]
    return rn + [
        ConvCase("audio 1-D 1->32 k9/4 16000", (8, 16000, 1), (9, 1, 32), stride=4, padding=4),
        ConvCase("audio 1-D 32->64 k9 4000", (8, 4000, 32), (9, 32, 64), padding=4),
        ConvCase("3-D 16->32 3x3x3 8x32x32", (4, 8, 32, 32, 16), (3, 3, 3, 16, 32), padding=1),
        ConvCase("transpose 2-D 64->32 4x4/2 16x16", (8, 16, 16, 64), (4, 4, 32, 64), transpose=True,
                 stride=2, padding=1),
        ConvCase("transpose 1-D 64->32 k4/2 1000", (8, 1000, 64), (4, 32, 64), transpose=True, stride=2,
                 padding=1),
        ConvCase("transpose 3-D 32->16 4^3/2 8x16x16", (4, 8, 16, 16, 32), (4, 4, 4, 16, 32), transpose=True,
                 stride=2, padding=1),
        ConvCase("depthwise 3x3 64 56x56", (8, 56, 56, 64), (3, 3, 1, 64), groups=64, padding=1),
        ConvCase("grouped g4 3x3 128->128 28x28", (8, 28, 28, 128), (3, 3, 32, 128), groups=4, padding=1),
    ]


def loss_and_grads(fn: Callable) -> Callable:
    """jit of ``sum(fn(*args) * ct)`` and its gradient w.r.t. every argument."""
    def loss(args, ct):
        return jnp.sum(fn(*args) * ct)

    return jax.jit(jax.value_and_grad(loss))


def temp_bytes(jitted: Callable, *args: Any) -> float:
    return float(jitted.lower(*args).compile().memory_analysis().temp_size_in_bytes)


def to_channels_first(a: np.ndarray, kernel: bool) -> np.ndarray:
    """``(N, *s, C)`` -> ``(N, C, *s)``; a kernel ``(*k, C/g, D)`` -> ``(D, C/g, *k)`` (torch's)."""
    nd = a.ndim - 2
    order = (nd + 1, nd, *range(nd)) if kernel else (0, nd + 1, *range(1, nd + 1))
    return np.ascontiguousarray(a.transpose(order))


def bench_case(case: ConvCase, torch: Any, repeats: int) -> dict[str, Any]:
    arrays = case.arrays()
    args = tuple(jnp.asarray(a) for a in arrays)
    y_shape = jax.eval_shape(case.fn(reference), *args).shape
    ct = rng_array(54, y_shape)
    thunks, memory = {}, {}
    for name, ops in (("custom", jaxcnn), ("reference", reference)):
        f = loss_and_grads(case.fn(ops))
        memory[name] = temp_bytes(f, args, jnp.asarray(ct))
        thunks[name] = jax_thunk(f, args, jnp.asarray(ct))
    if torch is not None:
        tensors = [torch.tensor(to_channels_first(a, kernel=(k == 1)) if a.ndim > 1 else a,
                                requires_grad=True) for k, a in enumerate(arrays)]
        ct_t, tf = torch.tensor(to_channels_first(ct, kernel=False)), case.torch_fn(torch)

        def torch_run() -> None:
            for t in tensors:
                t.grad = None
            (tf(*tensors) * ct_t).sum().backward()

        thunks["torch"] = torch_run
    return {"name": case.name, "kind": "conv", "flops": case.flops(), "memory": memory,
            **timed(thunks, repeats)}


def wide_lenet(c1: int = 32, c2: int = 64) -> tuple[Callable, Callable]:
    """LeNet-5 with `c1` and `c2` maps (5x5 convs, relu, 2x2 max pools, dense 120-84-10)."""
    shapes = [(5, 5, 1, c1), (c1,), (5, 5, c1, c2), (c2,), (25 * c2, 120), (120,), (120, 84), (84,),
              (84, 10), (10,)]

    def init(key: jax.Array) -> list[jax.Array]:
        keys = jax.random.split(key, len(shapes))
        return [jax.random.normal(k, s) * (1 / math.sqrt(math.prod(s[:-1])) if len(s) > 1 else 0.0)
                for k, s in zip(keys, shapes, strict=True)]

    def apply(p: list[jax.Array], x: jax.Array, *, ops: Any = jaxcnn) -> jax.Array:
        h = ops.max_pool(ops.relu(ops.conv2d(x, p[0], p[1], padding=2)), 2)
        h = ops.flatten(ops.max_pool(ops.relu(ops.conv2d(h, p[2], p[3])), 2))
        h = ops.relu(ops.dense(ops.relu(ops.dense(h, p[4], p[5])), p[6], p[7]))
        return ops.dense(h, p[8], p[9])

    return init, apply


def torch_wide_lenet(torch: Any, c1: int = 32, c2: int = 64) -> Any:
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(25 * c2, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def bench_step(name: str, model: Any, torch_net: Any, torch: Any, repeats: int) -> dict[str, Any]:
    init, apply = model
    x = jnp.asarray(rng_array(21, (BATCH, 28, 28, 1)))
    y = jnp.asarray(np.random.default_rng(22).integers(0, 10, BATCH))
    thunks, memory = {}, {}
    for key, ops in (("custom", jaxcnn), ("reference", reference)):
        step = train.make_train_step(functools.partial(apply, ops=ops), ops.softmax_cross_entropy,
                                     optax.adam(1e-3))
        params = init(jax.random.key(0))
        state = (params, optax.adam(1e-3).init(params))
        memory[key] = temp_bytes(step, *state, x, y)
        thunks[key] = Stateful(step, state, x, y)
    if torch is not None:
        opt = torch.optim.Adam(torch_net.parameters(), 1e-3)
        xt = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2).copy())
        yt = torch.tensor(np.asarray(y).astype(np.int64))
        loss_fn = torch.nn.CrossEntropyLoss()

        def torch_step() -> None:
            opt.zero_grad()
            loss_fn(torch_net(xt), yt).backward()
            opt.step()

        thunks["torch"] = torch_step
    return {"name": name, "kind": "step", "memory": memory, **timed(thunks, repeats)}


def epoch_memory(examples: int) -> dict[str, float]:
    model = models.lecun1989(activation="tanh")
    x = jnp.zeros((examples, 16, 16, 1))
    t, order = jnp.zeros((examples, 10)), jnp.arange(examples)
    memory = {}
    for name, ops in (("custom", jaxcnn), ("reference", reference)):
        apply_fn = functools.partial(model.apply, ops=ops)
        epoch = train.make_sgd_epoch(apply_fn, ops.squared_error, optax.sgd(LR))
        params = model.init(jax.random.key(0))
        memory[name] = temp_bytes(epoch, params, optax.sgd(LR).init(params), x, t, order)
    return memory


SUITE_TARGETS = {  # issue 11, ratios from one run
    "geomean custom/torch": ("<=", 0.8), "max custom/torch": ("<=", 1.2),
    "geomean custom/reference": ("<=", 0.5), "max custom/reference": ("<=", 1.0),
    "min large-3x3 custom % of matmul": (">=", 0.7), "max temp memory custom/reference": ("<=", 1.0),
    "lecun1989 epoch custom/reference": ("<=", 0.3),
}


def matmul_gflops(repeats: int, torch: Any = None) -> dict[str, list[float]]:
    """GFLOP/s of each repeat of the 2048^3 float32 matmul: XLA's, and PyTorch's interleaved with it."""
    thunks = {"xla": matmul_thunk()}
    if torch is not None:
        a, b = (torch.tensor(rng_array(seed, (2048, 2048))) for seed in (41, 42))
        thunks["torch"] = lambda: torch.mm(a, b)
    return {k: [MATMUL_FLOPS / t / 1e9 for t in v] for k, v in interleaved(thunks, repeats).items()}


def suite_summary(rows: list[dict[str, Any]], mm: float) -> dict[str, Any]:
    for row in rows:
        m = row["median"] = medians(row)
        row["ratios"] = {"custom/reference": ratio(m, "custom", "reference"),
                         "custom/torch": ratio(m, "custom", "torch")}
        mem = row.get("memory", {})
        # a floor of one byte: a reference with no temporaries makes any custom ones a large ratio
        row["ratios"]["memory custom/reference"] = mem["custom"] / max(mem["reference"], 1) if mem else None
        if row.get("flops"):
            row["gflops"] = {k: row["flops"] / v / 1e9 for k, v in m.items()}
            row["ratios"]["custom/matmul GFLOP/s"] = row["gflops"]["custom"] / mm
            if "torch" in row["gflops"]:
                row["ratios"]["torch/matmul GFLOP/s"] = row["gflops"]["torch"] / mm

    def values(key: str, pick: Callable[[dict], bool] = lambda r: True) -> list[float]:
        return [r["ratios"][key] for r in rows if pick(r) and r["ratios"].get(key) is not None]

    def gmean(v: list[float]) -> float | None:
        return float(np.exp(np.mean(np.log(v)))) if v else None

    large = lambda r: r["name"].startswith("resnet 3x3 ")  # noqa: E731 (the stride-1 3x3 convs)
    lecun = [r["ratios"]["custom/reference"] for r in rows if r["name"] == "lecun1989 epoch"]
    got = {
        "geomean custom/torch": gmean(values("custom/torch")),
        "max custom/torch": max(values("custom/torch"), default=None),
        "geomean custom/reference": gmean(values("custom/reference")),
        "max custom/reference": max(values("custom/reference"), default=None),
        "min large-3x3 custom % of matmul": min(values("custom/matmul GFLOP/s", large), default=None),
        "max temp memory custom/reference": max(values("memory custom/reference"), default=None),
        "lecun1989 epoch custom/reference": lecun[0] if lecun else None,
    }
    return {k: {"value": v, "target": f"{SUITE_TARGETS[k][0]} {SUITE_TARGETS[k][1]:g}",
                "met": None if v is None else (v <= SUITE_TARGETS[k][1] if SUITE_TARGETS[k][0] == "<="
                                               else v >= SUITE_TARGETS[k][1])} for k, v in got.items()}


def beyond_matmul(rows: list[dict[str, Any]], matmul: float, torch_matmul: float | None) -> dict[str, float]:
    """The rows (name -> share of the faster float32 matmul's GFLOP/s, XLA's `matmul` or PyTorch's
    `torch_matmul`) on which custom at the target's time, 0.8x PyTorch's, would compute the row's
    FLOPs faster than that matmul: there the target asks for more than any lowering that does the
    formulas' products by matmul can give."""
    share, best = SUITE_TARGETS["geomean custom/torch"][1], max(matmul, torch_matmul or 0.0)
    needed = {r["name"]: r["ratios"]["torch/matmul GFLOP/s"] * matmul / best / share
              for r in rows if r["ratios"].get("torch/matmul GFLOP/s") is not None}
    return {name: v for name, v in needed.items() if v > 1.0}


def suite_table(result: dict[str, Any]) -> str:
    m, torch_missing = result["machine"], result["torch"] is None
    load = result["load_average"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores; jax {m['jax_version']} ({m['backend']}); "
        f"torch {result['torch'] or torch_absent(result)}"
        + (f" ({result['torch_threads']} threads)" if result["torch"] else ""),
        f"medians of {result['repeats']} interleaved repeats after warm-up (lecun1989 epoch:"
        f" {result['epoch_repeats']} of {result['epoch_examples']} examples); float32 matmul"
        f" {result['matmul_gflops']:.1f} GFLOP/s (XLA's, 2048^3, median"
        + (f"; PyTorch's {result['torch_matmul_gflops']:.1f}" if result.get("torch_matmul_gflops") else "")
        + "); 1-min load average"
        f" {load['before'][0]:.2f} before, {load['after'][0]:.2f} after",
        "",
    ]
    head = ("forward+backward", "custom", "jax.grad", "torch", "c/grad", "c/torch", "GFLOP/s", "%mm",
            "torch %mm", "temp c", "temp grad")

    def mib(v: float | None) -> str:
        return "-" if v is None else f"{v / 2**20:.1f}M"

    body = []
    for r in result["rows"]:
        mem = r.get("memory", {})
        body.append((
            r["name"], fmt_time(r, "custom", torch_missing), fmt_time(r, "reference", torch_missing),
            fmt_time(r, "torch", torch_missing) if not torch_missing else "n/a",
            fmt_ratio(r["ratios"]["custom/reference"]), fmt_ratio(r["ratios"]["custom/torch"]),
            f"{r['gflops']['custom']:.1f}" if "gflops" in r else "-",
            f"{r['ratios']['custom/matmul GFLOP/s']:.0%}" if "gflops" in r else "-",
            f"{r['ratios']['torch/matmul GFLOP/s']:.0%}" if "torch/matmul GFLOP/s" in r["ratios"] else "-",
            mib(mem.get("custom")), mib(mem.get("reference")),
        ))
    widths = [max(len(str(c[i])) for c in [head, *body]) for i in range(len(head))]
    for line in [head, *body]:
        lines.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(line, widths, strict=True))))
    lines += ["", "targets (issue 11):"]
    for k, t in result["targets"].items():
        state = "n/a" if t["met"] is None else ("met" if t["met"] else "NOT met")
        value = "-" if t["value"] is None else f"{t['value']:.2f}"
        lines.append(f"  {k} = {value} (target {t['target']}) {state}")
    beyond = result["beyond_matmul"]
    if beyond:
        lines += ["", f"0.8x PyTorch's time would run faster than the faster float32 matmul on {len(beyond)}"
                  f" row{'s' * (len(beyond) != 1)} (the row's GFLOP/s there, % of that matmul's):",
                  "  " + ", ".join(f"{n} {v:.0%}" for n, v in beyond.items())]
    faulting = [(r["name"], {k: int(np.median(v)) for k, v in r["faults"].items()})
                for r in result["rows"] if "faults" in r]
    faulting = [(n, f) for n, f in faulting if max(f.values(), default=0) > FAULTS_SHOWN]
    if faulting:
        lines += ["", f"minor page faults a timed call (median; rows with one side over {FAULTS_SHOWN}):"]
        names = {"custom": "custom", "reference": "jax.grad", "torch": "torch"}
        lines += [f"  {n}: " + ", ".join(f"{names.get(k, k)} {v}" for k, v in f.items()) for n, f in faulting]
    return "\n".join(lines)


ROW_NAMES = (*(c.name for c in suite_cases()), "LeNet-5 train step", "wide LeNet 32/64 train step",
             "lecun1989 epoch")
"""The shapes suite's rows, in order."""


def selected(only: str, name: str) -> bool:
    """Whether row `name` is one that ``--only`` `only` (comma-separated substrings) asks for."""
    return any(w.strip().lower() in name.lower() for w in only.split(",") if w.strip())


def run_suite(args: argparse.Namespace, torch: Any) -> dict[str, Any]:
    repeats = args.repeats or 7
    examples = 300 if args.quick else EPOCH_EXAMPLES
    epoch_repeats = max(3, repeats // 3)
    def wanted(name: str) -> bool:
        return args.only is None or selected(args.only, name)

    load_before = os.getloadavg()
    mm = matmul_gflops(repeats, torch)
    rows = [bench_case(c, torch, repeats) for c in suite_cases() if wanted(c.name)]
    if wanted("LeNet-5 train step"):
        model = models.lenet5()
        rows.append(bench_step("LeNet-5 train step", (model.init, model.apply),
                               None if torch is None else torch_lenet5(torch), torch, repeats))
    if wanted("wide LeNet 32/64 train step"):
        rows.append(bench_step("wide LeNet 32/64 train step", wide_lenet(),
                               None if torch is None else torch_wide_lenet(torch), torch, repeats))
    if wanted("lecun1989 epoch"):
        row = bench_lecun1989(torch, epoch_repeats, examples)
        row["memory"] = epoch_memory(examples)
        rows.append(row)
    mm_after = matmul_gflops(repeats, torch)
    matmul = float(np.median(mm["xla"] + mm_after["xla"]))
    result = {
        "suite": "shapes", "machine": _report.machine_info(), "torch_skipped": bool(args.no_torch),
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "torch": None if torch is None else torch.__version__,
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "repeats": repeats, "epoch_repeats": epoch_repeats, "epoch_examples": examples,
        "matmul_gflops": matmul, "matmul_gflops_samples": mm["xla"] + mm_after["xla"],
        "torch_matmul_gflops": (float(np.median(mm["torch"] + mm_after["torch"])) if torch is not None
                                else None),
        "rows": rows,
    }
    result["targets"] = suite_summary(rows, matmul)
    result["beyond_matmul"] = beyond_matmul(rows, matmul, result["torch_matmul_gflops"])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", choices=("shapes", "legacy"), default="shapes",
                   help="shapes: issue 11's layers (default); legacy: the README's LeNet-era rows")
    p.add_argument("--only", default=None, help="comma-separated substrings of row names (shapes suite)")
    p.add_argument("--quick", action="store_true",
                   help="a 300-example lecun1989 epoch (legacy: also 5 repeats, not 15)")
    p.add_argument("--repeats", type=int, default=None,
                   help="interleaved repeats (default: shapes 7; legacy 15, quick 5)")
    p.add_argument("--no-torch", action="store_true",
                   help="skip PyTorch (on a loaded machine its OpenMP threads make its times meaningless)")
    p.add_argument("--json", default=None, help=f"results file (default {DEFAULT_JSON}, or {SUITE_JSON})")
    args = p.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be >= 1")
    if args.only is not None and args.suite != "shapes":
        p.error("--only selects rows of the shapes suite (not --suite legacy)")
    if args.only is not None and not any(selected(args.only, name) for name in ROW_NAMES):
        p.error(f"--only {args.only!r} matches no row of the suite: {', '.join(ROW_NAMES)}")
    args.json = args.json or (SUITE_JSON if args.suite == "shapes" else DEFAULT_JSON)
    _report.check_args(p, args, files=("json",))
    torch = None if args.no_torch else load_torch()
    if args.suite == "shapes":
        result = run_suite(args, torch)
        text = suite_table(result)
    else:
        result = run_legacy(args, torch)
        text = table(result)
    print(text)
    result["table"] = text
    _io.atomic_write(args.json, json.dumps(result, indent=1).encode())
    print(f"\nwrote {args.json}")
    return 0


def run_legacy(args: argparse.Namespace, torch: Any) -> dict[str, Any]:
    repeats = args.repeats or (5 if args.quick else 15)
    examples = 300 if args.quick else EPOCH_EXAMPLES
    epoch_repeats = max(3, repeats // 3)
    load_before = os.getloadavg()
    rows = bench_ops(torch, repeats)
    rows.extend(bench_lenet5(torch, repeats))
    rows.append(bench_lecun1989(torch, epoch_repeats, examples))
    matmul_gflops = summarize(rows)
    result = {
        "suite": "legacy",
        "machine": _report.machine_info(),
        "torch_skipped": bool(args.no_torch),
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "torch": None if torch is None else torch.__version__,
        "repeats": repeats,
        "epoch_repeats": epoch_repeats,
        "epoch_examples": examples,
        "matmul_gflops": matmul_gflops,
        "rows": rows,
    }
    result["targets"] = check_targets(rows)
    return result


if __name__ == "__main__":
    sys.exit(main())
