"""Shared by the benchmark scripts: machine description and result files with provenance."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

from edge_eas.common.source import git_commit, git_dirty

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


def add_allow_dirty(parser: Any) -> None:
    """Every benchmark's --allow-dirty: results normally come from a clean tree only."""
    parser.add_argument("--allow-dirty", action="store_true",
                        help="write results from a tree with uncommitted changes (recorded in the JSON)")


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


def command_line() -> str:
    """How this benchmark was started, as one reruns it from the repository root:
    `python -m benchmarks.NAME ARGS` (sys.argv[0] alone would be the module's file path)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    head = ["-m", spec.name] if spec is not None else sys.argv[:1]
    return " ".join(shlex.quote(a) for a in ["python", *head, *sys.argv[1:]])


def save_result(name: str, result: dict[str, Any], allow_dirty: bool = False) -> Path:
    """benchmarks/results/<name>.json with the command, machine, date, commit, dirty flag and a
    speed reference."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    dirty = git_dirty()
    if dirty and not allow_dirty:
        raise SystemExit("refusing to write results from a dirty tree (pass --allow-dirty to record it anyway)")
    doc = {"benchmark": name, "command": command_line(),
           "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(),
           "dirty": dirty, "allow_dirty": allow_dirty, "machine": machine(), "speed_reference": speed_reference(),
           **result}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {path}", file=sys.stderr)
    return path


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(cost, accuracy) points on the upper-left front: no other point is cheaper and better."""
    front, best = [], -1.0
    for cost, acc in sorted(points):
        if acc > best:
            front.append((cost, acc))
            best = acc
    return front


def plot_accuracy_vs_mflops(series: dict[str, list[tuple[float, float]]], path: Path, title: str) -> None:
    """Each method's scenarios as points (MFLOPs, accuracy in [0, 1]) and its Pareto front as a line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for (name, pts), marker in zip(series.items(), "osD^vx"):
        pct = [(m, 100 * a) for m, a in pts]
        ax.scatter(*zip(*pct), s=14, alpha=0.35, marker=marker)
        mean = sum(a for _, a in pct) / len(pct)
        ax.plot(*zip(*pareto(pct)), marker=marker, label=f"{name} (mean {mean:.2f}%)")
    ax.set_xlabel("MFLOPs (MACs, millions)")
    ax.set_ylabel("task accuracy, test split (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def bootstrap_means(diff: Any, seed: int, n: int = 10_000) -> Any:
    """Means of `n` bootstrap resamples of the paired differences (resampling scenarios)."""
    import numpy as np
    diff = np.asarray(diff, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(diff), size=(n, len(diff)))
    return diff[idx].mean(1)


def bootstrap_ci(diff: Any, seed: int, n: int = 10_000) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean of paired differences (resampling scenarios)."""
    import numpy as np
    means = bootstrap_means(diff, seed, n)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def bootstrap_p(diff: Any, seed: int, n: int = 10_000) -> float:
    """Two-sided bootstrap p-value of a zero mean difference: twice the share of resampled means
    on the far side of 0 (at least 1/n, so that Holm's ordering stays defined)."""
    import numpy as np
    means = bootstrap_means(diff, seed, n)
    return float(min(1.0, max(2 * min(np.mean(means <= 0), np.mean(means >= 0)), 1 / n)))


def holm(p_values: dict[str, float], alpha: float = 0.05) -> dict[str, bool]:
    """Holm's step-down correction over a family of comparisons: which of them stay significant
    at `alpha` when all of them are counted."""
    order = sorted(p_values, key=p_values.get)
    out, m = {}, len(order)
    still = True
    for rank, key in enumerate(order):
        still = still and p_values[key] <= alpha / (m - rank)
        out[key] = still
    return out


def paired(methods: dict[str, list[dict[str, Any]]], ref: str, subset: list[int], seed: int,
           key: str = "test_accuracy") -> dict[str, Any]:
    """`ref` minus every other method on the same scenarios, in percentage points, with a 95 %
    bootstrap CI and a verdict: win / loss when the CI excludes 0, else tie."""
    import numpy as np
    out = {}
    base = np.array([methods[ref][i][key] for i in subset])
    for name, rows in methods.items():
        if name == ref:
            continue
        diff = 100 * (base - np.array([rows[i][key] for i in subset]))
        lo, hi = bootstrap_ci(diff, seed)
        out[name] = {"mean_pp": float(diff.mean()), "ci95_pp": [lo, hi], "scenarios": len(subset),
                     "verdict": "win" if lo > 0 else ("loss" if hi < 0 else "tie"), "p_value": bootstrap_p(diff, seed)}
    return out
