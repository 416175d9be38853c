"""The accuracy/cost front the generator gives a task: its pick at a ladder of MFLOPs budgets,
from just above the smallest network's cost to the largest's, each pick scored by the same
evaluator `edge_eas eval` uses (BN recalibrated). What `edge_eas pareto` prints and plots and
the quick start draws; it replaces a "front" over archs of different tasks, which compared
accuracies that do not compare (issue #36)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_eas import generator as G
from edge_eas.common.console import Progress
from edge_eas.cost.flops import macs, params
from edge_eas.cost.latency import LatencyModel
from edge_eas.data import run_dataset
from edge_eas.host.rundir import RunDir, load_supernet
from edge_eas.net.budget import Budget
from edge_eas.net.space import Arch
from edge_eas.net.tasks import Task

LOWEST_BUDGET_FACTOR = 1.001  # the ladder starts just above the smallest network's cost


@dataclass(frozen=True)
class ParetoPoint:
    """The generator's pick at one MFLOPs budget and what it costs and scores."""

    budget_mflops: float
    arch: Arch
    mflops: float
    params: int
    accuracy: float
    ms: float | None = None
    predicted: float | None = None  # the run's accuracy predictor's figure (validation accuracy), where it has one

    def to_dict(self) -> dict[str, Any]:
        return {"budget_mflops": self.budget_mflops, "arch": self.arch.to_dict(), "mflops": self.mflops,
                "params": self.params, "accuracy": self.accuracy, "ms": self.ms, "predicted_accuracy": self.predicted}


def budget_ladder(lo: float, hi: float, steps: int) -> list[float]:
    """`steps` log-spaced budgets from lo*1.001 to hi (one step: hi alone)."""
    if steps < 1:
        raise ValueError(f"--steps must be at least 1, got {steps}")
    if steps == 1:
        return [float(hi)]
    return [float(b) for b in np.geomspace(lo * LOWEST_BUDGET_FACTOR, hi, steps)]


def pareto_front(run: RunDir, classes: Sequence[int] | None, split: str = "val", steps: int = 6,
                 latency: LatencyModel | None = None, progress: bool = True) -> list[ParetoPoint]:
    """The generator's pick for `classes` (None: all classes) at `steps` MFLOPs budgets, each
    distinct arch scored once on `split` with one shared, BN-recalibrating evaluator; `ms`
    predicted by `latency` when given. Points are in budget order."""
    # lazy: loads torch only on this path (the evaluator runs the supernet)
    from edge_eas.host.evaluate import TaskEvaluator

    run = run if isinstance(run, RunDir) else RunDir(run)
    generator = G.load(run.path)
    net, meta = load_supernet(run)
    n = len(meta["class_names"])
    task = Task.create(range(n) if classes is None else classes, n)
    space = net.space
    lo, hi = generator.bounds("mflops")
    budgets = budget_ladder(lo, hi, steps)
    data = run_dataset(meta, resolution=space.resolution)
    evaluator = TaskEvaluator(net, data, split=split)
    predictor = None
    if run.accuracy_meta_path.is_file():
        from edge_eas.host.accuracy_fit import load_predictor  # lazy: torch and safetensors, host only
        predictor = load_predictor(run)
    scored: dict[Arch, float] = {}
    points = []
    with Progress(len(budgets), "pareto front", enabled=None if progress else False) as bar:
        for budget in budgets:
            arch = generator.generate_for(task.classes, Budget("mflops", budget))
            if arch not in scored:
                scored[arch] = evaluator.accuracy(arch, task, recalibrate=True)
            ms = latency.predict(space, arch) if latency is not None else None
            predicted = predictor.predict(arch, task.classes).accuracy if predictor is not None else None
            points.append(ParetoPoint(budget, arch, macs(space, arch, n) / 1e6, params(space, arch, n),
                                      scored[arch], ms, predicted))
            bar.advance(1, f"{budget:.3g} MFLOPs -> {100 * scored[arch]:.1f}%")
    return points


def is_rising(points: Sequence[ParetoPoint], slack_pp: float = 0.2) -> bool:
    """Whether accuracy never falls, along rising budgets, more than `slack_pp` percentage
    points below the best a smaller budget reached."""
    best = -np.inf
    for p in sorted(points, key=lambda q: q.budget_mflops):
        if 100 * p.accuracy < best - slack_pp:
            return False
        best = max(best, 100 * p.accuracy)
    return True


def span_pp(points: Sequence[ParetoPoint]) -> float:
    """How many percentage points of accuracy the front covers (best minus worst)."""
    accs = [100 * p.accuracy for p in points]
    return max(accs) - min(accs) if accs else 0.0


def arch_summary(arch: Arch) -> str:
    """A short description of an arch for tables: depths, mean kernel and expand ratio, and its
    widths and input resolution where the space has those choices."""
    kernels = [k for stage in arch.kernels for k in stage]
    expands = [e for stage in arch.expands for e in stage]
    text = f"d={'-'.join(map(str, arch.depths))}"
    if kernels:
        text += f" k={np.mean(kernels):.1f} e={np.mean(expands):.1f}"
    if arch.widths:
        text += f" w={'-'.join(map(str, arch.widths))}"
    if arch.resolution:
        text += f" r={arch.resolution}"
    return text


def plot_front(points: Sequence[ParetoPoint], path: str | Path, title: str) -> Path:
    """Accuracy against MFLOPs (log x) and, when the points carry ms, against predicted ms;
    each point annotated with its budget. Returns the path written."""
    # lazy: matplotlib is a host extra, needed only to draw
    import matplotlib
    matplotlib.use("Agg")
    # lazy: after the backend is chosen
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    pts = sorted(points, key=lambda p: p.budget_mflops)
    if not pts:
        raise ValueError("no points to plot")
    with_ms = all(p.ms is not None for p in pts)
    panels = [("mflops", "MFLOPs (MACs, millions)")] + ([("ms", "predicted ms")] if with_ms else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    acc = [100 * p.accuracy for p in pts]
    for ax, (field, label) in zip(axes[0], panels):
        xs = [getattr(p, field) for p in pts]
        ax.plot(*zip(*sorted(zip(xs, acc))), "o-", ms=5, label="measured")
        if all(p.predicted is not None for p in pts):
            ax.plot(*zip(*sorted(zip(xs, [100 * p.predicted for p in pts]))), "x--", ms=5, alpha=0.7,
                    label="predicted (validation)")
            ax.legend(fontsize=7)
        labels: dict[tuple[float, float], list[str]] = {}  # budgets that picked the same network share one label
        for p, x, a in zip(pts, xs, acc):
            labels.setdefault((x, a), []).append(f"{p.budget_mflops:.3g}")
        for (x, a), budgets in labels.items():
            ax.annotate("≤" + ", ".join(budgets), (x, a), textcoords="offset points", xytext=(4, -10), fontsize=7)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.3, not 3x10^-1
        ax.xaxis.set_minor_formatter(FuncFormatter(_minor_tick_label))
        ax.tick_params(axis="x", which="both", labelsize=7)
        ax.margins(x=0.12, y=0.12)
        ax.set_xlabel(label)
        ax.set_ylabel("task accuracy (%)")
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(f"{title}\n(each point: the pick at the MFLOPs budget it is labelled with)", fontsize=9)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _minor_tick_label(value: float, _: Any) -> str:
    """Label the 2s, 3s and 5s of each decade of a log axis, so labels never overlap."""
    if value <= 0:
        return ""
    lead = round(value / 10 ** np.floor(np.log10(value)))
    return f"{value:g}" if lead in (2, 3, 5) else ""
