"""Fitting the accuracy predictor (archgen/accuracy.py) on a trained run.

One pass of a BN-recalibrated sub-network over the validation split gives its all-class logits,
and from them its accuracy on every task (only the task's logits compete: `task_accuracy`). So
a few hundred archs, spread over the cost range, times every task of 2-5 classes plus the
all-class one yield the (arch, task) pairs the MLP learns. Archs are split by architecture: the
predictor never sees the held-out ones, and their residuals alone give the reported error and
the safety margin (the p90 over-prediction). The shipped predictor sees every task; one fitted
without a fifth of them reports how it does on a class set it never saw.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from safetensors import safe_open
from torch import nn

from edge_eas.archgen.accuracy import AccuracyPredictor, arch_features
from edge_eas.archgen.mlp import task_features
from edge_eas.common.console import Progress, info
from edge_eas.common.fileio import atomic_write_json
from edge_eas.format.manifest import AccuracyMeta
from edge_eas.data import run_dataset
from edge_eas.host.accuracy_margin import MarginCalibration, calibrate_margin
from edge_eas.host.arch_spread import arch_key, spread_archs
from edge_eas.host.checkpoint import save_tensors
from edge_eas.host.evaluate import TaskEvaluator, task_hits
from edge_eas.host.rundir import RunDir, load_supernet
from edge_eas.net.space import Arch, SearchSpace


FORMAT = 3  # accuracy.json: 2 counted errors in logits, 3 in standard errors


@dataclass
class AccuracyFitConfig:
    archs: int = 240                # measured archs, spread over the MACs range (smallest and largest included)
    held_out_archs: float = 0.2     # share of archs the fit never sees: its error and margin come from them
    held_out_tasks: float = 0.2     # share of tasks the fit never sees (reported apart)
    max_tasks: int = 800            # every 2-5-class task where there are fewer, else a random sample
    hidden: int = 128
    members: int = 3                # MLPs from different seeds whose logits are averaged
    calibration_tasks: int = 40     # fitted tasks whose answers calibrate the margin (host/accuracy_margin.py)
    steps: int = 12000              # chosen on validation residuals: 3000 left per-task biases up to 1.4 pp
    batch_size: int = 256
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


@dataclass
class Measurements:
    """Right answers of each measured arch on each task's images, counted in two halves
    (alternate images), so that the measurement's own noise can be told apart from the
    predictor's error (the scores' "noise" ceiling). Kept in the run, so that refitting measures
    nothing again."""

    vecs: np.ndarray               # (archs, decisions) choice vectors
    tasks: list[tuple[int, ...]]
    hits: np.ndarray               # (archs, tasks, 2) right answers in each half
    images: np.ndarray             # (tasks, 2) images in each half

    def accuracy(self) -> np.ndarray:
        """(archs, tasks) accuracy on all the task's images."""
        return self.hits.sum(2) / self.images.sum(1)

    def half(self, h: int) -> np.ndarray:
        return self.hits[:, :, h] / self.images[:, h]

    def save(self, path: Path, key: dict[str, str], num_classes: int) -> None:
        multi_hot = task_features(self.tasks, num_classes)
        save_tensors(path, {"vecs": torch.from_numpy(self.vecs), "tasks": torch.from_numpy(multi_hot),
                            "hits": torch.from_numpy(self.hits), "images": torch.from_numpy(self.images)},
                     metadata=key)

    @classmethod
    def load(cls, path: Path, key: dict[str, str]) -> "Measurements | None":
        """The saved measurements when they were taken with `key` (split, supernet digest), else None."""
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), "np") as f:
                if f.metadata() != key:
                    return None
                t = {k: f.get_tensor(k) for k in f.keys()}
        except Exception:  # safetensors raises its own types; an unreadable file is measured again
            return None
        tasks = [tuple(int(c) for c in np.flatnonzero(row)) for row in t["tasks"]]
        return cls(t["vecs"], tasks, t["hits"], t["images"])


def measure(evaluator: TaskEvaluator, archs: Sequence[Arch], tasks: Sequence[tuple[int, ...]]) -> Measurements:
    """One evaluator pass per arch gives its right answers on every task."""
    space = evaluator.net.space
    hits = np.zeros((len(archs), len(tasks), 2), dtype=np.int64)
    images = np.zeros((len(tasks), 2), dtype=np.int64)
    with Progress(len(archs), "accuracy predictor: measuring archs") as bar:
        for i, arch in enumerate(archs):
            logits, labels = evaluator.split_logits(arch)
            for j, t in enumerate(tasks):
                right = task_hits(logits, labels, t)
                hits[i, j] = right[0::2].sum(), right[1::2].sum()
                images[j] = len(right[0::2]), len(right[1::2])
            bar.advance(1)
    return Measurements(np.stack([space.encode(a) for a in archs]), list(tasks), hits, images)


