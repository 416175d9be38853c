"""Fitting the accuracy predictor (archgen/accuracy.py) on a trained run.

One pass of a BN-recalibrated sub-network over the validation split gives its all-class logits,
and from them its accuracy on every task (only the task's logits compete: `task_accuracy`). So
a few hundred archs, spread over the cost range, times every task of 2-5 classes plus the
all-class one yield the (arch, task) pairs the MLP learns. Archs are split by architecture: the
predictor never sees the held-out ones, and their residuals alone give the reported error and
the safety margin (the p90 over-prediction). Tasks are held out too, to report how it does on a
class set it never saw.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from edge_eas.archgen.accuracy import AccuracyPredictor, arch_features
from edge_eas.archgen.mlp import task_features
from edge_eas.common.console import Progress, info
from edge_eas.common.fileio import atomic_write_json
from edge_eas.data import load_dataset
from edge_eas.host.arch_spread import arch_key, spread_archs
from edge_eas.host.checkpoint import save_tensors
from edge_eas.host.evaluate import TaskEvaluator, task_accuracy
from edge_eas.host.rundir import RunDir, load_supernet
from edge_eas.net.space import Arch, SearchSpace


@dataclass
class AccuracyFitConfig:
    archs: int = 240                # measured archs, spread over the MACs range (smallest and largest included)
    held_out_archs: float = 0.2     # share of archs the fit never sees: its error and margin come from them
    held_out_tasks: float = 0.2     # share of tasks the fit never sees (reported apart)
    max_tasks: int = 800            # every 2-5-class task where there are fewer, else a random sample
    hidden: int = 128
    steps: int = 3000
    batch_size: int = 1024
    lr: float = 3e-3
    weight_decay: float = 1e-4
    split: str = "val"
    seed: int = 0


class PredictorNet(nn.Module):
    """The torch twin of `AccuracyPredictor.logits`: fc1, fc2, fc3 with ReLU between."""

    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_in, hidden)
        self.fc2 = nn.Linear(hidden, hidden // 2)
        self.fc3 = nn.Linear(hidden // 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x))))).squeeze(1)


def all_tasks(num_classes: int, max_tasks: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """The all-class task and every task of 2-5 classes (a random `max_tasks` of them if more)."""
    small = [c for k in range(2, min(5, num_classes - 1) + 1) for c in itertools.combinations(range(num_classes), k)]
    if len(small) > max_tasks:
        small = [small[i] for i in sorted(rng.choice(len(small), max_tasks, replace=False))]
    return [tuple(range(num_classes)), *small]


def measure(evaluator: TaskEvaluator, archs: Sequence[Arch], tasks: Sequence[tuple[int, ...]]) -> np.ndarray:
    """(archs, tasks) accuracy matrix, one evaluator pass per arch."""
    out = np.zeros((len(archs), len(tasks)))
    with Progress(len(archs), "accuracy predictor: measuring archs") as bar:
        for i, arch in enumerate(archs):
            logits, labels = evaluator.split_logits(arch)
            out[i] = [task_accuracy(logits, labels, t) for t in tasks]
            bar.advance(1)
    return out


def kendall_within_tasks(pred: np.ndarray, real: np.ndarray) -> float:
    """Mean over tasks (columns) of Kendall's tau between predicted and measured accuracy across
    archs (rows); tasks whose archs all score the same are skipped."""
    from scipy.stats import kendalltau
    taus = [kendalltau(pred[:, j], real[:, j]).statistic for j in range(real.shape[1]) if np.ptp(real[:, j]) > 0]
    return float(np.nanmean(taus)) if taus else float("nan")


def errors(pred: np.ndarray, real: np.ndarray) -> dict[str, float]:
    res = real - pred
    return {"mae_pp": float(100 * np.abs(res).mean()), "kendall_tau_within_task": kendall_within_tasks(pred, real),
            "p90_over_prediction_pp": float(100 * max(0.0, -np.percentile(res, 10))), "pairs": int(res.size)}


def train_net(x: np.ndarray, y: np.ndarray, cfg: AccuracyFitConfig) -> PredictorNet:
    torch.manual_seed(cfg.seed)
    net = PredictorNet(x.shape[1], cfg.hidden)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))
    gen = torch.Generator().manual_seed(cfg.seed)
    with Progress(cfg.steps, "accuracy predictor: fitting") as bar:
        for _ in range(cfg.steps):
            idx = torch.randint(0, len(xt), (cfg.batch_size,), generator=gen)
            loss = nn.functional.binary_cross_entropy_with_logits(net(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.advance(1)
    return net.eval()


def pairs(space: SearchSpace, vecs: np.ndarray, tasks: Sequence[tuple[int, ...]], acc: np.ndarray,
          num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (arch, task) row of the predictor's input and its measured accuracy."""
    a = np.repeat(arch_features(space, vecs), len(tasks), 0)
    t = np.tile(task_features(tasks, num_classes), (len(vecs), 1))
    return np.concatenate([a, t], 1), acc.reshape(-1)


