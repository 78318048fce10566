"""The sweep behind ``python -m jaxcnn.gradcheck`` (the entry point is `jaxcnn.gradcheck.main`).

Per row (`Family`): static configurations are drawn from ``default_rng([seed, crc32(name)])``
(so one row's draws do not depend on the others), each is built into a `Case`, validated by the
reference (a ValueError there: the configuration is *invalid*, counted and replaced by a new
draw), compiled once, and run on its value sets, each drawn from its own per-config seed.

JSON (``--json``), format 1::

    {"tool": "jaxcnn.gradcheck", "format": 1, "argv": [...], "seed": 0, "dtype": "float32",
     "backend": "cpu", "device": "cpu", "jax": "0.10.2", "precision": "highest",
     "wall_s": 93.1, "passed": true,
     "summary": {row: {"configs", "invalid", "failed", "worst_abs", "worst_rel", "rtol", "status"}},
     "configs": [{"function", "kind", "options", "dtype", "seed", "shapes", "status",
                  "rtol", "worst_abs", "worst_rel", "errors", "message"?}, ...]}

``status`` is "pass", "fail", "error" (an exception while checking: a failure) or "invalid" (the
library rejected the configuration; seed null). ``errors`` holds, for ``vjp`` configs,
``{"forward": {name: {"abs", "rel"}}, "grads": {name: {"abs", "rel"}}, "problems": [...]}``, for
``fd`` configs ``{"custom": {name: {"abs", "rel", "fd", "vjp"}}, "reference": {...}}`` and for
``gn`` configs (the second-order rule against the squared-Jacobian oracle, per argument)
``{"curvature": {name: {"abs", "rel"}}, "problems": [...]}``.
Non-finite errors are written as the strings "inf"/"nan" (JSON has no such numbers).
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import sys
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from jaxcnn._io import atomic_write, unwritable
from jaxcnn.gradcheck.cases import Family, allocate, default_configs
from jaxcnn.gradcheck.compare import _leaf_names, _struct, fd_checker, gn_checker, vjp_checker
from jaxcnn.gradcheck.errors import DEFAULT_PRECISION, CheckResult, FDResult

FORMAT = 1


# ------------------------------------------------------------------------------ records
def _jf(x: float) -> float | str:
    return float(x) if np.isfinite(x) else str(float(x))


def _num(x: float | str | None) -> float:
    return float(x) if x is not None else float("nan")


def _errors_vjp(res: CheckResult) -> dict[str, Any]:
    def group(stats):
        return {s.name: {"abs": _jf(s.max_abs), "rel": _jf(s.max_rel)} for s in stats}

    return {"forward": group(res.forward), "grads": group(res.grads), "problems": list(res.problems)}


def _errors_gn(res: CheckResult) -> dict[str, Any]:
    return {"curvature": {s.name: {"abs": _jf(s.max_abs), "rel": _jf(s.max_rel)} for s in res.grads},
            "problems": list(res.problems)}


def _errors_fd(res: FDResult) -> dict[str, Any]:
    def group(stats):
        return {s.name: {"abs": _jf(s.max_abs), "rel": _jf(s.max_rel), "fd": [_jf(v) for v in s.fd],
                         "vjp": [_jf(v) for v in s.vjp]} for s in stats}

    return {"custom": group(res.custom), "reference": group(res.reference)}


def _rtol(res: CheckResult | FDResult) -> float | None:
    return max((s.rtol for s in res.stats), default=None)


def _shapes(case_args: tuple[Any, ...], names: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for name, arg in zip(names, case_args, strict=True):
        for leaf_name, leaf in zip(_leaf_names(name, arg), jax.tree_util.tree_leaves(arg), strict=True):
            out[leaf_name] = {"shape": list(np.shape(leaf)), "dtype": str(np.asarray(leaf).dtype)}
    return out


@dataclass
class _Timing:
    setup_s: float = 0.0  # build, validation
    first_s: float = 0.0  # first call per static config: trace + compile + run
    run_s: float = 0.0  # the other calls
    shapes: int = 0


def _run_static(family: Family, options: dict[str, Any], dtype: str, seeds: Sequence[int],
                timing: _Timing) -> list[dict[str, Any]]:
    """Check one static configuration on every seed's values; one record per seed (or one
    "invalid" record)."""
    base = {"function": family.name, "kind": family.kind, "options": options, "dtype": dtype}
    t0 = time.perf_counter()
    try:
        case = family.build(options, dtype)
        example = case.make_args(seeds[0])
        jax.eval_shape(case.reference, *_struct(example))  # the library's validation
    except ValueError as err:
        timing.setup_s += time.perf_counter() - t0
        return [{**base, "seed": None, "status": "invalid", "message": str(err)}]
    except Exception as err:  # noqa: BLE001 (reported as a failed config, never swallowed)
        timing.setup_s += time.perf_counter() - t0
        message = f"building the case: {type(err).__name__}: {err}"
        return [{**base, "seed": int(s), "status": "error", "message": message} for s in seeds]
    shapes = _shapes(example, case.argnames)
    if family.kind == "fd":
        check = fd_checker(case.custom, case.reference, argnums=case.argnums, argnames=case.argnames)
    elif family.kind == "gn":
        check = gn_checker(case.custom, case.reference, argnums=case.argnums, argnames=case.argnames,
                           loss=case.loss, chain=case.chain)
    else:
        check = vjp_checker(case.custom, case.reference, argnums=case.argnums, argnames=case.argnames)
    timing.setup_s += time.perf_counter() - t0
    timing.shapes += 1
    records = []
    for j, seed in enumerate(seeds):
        t0 = time.perf_counter()
        record = {**base, "seed": int(seed), "shapes": shapes}
        try:
            res = check(case.make_args(int(seed)), seed=int(seed))
        except Exception as err:  # noqa: BLE001 (an exception while checking is a failure)
            record.update(status="error", message=f"{type(err).__name__}: {err}")
        else:
            record.update(
                status="pass" if res.passed else "fail",
                rtol=_rtol(res),
                worst_abs=_jf(res.worst_abs),
                worst_rel=_jf(res.worst_rel),
                errors={"fd": _errors_fd, "gn": _errors_gn}.get(family.kind, _errors_vjp)(res),
            )
            if not res.passed and isinstance(res, CheckResult) and res.problems:
                record["message"] = "; ".join(res.problems)
        elapsed = time.perf_counter() - t0
        if j == 0:
            timing.first_s += elapsed
        else:
            timing.run_s += elapsed
        records.append(record)
    return records


# ------------------------------------------------------------------------------ progress
class _Progress:
    """tqdm on stderr when installed (and wanted), else a line per ~10% on stderr."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled, self._bar, self._next = total, 0, enabled, None, 0.1
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self._bar = tqdm(total=total, file=sys.stderr, unit="config", mininterval=0.5,
                                 dynamic_ncols=True)

    def update(self, n: int, name: str) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.set_postfix_str(name, refresh=False)
            self._bar.update(n)
        elif self.enabled and self.total and self.done / self.total >= self._next:
            print(f"  {self.done}/{self.total} configs ({name})", file=sys.stderr, flush=True)
            while self._next <= self.done / self.total:
                self._next += 0.1

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# --------------------------------------------------------------------------------- rows
@dataclass
class _Row:
    name: str
    configs: int = 0
    invalid: int = 0
    failed: int = 0
    worst_abs: float = 0.0
    worst_rel: float = 0.0
    rtol: float | None = None
    note: str | None = None
    short: bool = False  # fewer valid configs than planned: a failure (nothing silently unchecked)
    seconds: float = 0.0

    def add(self, record: dict[str, Any]) -> None:
        status = record["status"]
        if status == "invalid":
            self.invalid += 1
            return
        self.configs += 1
        if status == "error":
            self.failed += 1
            self.worst_abs = self.worst_rel = float("inf")
            return
        self.failed += status == "fail"
        self.worst_abs = max(self.worst_abs, _num(record["worst_abs"]))
        self.worst_rel = max(self.worst_rel, _num(record["worst_rel"]))
        if record.get("rtol") is not None:
            self.rtol = record["rtol"] if self.rtol is None else max(self.rtol, record["rtol"])

    @property
    def status(self) -> str:
        if self.note is not None and not self.configs and not self.short:
            return "n/a"
        if self.failed:
            return f"FAIL {self.failed}/{self.configs}"
        return "FAIL (short)" if self.short else "ok"

    def summary(self) -> dict[str, Any]:
        return {"configs": self.configs, "invalid": self.invalid, "failed": self.failed, "short": self.short,
                "worst_abs": _jf(self.worst_abs), "worst_rel": _jf(self.worst_rel), "rtol": self.rtol,
                "status": self.status, "note": self.note, "seconds": round(self.seconds, 3)}