def measurements_for(run: RunDir, evaluator: TaskEvaluator, archs: Sequence[Arch],
                     tasks: Sequence[tuple[int, ...]], split: str) -> Measurements:
    """The run's saved measurements when they cover exactly these archs and tasks on this split
    and supernet; otherwise measure and save them."""
    key = {"split": split, "supernet_sha256": str(run.meta().get("weights_sha256"))}
    saved = Measurements.load(run.accuracy_measurements_path, key)
    vecs = np.stack([evaluator.net.space.encode(a) for a in archs])
    if saved is not None and np.array_equal(saved.vecs, vecs) and saved.tasks == list(tasks):
        info(f"accuracy predictor: reusing the measurements in {run.accuracy_measurements_path}")
        return saved
    m = measure(evaluator, archs, tasks)
    m.save(run.accuracy_measurements_path, key, evaluator.data.num_classes)
    return m


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


def se_residuals(m: Measurements, rows: np.ndarray, cols: np.ndarray, predictor: AccuracyPredictor,
                 pred: np.ndarray) -> np.ndarray:
    """(measured - predicted) / the predictor's standard error of each task, (rows, cols)."""
    se = np.stack([predictor.standard_error(pred[:, i], m.tasks[j]) for i, j in enumerate(cols)], 1)
    return (m.accuracy()[np.ix_(rows, cols)] - pred) / se


def size_balanced(x: np.ndarray, num_classes: int) -> torch.Tensor:
    """Sampling weights that give every task size (2, 3, ... classes, all) the same share of the
    steps: drawn uniformly, the many 4- and 5-class tasks drown the 2-class ones, whose levels
    the fit then misses by up to 1.4 pp (measured on validation)."""
    sizes = x[:, -num_classes:].sum(1).round().astype(np.int64)
    counts = np.bincount(sizes)
    return torch.from_numpy(1.0 / counts[sizes])


@dataclass
class MemberData:
    """What one ensemble member learns from: its input rows, their measured accuracy, its seed."""

    x: np.ndarray
    y: np.ndarray
    seed: int


