"""Shared by the benchmark scripts: machine description and result files with provenance."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count(), "machine": platform.machine(),
                            "python": platform.python_version()}
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["gpu"] = None
    return info


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def git_dirty() -> bool | None:
    """Uncommitted changes to tracked files (results/ excluded: a benchmark rewrites its own JSON)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                              ":(exclude)benchmarks/results"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parents[1], timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.strip())


def require_clean_tree(allow_dirty: bool) -> None:
    """Results must trace to a commit: refuse a dirty tree unless --allow-dirty (then recorded)."""
    if git_dirty() and not allow_dirty:
        sys.exit("benchmark refused: the working tree has uncommitted changes, so the result would not trace "
                 "to a commit; commit first, or pass --allow-dirty (recorded in the JSON)")


def speed_reference(repeats: int = 15) -> dict[str, Any]:
    """A fixed piece of work timed on this machine, saved beside every timing so results from
    machines of one kind (which differ ~2.5x) can be compared as ratios: a 256x256 float32
    matmul chain in numpy, one thread's worth of work."""
    import time

    import numpy as np
    a = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        b = a
        for _ in range(20):
            b = np.tanh(b @ a * 0.01)
        times.append(time.perf_counter() - t)
    return {"work": "20 x (256x256 float32 matmul + tanh), numpy", "median_ms": 1000 * float(np.median(times)),
            "min_ms": 1000 * float(np.min(times)), "load_average": os.getloadavg()}


def save_result(name: str, result: dict[str, Any], allow_dirty: bool = False) -> Path:
    """benchmarks/results/<name>.json with the command, machine, date, commit, dirty flag and a
    speed reference."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    dirty = git_dirty()
    if dirty and not allow_dirty:
        raise SystemExit("refusing to write results from a dirty tree (pass --allow-dirty to record it anyway)")
    doc = {"benchmark": name, "command": " ".join(shlex.quote(a) for a in ["python", *sys.argv]),
           "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(),
           "dirty": dirty, "allow_dirty": allow_dirty, "machine": machine(), "speed_reference": speed_reference(),
           **result}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {path}", file=sys.stderr)
    return path