def measured_archs(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """The smallest and largest arch, half the rest spread evenly over the MACs range and half
    drawn as the target search's candidate pool is (each choice uniform), all distinct."""
    ends = [space.smallest(), space.largest()]
    spread = spread_archs(space, (n - 2) // 2, seed, exclude=ends)
    seen = {arch_key(a) for a in ends + spread}
    rng, uniform = np.random.default_rng(seed + 1), []
    while len(uniform) < n - 2 - len(spread):
        a = space.sample(rng)
        if arch_key(a) not in seen:
            seen.add(arch_key(a))
            uniform.append(a)
    return ends + spread + uniform


def fit_accuracy(run: RunDir, cfg: AccuracyFitConfig = AccuracyFitConfig()) -> dict[str, Any]:
    """Measure, fit, score on held-out archs and tasks, and write RUN/accuracy.{safetensors,json}."""
    start = time.perf_counter()
    net, meta = load_supernet(run)
    space, n_cls = net.space, len(meta["class_names"])
    data = load_dataset(meta["data"], resolution=space.resolution, seed=meta["config"]["seed"])
    rng = np.random.default_rng(cfg.seed)
    archs = measured_archs(space, cfg.archs, cfg.seed)
    tasks = all_tasks(n_cls, cfg.max_tasks, rng)
    acc = measure(TaskEvaluator(net, data, split=cfg.split), archs, tasks)
    vecs = np.stack([space.encode(a) for a in archs])

    # held out by architecture (never the smallest or largest: the fit should span the range) and by task
    order = 2 + rng.permutation(len(archs) - 2)
    held = np.sort(order[: int(round(cfg.held_out_archs * len(archs)))])
    fit = np.setdiff1d(np.arange(len(archs)), held)
    t_order = 1 + rng.permutation(len(tasks) - 1)  # the all-class task is always fitted
    t_held = np.sort(t_order[: int(round(cfg.held_out_tasks * (len(tasks) - 1)))])
    t_fit = np.setdiff1d(np.arange(len(tasks)), t_held)
    fit_tasks = [tasks[j] for j in t_fit]

    x, y = pairs(space, vecs[fit], fit_tasks, acc[np.ix_(fit, t_fit)], n_cls)
    model = train_net(x, y, cfg)
    weights = {k: v.detach().float() for k, v in model.state_dict().items()}

    def predict(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        xs, _ = pairs(space, vecs[rows], [tasks[j] for j in cols], np.zeros((len(rows), len(cols))), n_cls)
        with torch.no_grad():
            z = model(torch.from_numpy(xs)).numpy()
        return (1 / (1 + np.exp(-z))).reshape(len(rows), len(cols))

    held_pred, held_real = predict(held, t_fit), acc[np.ix_(held, t_fit)]
    res = (held_real - held_pred).reshape(-1)
    scores = {"held_out_archs": errors(held_pred, held_real),
              "held_out_tasks": errors(predict(held, t_held), acc[np.ix_(held, t_held)]),
              "fit": errors(predict(fit, t_fit), acc[np.ix_(fit, t_fit)])}
    doc = {"format": 1, "config": asdict(cfg), "residual_p10": float(np.percentile(res, 10)),
           "residual_p90": float(np.percentile(res, 90)), "scores": scores,
           "archs": {"fit": int(len(fit)), "held_out": [archs[i].to_dict() for i in held]},
           "tasks": {"fit": [list(tasks[j]) for j in t_fit], "held_out": [list(tasks[j]) for j in t_held]},
           "images": int(len(data.split(cfg.split)[1])), "seconds": time.perf_counter() - start}
    doc["weights_sha256"] = save_tensors(run.accuracy_path, weights)
    atomic_write_json(run.accuracy_meta_path, doc)
    h = scores["held_out_archs"]
    info(f"accuracy predictor on {len(held)} held-out archs: MAE {h['mae_pp']:.2f} pp, Kendall tau "
         f"{h['kendall_tau_within_task']:.3f} within a task, margin (p90 over-prediction) "
         f"{h['p90_over_prediction_pp']:.2f} pp")
    return doc


def load_predictor(run: RunDir) -> AccuracyPredictor:
    """The run's fitted predictor (`edge_eas fit-accuracy`)."""
    from edge_eas.archgen.accuracy import from_arrays
    from edge_eas.errors import UserError
    from edge_eas.host.checkpoint import load_tensors
    if not run.accuracy_path.is_file() or not run.accuracy_meta_path.is_file():
        raise UserError(f"{run.path} has no accuracy predictor; fit one with `edge_eas fit-accuracy {run.path}`")
    meta = json.loads(run.accuracy_meta_path.read_text())
    weights = {k: v.numpy() for k, v in load_tensors(run.accuracy_path, meta.get("weights_sha256")).items()}
    run_meta = run.meta()
    return from_arrays(run_meta["space"], len(run_meta["class_names"]), weights, meta)