def train_members(members: Sequence[MemberData], cfg: AccuracyFitConfig, num_classes: int) -> list[dict[str, torch.Tensor]]:
    """Every member's `PredictorNet` weights, all members trained at once: their layers are
    stacked and each step is one batched matmul per layer, so that 7 tiny MLPs cost about what
    one does (the fit is a stage of `edge_eas train`). Each member draws its own size-balanced
    batches from its own rows and starts from its own seed's initialisation."""
    nets = []
    for m in members:
        torch.manual_seed(m.seed)
        nets.append(PredictorNet(m.x.shape[1], cfg.hidden))
    layers = ("fc1", "fc2", "fc3")
    # (members, in, out) weights and (members, 1, out) biases, from each member's own init
    params = {f"{n}.{k}": nn.Parameter(torch.stack([
        getattr(net, n).weight.detach().t() if k == "weight" else getattr(net, n).bias.detach()[None]
        for net in nets])) for n in layers for k in ("weight", "bias")}
    opt = torch.optim.AdamW(params.values(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    offsets = np.cumsum([0] + [len(m.y) for m in members])
    xt = torch.from_numpy(np.concatenate([m.x for m in members]).astype(np.float32))
    yt = torch.from_numpy(np.concatenate([m.y for m in members]).astype(np.float32))
    weights = [size_balanced(m.x, num_classes) for m in members]
    gens = [torch.Generator().manual_seed(m.seed) for m in members]
    chunk = 500

    def draws(n: int) -> torch.Tensor:  # (n, members, batch) row indices into xt
        return torch.stack([torch.multinomial(w, n * cfg.batch_size, replacement=True, generator=g)
                            .view(n, cfg.batch_size) + int(off) for w, g, off in zip(weights, gens, offsets)], 1)

    with Progress(cfg.steps, f"accuracy predictor: fitting {len(members)} MLPs") as bar:
        for first in range(0, cfg.steps, chunk):
            for idx in draws(min(chunk, cfg.steps - first)):
                h = xt[idx]
                for n in layers:
                    h = torch.baddbmm(params[f"{n}.bias"], h, params[f"{n}.weight"])
                    h = torch.relu(h) if n != "fc3" else h
                loss = nn.functional.binary_cross_entropy_with_logits(h.squeeze(2), yt[idx])
                opt.zero_grad(set_to_none=True)
                (loss * len(members)).backward()  # each member's mean loss, as if trained alone
                opt.step()
                sched.step()
            bar.advance(min(chunk, cfg.steps - first))
    return [{f"{n}.{k}": (params[f"{n}.{k}"][i].t() if k == "weight" else params[f"{n}.{k}"][i, 0]).detach().clone()
             for n in layers for k in ("weight", "bias")} for i in range(len(members))]


def ensemble_weights(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The members' weights under m0., m1., ... (what `AccuracyPredictor` averages)."""
    return {f"m{i}.{k}": v.float() for i, state in enumerate(states) for k, v in state.items()}


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
    """Measure (or reuse the run's measurements), fit, score on held-out archs and tasks, and
    write RUN/accuracy.{safetensors,json}."""
    start = time.perf_counter()
    net, meta = load_supernet(run)
    space, n_cls = net.space, len(meta["class_names"])
    data = run_dataset(meta, resolution=space.resolution)
    rng = np.random.default_rng(cfg.seed)
    archs = measured_archs(space, cfg.archs, cfg.seed)
    tasks = all_tasks(n_cls, cfg.max_tasks, rng)
    evaluator = TaskEvaluator(net, data, split=cfg.split)  # the calibration scores its answers with it too
    m = measurements_for(run, evaluator, archs, tasks, cfg.split)
    acc, vecs = m.accuracy(), m.vecs

    # held out by architecture (never the smallest or largest: the fit should span the range) and by task
    order = 2 + rng.permutation(len(archs) - 2)
    held = np.sort(order[: int(round(cfg.held_out_archs * len(archs)))])
    fit = np.setdiff1d(np.arange(len(archs)), held)
    t_order = 1 + rng.permutation(len(tasks) - 1)  # the all-class task is always fitted
    t_held = np.sort(t_order[: int(round(cfg.held_out_tasks * (len(tasks) - 1)))])
    t_fit = np.setdiff1d(np.arange(len(tasks)), t_held)
    fit_tasks = [tasks[j] for j in t_fit]

    # the shipped predictor sees every task (a user's task is one of them where the data set has
    # few enough); one fitted without the held-out tasks scores how it does on a class set it never
    # saw; and, where the run has a generator, one fitted on the even images calibrates the margin
    x, y = pairs(space, vecs[fit], tasks, acc[fit], n_cls)
    seeds = [cfg.seed + i for i in range(cfg.members)]
    members = [MemberData(x, y, s) for s in seeds]
    members.append(MemberData(*pairs(space, vecs[fit], fit_tasks, acc[np.ix_(fit, t_fit)], n_cls), cfg.seed))
    calibrate = run.generator_path.is_file()
    if calibrate:
        members += [MemberData(x, pairs(space, vecs[fit], tasks, m.half(0)[fit], n_cls)[1], s) for s in seeds]
    states = train_members(members, cfg, n_cls)
    weights = ensemble_weights(states[:cfg.members])
    per_class = float(m.images.sum(1)[0]) / n_cls   # the all-class task holds every validation image

    def ensemble(weights: dict[str, torch.Tensor], images_per_class: float) -> AccuracyPredictor:
        return AccuracyPredictor(space, n_cls, {k: v.numpy() for k, v in weights.items()},
                                 AccuracyMeta(images_per_class, 0.0, 0.0))

    predictor = ensemble(weights, per_class)
    unseen = ensemble(ensemble_weights(states[cfg.members:cfg.members + 1]), per_class)
    # the half-image predictor's standard errors are those of the half it was fitted on
    half_a = ensemble(ensemble_weights(states[cfg.members + 1:]), float(m.images[0, 0]) / n_cls) if calibrate else None

    def predict(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.stack([predictor.predict_vectors(vecs[rows], tasks[j]) for j in cols], 1)

    held_pred = predict(held, t_fit)
    res = se_residuals(m, held, t_fit, predictor, held_pred).reshape(-1)
    scores = {"held_out_archs": errors(held_pred, acc[np.ix_(held, t_fit)]),
              # a one-member predictor fitted without these tasks
              "held_out_tasks": errors(np.stack([unseen.predict_vectors(vecs[held], tasks[j]) for j in t_held], 1),
                                       acc[np.ix_(held, t_held)]),
              "fit": errors(predict(fit, t_fit), acc[np.ix_(fit, t_fit)]),
              # the ceiling noise sets: how well one half of the images ranks the held-out archs
              # against the other half, beside how well the predictor ranks them against that half
              "noise": {"kendall_tau_half_vs_half": kendall_within_tasks(m.half(0)[np.ix_(held, t_fit)],
                                                                         m.half(1)[np.ix_(held, t_fit)]),
                        "kendall_tau_predictor_vs_half": kendall_within_tasks(held_pred,
                                                                              m.half(1)[np.ix_(held, t_fit)])}}
    calibration = None if half_a is None else calibrated_margin(run, half_a, evaluator, m, t_fit, cfg)
    errors_se = AccuracyMeta(per_class, float(np.percentile(res, 10)), float(np.percentile(res, 90)),
                             None if calibration is None else calibration.margin_se)
    doc = {"format": FORMAT, "config": asdict(cfg), **asdict(errors_se),
           "margin_calibration": None if calibration is None else asdict(calibration), "scores": scores,
           "archs": {"fit": int(len(fit)), "held_out": [archs[i].to_dict() for i in held]},
           "tasks": {"fit": [list(tasks[j]) for j in t_fit], "held_out": [list(tasks[j]) for j in t_held]},
           "images": int(m.images.sum(1)[0]), "seconds": time.perf_counter() - start}
    doc["weights_sha256"] = save_tensors(run.accuracy_path, weights)
    atomic_write_json(run.accuracy_meta_path, doc)
    h = scores["held_out_archs"]
    used = replace(predictor, errors=errors_se).margin
    info(f"accuracy predictor on {len(held)} held-out archs: MAE {h['mae_pp']:.2f} pp, Kendall tau "
         f"{h['kendall_tau_within_task']:.3f} within a task, p90 over-prediction {h['p90_over_prediction_pp']:.2f} pp; "
         + ("margin not calibrated (the run has no generator)" if calibration is None else
            f"margin {used:.1f} standard errors"))
    return doc


def calibrated_margin(run: RunDir, half_a: AccuracyPredictor, evaluator: TaskEvaluator, m: Measurements,
                      t_fit: np.ndarray, cfg: AccuracyFitConfig) -> MarginCalibration:
    """Cross-fit the targets' margin (host/accuracy_margin.py): `half_a`, fitted on the even
    images of the fitted archs, answers targets on `cfg.calibration_tasks` fitted tasks, scored
    on the odd images. Only for runs with a generator (its picks are the candidates)."""
    from edge_eas import generator as G
    space = evaluator.net.space
    fit_tasks = [m.tasks[j] for j in t_fit]
    rng = np.random.default_rng(cfg.seed + 2)
    chosen = [fit_tasks[i] for i in sorted(rng.choice(len(fit_tasks), min(cfg.calibration_tasks, len(fit_tasks)),
                                                      replace=False))]
    logits: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}

    def odd_images(vec: np.ndarray, classes: Sequence[int]) -> float:
        key = tuple(int(v) for v in vec)
        if key not in logits:
            logits[key] = evaluator.split_logits(space.decode(vec))
        return float(task_hits(*logits[key], classes)[1::2].mean())

    generator = G.load(run.path)
    return calibrate_margin(half_a, generator, generator.cost_table("mflops", None), chosen, odd_images)


def read_fit(run: RunDir) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The run's accuracy.json and predictor weights (checked against their digest); a fit from
    an older edge_eas is refused with the command that redoes it."""
    from edge_eas.errors import UserError
    from edge_eas.host.checkpoint import load_tensors
    if not run.accuracy_path.is_file() or not run.accuracy_meta_path.is_file():
        raise UserError(f"{run.path} has no accuracy predictor; fit one with `edge_eas fit-accuracy {run.path}`")
    meta = json.loads(run.accuracy_meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise UserError(f"{run.accuracy_meta_path} was written by an older edge_eas (margins in other units): run "
                        f"`edge_eas fit-accuracy {run.path}` again")
    weights = {k: v.float().numpy() for k, v in load_tensors(run.accuracy_path, meta.get("weights_sha256")).items()}
    return meta, weights


def load_predictor(run: RunDir) -> AccuracyPredictor:
    """The run's fitted predictor (`edge_eas fit-accuracy`)."""
    from edge_eas.archgen.accuracy import from_arrays
    meta, weights = read_fit(run)
    run_meta = run.meta()
    return from_arrays(run_meta["space"], len(run_meta["class_names"]), weights, errors_of(meta))


def errors_of(meta: dict[str, Any]) -> AccuracyMeta:
    """The predictor's error record in an accuracy.json."""
    return AccuracyMeta(float(meta["images_per_class"]), float(meta["se_residual_p10"]),
                        float(meta["se_residual_p90"]), meta.get("margin_se"))