def _table(rows: Sequence[_Row]) -> str:
    width = max([len(r.name) for r in rows] + [8])
    head = f"{'function':<{width}}  {'configs':>7}  {'invalid':>7}  {'worst abs':>9}  {'worst rel':>9}  " \
           f"{'rtol':>7}  {'time s':>6}  status"
    lines = [head, "-" * len(head)]
    for r in rows:
        rtol = f"{r.rtol:.0e}" if r.rtol is not None else "-"
        if r.configs:
            errs = f"{r.worst_abs:9.2e}  {r.worst_rel:9.2e}"
        else:
            errs = f"{'-':>9}  {'-':>9}"
        status = r.status + (f"  ({r.note})" if r.note else "")
        lines.append(f"{r.name:<{width}}  {r.configs:>7}  {r.invalid:>7}  {errs}  {rtol:>7}  "
                     f"{r.seconds:6.1f}  {status}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- io
def write_json(path: str, payload: dict[str, Any]) -> None:
    """Write `payload` to `path` atomically: a temporary file in the same folder, then os.replace."""
    atomic_write(path, (json.dumps(payload, indent=1) + "\n").encode("utf-8"))


@contextlib.contextmanager
def _dtype_mode(dtype: str) -> Iterator[None]:
    """x64 on for float64 work (and restored after), left alone otherwise."""
    if dtype == "float64":
        with jax.enable_x64(True):
            yield
    else:
        yield


def _environment() -> dict[str, Any]:
    device = jax.devices()[0]
    return {"backend": jax.default_backend(), "device": device.device_kind, "devices": jax.device_count(),
            "jax": jax.__version__, "precision": DEFAULT_PRECISION}


def _header(env: dict[str, Any], extra: str) -> str:
    return (f"jaxcnn.gradcheck: jax {env['jax']}, backend {env['backend']}, device {env['device']} "
            f"({env['devices']} device{'s' if env['devices'] != 1 else ''}), matmul precision "
            f"{env['precision']}\n{extra}")


MAX_CONFIGS = 1_000_000  # --configs above this is refused (the default sweep is ~2,000)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jaxcnn.gradcheck",
        description="Randomized cross-check of jaxcnn's custom VJPs against autodiff of jaxcnn.reference.",
    )
    p.add_argument("--configs", type=int, default=None,
                   help="about this many configs over the selected rows (default: their default sweep), "
                        "spread in proportion to their defaults, at least one a row; the header prints "
                        f"the count (1 to {MAX_CONFIGS:,})")
    p.add_argument("--seed", type=int, default=None, help="seed of the sweep (default 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), default=None,
                   help="dtype of the arrays (default float32; float64 enables x64); fd: rows always use "
                        "float64")
    p.add_argument("--json", metavar="PATH", help="write every config and its errors to PATH")
    p.add_argument("--replay", metavar="PATH", help="re-run the failed configs of a --json file (with "
                                                    "their own seeds and dtypes: no --configs, --seed, "
                                                    "--dtype or --only)")
    p.add_argument("--only", metavar="NAMES", help="comma-separated row names or patterns (conv2d,d2:*)")
    p.add_argument("--list", action="store_true", help="list the rows and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _usage_error(opts: argparse.Namespace) -> str | None:
    """What is wrong with the options, checked before any work (a bad --json found after the sweep
    would lose it), or None."""
    for flag in ("json", "replay", "only"):
        if getattr(opts, flag) is not None and not getattr(opts, flag).strip():
            return f"--{flag} must not be empty"
    if opts.configs is not None and not 1 <= opts.configs <= MAX_CONFIGS:
        return f"--configs must be between 1 and {MAX_CONFIGS}, got {opts.configs}"
    if opts.seed is not None and opts.seed < 0:
        return f"--seed must be >= 0, got {opts.seed}"
    if opts.replay is not None:
        given = [f"--{f}" for f in ("configs", "seed", "dtype", "only") if getattr(opts, f) is not None]
        if given:
            return (f"--replay re-runs the stored configs as they were: {', '.join(given)} cannot be "
                    "used with it")
    if opts.json is not None and not opts.list:
        why = unwritable(opts.json)
        if why is not None:
            return f"--json {opts.json!r} cannot be written: {why}"
    return None


def run_cli(argv: Sequence[str] | None, registry: Mapping[str, Family]) -> int:
    try:
        opts = _parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error (argparse already printed it)
        return int(exit_.code or 0)
    error = _usage_error(opts)
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return 2
    opts.seed = 0 if opts.seed is None else opts.seed
    opts.dtype = opts.dtype or "float32"
    families = list(registry.values())
    if opts.only:
        patterns = [p.strip() for p in opts.only.split(",") if p.strip()]
        families = [f for f in families if any(fnmatch.fnmatchcase(f.name, p) for p in patterns)]
        if not families:
            print(f"error: --only {opts.only!r} matches no row; see --list", file=sys.stderr)
            return 2
    if opts.list:
        for f in families:
            print(f"{f.name:<28} {f.kind:<4} default {f.configs} configs, {f.values_per_shape} per shape")
        return 0
    if opts.replay:
        return _replay(opts, registry)
    return _sweep(opts, families, argv)


def _sweep(opts: argparse.Namespace, families: list[Family], argv: Sequence[str] | None) -> int:
    start, cpu_start = time.perf_counter(), time.process_time()
    env = _environment()
    # --configs counts the configs of the selected rows (all rows, or those of --only).
    scale = 1.0 if opts.configs is None else opts.configs / default_configs({f.name: f for f in families})
    plans = []
    rows = []
    for family in families:
        row = _Row(family.name)
        rows.append(row)
        reason = family.unavailable()
        if reason is not None:
            row.note = f"skipped: {reason}"
            continue
        plans.append((family, row, allocate(family, scale)))
    total = sum(sum(counts) for _, _, counts in plans)
    print(_header(env, f"dtype {opts.dtype} (fd: rows float64), seed {opts.seed}, {total} configs "
                       f"in {len(plans)} rows"), flush=True)
    for row in rows:
        if row.note:
            print(f"note: {row.name} {row.note}", flush=True)
    records: list[dict[str, Any]] = []
    timing = _Timing()
    progress = _Progress(total, not opts.no_progress)
    try:
        for family, row, counts in plans:
            dtype = family.dtype or opts.dtype
            row_start = time.perf_counter()
            rng = np.random.default_rng([opts.seed, zlib.crc32(family.name.encode())])
            j = draws = 0
            max_draws = 3 * len(counts) + 10
            with _dtype_mode(dtype):
                while j < len(counts) and draws < max_draws:
                    options = family.draw(rng, draws)
                    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, counts[j])]
                    draws += 1
                    for record in _run_static(family, options, dtype, seeds, timing):
                        row.add(record)
                        records.append(record)
                    if records[-1]["status"] != "invalid":
                        progress.update(counts[j], family.name)
                        j += 1
            if j < len(counts):
                row.note, row.short = f"only {j} of {len(counts)} static configs valid in {draws} draws", True
                progress.update(sum(counts[j:]), family.name)
            row.seconds = time.perf_counter() - row_start
    finally:
        progress.close()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(_table(rows))
    checked = sum(r.configs for r in rows)
    failed = sum(r.failed for r in rows)
    invalid = sum(r.invalid for r in rows)
    short = [r.name for r in rows if r.short]
    print(f"\n{checked} configs checked in {sum(1 for r in rows if r.configs)} rows, {failed} failed, "
          f"{invalid} invalid static configs skipped (library ValueError), "
          f"{timing.shapes} static configs compiled")
    if short:
        print(f"rows short of their planned configs (the library refused the draws): {', '.join(short)}")
    failed += len(short)
    print(f"time {wall:.1f} s wall ({cpu:.1f} s CPU on {os.cpu_count()} cores): first call per static config "
          f"(trace + compile + run) {timing.first_s:.1f} s, other calls {timing.run_s:.1f} s, "
          f"case setup {timing.setup_s:.1f} s")
    print("result: " + ("FAIL" if failed else "ok"), flush=True)
    if opts.json:
        payload = {"tool": "jaxcnn.gradcheck", "format": FORMAT,
                   "argv": list(argv) if argv is not None else sys.argv[1:],
                   "seed": opts.seed, "dtype": opts.dtype, **env,
                   "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                   "passed": not failed, "summary": {r.name: r.summary() for r in rows},
                   "configs": records}
        write_json(opts.json, payload)
        print(f"wrote {len(records)} configs to {opts.json}")
    return 1 if failed else 0


_STORED = {"function": str, "options": dict, "dtype": str, "status": str}  # what a replay reads of a config


def _stored_configs(path: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | str:
    """The --json file at `path` and its configs, or why it cannot be replayed."""
    kind = f"not a jaxcnn.gradcheck --json file (format {FORMAT})"
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return "no such file"
    except IsADirectoryError:
        return "a folder, not a file"
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return f"{kind}: {type(err).__name__}: {err}"
    if not isinstance(data, dict) or data.get("tool") != "jaxcnn.gradcheck" or data.get("format") != FORMAT:
        return kind
    configs = data.get("configs")

    def replayable(c: Any) -> bool:  # a failed config is re-run from its seed
        seed = c.get("seed") if isinstance(c, dict) else None
        return (isinstance(c, dict) and all(isinstance(c.get(k), t) for k, t in _STORED.items())
                and c["dtype"] in ("float32", "float64") and (c["status"] not in ("fail", "error") or (
                    isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0)))

    if not isinstance(configs, list) or not all(replayable(c) for c in configs):
        return (f"{kind}: its 'configs' must be a list of records with {', '.join(_STORED)} (float32 or "
                "float64), and a seed >= 0 where the status is fail or error")
    return data, configs


def _replay(opts: argparse.Namespace, registry: Mapping[str, Family]) -> int:
    stored = _stored_configs(opts.replay)
    if isinstance(stored, str):
        print(f"error: --replay {opts.replay!r}: {stored}", file=sys.stderr)
        return 2
    data, configs = stored
    failed = [c for c in configs if c["status"] in ("fail", "error")]
    env = _environment()
    print(_header(env, f"replaying {len(failed)} failed configs of {opts.replay} (written on "
                       f"{data.get('backend')}/{data.get('device')}, seed {data.get('seed')})"), flush=True)
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for c in failed:
        key = (c["function"], json.dumps(c["options"], sort_keys=True), c["dtype"])
        groups.setdefault(key, []).append(c)
    timing = _Timing()
    records = []
    lines = []
    for (name, _, dtype), stored in groups.items():
        family = registry.get(name)
        if family is None:
            for c in stored:
                records.append({**c, "status": "error", "message": f"no row named {name!r} in the registry"})
        else:
            with _dtype_mode(dtype):
                new = _run_static(family, stored[0]["options"], dtype, [c["seed"] for c in stored], timing)
            if len(new) != len(stored):  # rejected by the library now: one "invalid" record
                new = [{**new[0], "seed": c["seed"]} for c in stored]
            records += new
        for old, new in zip(stored, records[-len(stored):], strict=True):
            lines.append(
                f"{name:<28} seed {old['seed']:>10}  {dtype}  stored rel {old.get('worst_rel', '-')!s:>9}  "
                f"now rel {new.get('worst_rel', '-')!s:>9}  {new['status']}"
                + (f"  ({new['message']})" if new.get("message") else "")
                + f"\n    options {json.dumps(new['options'])}"
            )
    print("\n".join(lines) if lines else "no failed configs to replay")
    still = sum(r["status"] in ("fail", "error") for r in records)
    refused = sum(r["status"] == "invalid" for r in records)
    print(f"\n{len(records)} configs replayed, {still} failed"
          + (f", {refused} now refused by the library (not checked)" if refused else ""), flush=True)
    still += refused  # a failure that can no longer be checked is not a pass
    if opts.json:
        payload = {"tool": "jaxcnn.gradcheck", "format": FORMAT, "replay_of": opts.replay, **env,
                   "passed": not still, "summary": {}, "configs": records}
        write_json(opts.json, payload)
        print(f"wrote {len(records)} configs to {opts.json}")
    return 1 if still else 0
