"""Training the architecture generator through the frozen supernet (EAS, second half).

Each step samples (task, budget) scenarios; for each, the generator's per-decision logits
are sampled with straight-through Gumbel-softmax (a hard arch forward, soft gradients), the
supernet runs that arch in its soft mode on images of the task's classes (BN on the batch's
own statistics, i.e. recalibrated for the arch and task), and the loss is the task
cross-entropy over the task's classes plus a penalty on the *expected* cost above the budget.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_eas.host.checkpoint import (load_tensors, optimizer_from_tensors, optimizer_to_tensors,
                         rng_from_tensors, rng_to_tensors, save_tensors, sha256_file)
from edge_eas.common.console import Progress, info
from edge_eas.cost.flops import expected_macs
from edge_eas.data import Dataset, run_dataset
from edge_eas.errors import UserError
from edge_eas.common.fileio import atomic_write_json
from edge_eas.generator import RESOURCE_KINDS, budget_features, default_cost_tables, generator_inputs
from edge_eas.host.rundir import RunDir, load_supernet
from edge_eas.supernet import SoftArch
from edge_eas.net.tasks import TaskSampler
from edge_eas.host.train import MASKED_LOGIT


@dataclass
class GeneratorConfig:
    steps: int = 250
    scenarios_per_step: int = 6
    images_per_scenario: int = 64   # half from the task's classes, half from all classes (BN)
    hidden: int = 64
    lr: float = 3e-3
    penalty: float = 4.0           # weight of the over-budget log-cost penalty
    underuse_penalty: float = 1.0  # weight of the penalty for using less than `target_use` of the budget
    target_use: float = 0.85       # a larger net is usually more accurate: aim at >= 85 % of the budget
    tau_start: float = 2.0         # Gumbel-softmax temperature, annealed geometrically
    tau_end: float = 0.3
    task_min_size: int = 2
    task_max_size: int = 5
    task_full_prob: float = 0.1
    task_in_group: float = 0.5     # share of scenarios whose task lies inside one superclass (if any)
    task_agnostic: bool = False    # baseline: train on all-class tasks only
    # Images the task loss is measured on: the validation split, what searches select by and what
    # the supernet never trained on (on train images every arch looks alike: it fits them all).
    split: str = "val"
    seed: int = 0
    out_name: str = "generator"    # files RUN/<out_name>.safetensors / .json

    @classmethod
    def for_preset(cls, space: str, **overrides: Any) -> "GeneratorConfig":
        base: dict[str, Any] = {}
        if space == "fashion":  # a 28 px soft pass costs ~10x digits': smaller steps (~0.8 s each on 2 cores)
            base.update(steps=400, scenarios_per_step=4, images_per_scenario=64)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


class GeneratorNet(nn.Module):
    """MLP: [task multi-hot | budget | resource kind] -> concatenated per-decision logits.
    Mirrored by the numpy `ArchGenerator.logits` (layers fc1, fc2, ... with ReLU between)."""

    def __init__(self, num_classes: int, decision_sizes: list[int], hidden: int) -> None:
        super().__init__()
        self.decision_sizes = decision_sizes
        # One hidden layer is plenty for a ~15-dimensional input and keeps the bundle small.
        self.fc1 = nn.Linear(num_classes + 1 + len(RESOURCE_KINDS), hidden)
        self.fc2 = nn.Linear(hidden, sum(decision_sizes))
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))

    def split(self, logits: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.split(logits, self.decision_sizes, dim=-1))


class GeneratorTrainer:
    def __init__(self, run: RunDir, cfg: GeneratorConfig, data: Dataset | None = None) -> None:
        self.run, self.cfg = run, cfg
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.net, self.meta = load_supernet(run, self.device)
        self.net = self.net.to(memory_format=torch.channels_last)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.space = self.net.space
        self.num_classes = len(self.meta["class_names"])
        self.data = data or run_dataset(self.meta, resolution=self.space.resolution)
        torch.manual_seed(cfg.seed)
        self.gen = GeneratorNet(self.num_classes, self.space.decision_sizes(), cfg.hidden).to(self.device)
        self.opt = torch.optim.Adam(self.gen.parameters(), lr=cfg.lr)
        self.rng = np.random.default_rng(cfg.seed)
        groups = tuple(tuple(g) for g in self.meta.get("class_groups", {}).values())
        self.sampler = TaskSampler(self.num_classes, cfg.task_min_size, cfg.task_max_size, cfg.task_full_prob,
                                   groups, cfg.task_in_group)
        self.tables = default_cost_tables(self.space, self.num_classes)
        self.lo, self.hi = (float(v) for v in self.tables["mflops"].cost_of_vectors(
            self.space, np.stack([self.space.encode(self.space.smallest()), self.space.encode(self.space.largest())])))
        self.x, self.y = self.data.split(cfg.split)
        self.by_class = [np.nonzero(self.y == c)[0] for c in range(self.num_classes)]
        # task images from `split`; the all-class half that sets BN statistics from train, as the
        # device's calibration images are
        self.x_bn = self.data.x_train
        self.step = 0

    def _scenario(self) -> tuple[np.ndarray, float]:
        if self.cfg.task_agnostic:
            classes = np.arange(self.num_classes)
        else:
            classes = np.array(self.sampler.sample(self.rng).classes)
        budget = float(np.exp(self.rng.uniform(np.log(self.lo), np.log(self.hi * 1.05))))
        return classes, budget

    def _images(self, classes: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The task's images followed by as many images of all classes: BN runs on the batch's
        statistics, and those must describe the training distribution (as recalibration on the
        device does), not only the task's classes; the loss uses the task's images only."""
        pool = np.concatenate([self.by_class[c] for c in classes])
        n = min(self.cfg.images_per_scenario // 2, len(pool))
        task_idx = self.rng.choice(pool, size=n, replace=False)
        bn_idx = self.rng.choice(len(self.x_bn), size=n, replace=False)
        images = np.concatenate([self.x[task_idx], self.x_bn[bn_idx]])
        x = torch.from_numpy(self.data.preprocess(images)).to(self.device).contiguous(
            memory_format=torch.channels_last)
        y = torch.from_numpy(np.concatenate([self.y[task_idx], self.data.y_train[bn_idx]])).long().to(self.device)
        return x, y

    def tau(self) -> float:
        frac = self.step / max(1, self.cfg.steps - 1)
        return self.cfg.tau_start * (self.cfg.tau_end / self.cfg.tau_start) ** frac

    def _task_loss(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, hard: SoftArch) -> torch.Tensor:
        """Cross-entropy over the task's classes on the task's half of the batch (BN on the whole
        batch's statistics). Input sides do not mix in one pass, and a straight-through gate on
        the sampled side gave the generator no usable signal (its picks stayed at 16 px until the
        largest budget), so every side runs: one pass each, weighted by the straight-through
        one-hot sample `hard.resolution` (the sampled side's loss in value; each side's own loss
        as the gradient of its weight)."""
        n_task = len(y) // 2

        def loss_at(side: int | None) -> torch.Tensor:
            with self.net.batch_stats():
                out = self.net.forward_soft(x, hard, side=side)
            return F.cross_entropy(out[:n_task].float().masked_fill(~mask, MASKED_LOGIT), y[:n_task])

        if hard.resolution is None:
            return loss_at(None)
        return sum((p * loss_at(side) for p, side in zip(hard.resolution, self.space.resolutions)),
                   torch.zeros((), device=self.device))

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        self.opt.zero_grad(set_to_none=True)
        scen = [self._scenario() for _ in range(cfg.scenarios_per_step)]
        hot = np.zeros((len(scen), self.num_classes), dtype=np.float32)
        for i, (classes, _) in enumerate(scen):
            hot[i, classes] = 1.0
        budgets = np.array([b for _, b in scen])
        inputs = torch.from_numpy(generator_inputs(hot, budget_features(budgets, self.lo, self.hi), "mflops"))
        logits = self.gen(inputs.to(self.device))
        tau = self.tau()
        total_ce, total_pen, over = 0.0, 0.0, 0
        loss = torch.zeros((), device=self.device)
        for i, (classes, budget) in enumerate(scen):
            segs = self.gen.split(logits[i])
            hard = [F.gumbel_softmax(s, tau=tau, hard=True) for s in segs]
            x, y = self._images(classes)
            mask = torch.zeros(self.num_classes, dtype=torch.bool, device=self.device)
            mask[torch.from_numpy(classes).to(self.device)] = True
            # the cost and the loss of the sampled arch (straight-through), not of the mixture: a
            # generator judged by its expected cost learnt to hedge over input sides, and its
            # argmax then used half its budget at 16 px
            sp = SoftArch.from_decisions(self.space, hard)
            ce = self._task_loss(x, y, mask, sp)
            exp_mflops = expected_macs(self.space, sp.depth, sp.kernel, sp.expand, self.num_classes,
                                       table=self.tables["mflops"],  # built once, in MFLOPs
                                       width_probs=sp.width, resolution_probs=sp.resolution)
            log_ratio = torch.log(exp_mflops) - float(np.log(budget))
            pen = cfg.penalty * F.relu(log_ratio) + cfg.underuse_penalty * F.relu(float(np.log(cfg.target_use)) - log_ratio)
            loss = loss + (ce + pen) / len(scen)
            total_ce += ce.item()
            total_pen += pen.item()
            over += int(exp_mflops.item() > budget)
        loss.backward()
        self.opt.step()
        self.step += 1
        return {"ce": total_ce / len(scen), "penalty": total_pen / len(scen), "over_budget": over / len(scen)}

    # ---- persistence --------------------------------------------------------------------
    @property
    def weights_path(self) -> Path:
        return self.run.path / f"{self.cfg.out_name}.safetensors"

    @property
    def meta_path(self) -> Path:
        return self.run.path / f"{self.cfg.out_name}.json"

    @property
    def checkpoint_path(self) -> Path:
        return self.run.checkpoint_dir / f"{self.cfg.out_name}-state.json"

    def save(self, final: bool, history: list[dict[str, Any]], seconds: float) -> None:
        ck = self.run.checkpoint_dir
        name = self.cfg.out_name
        opt_t, opt_meta = optimizer_to_tensors(self.opt)
        rng_t, rng_meta = rng_to_tensors({"generator": self.rng})
        digests = {"model": save_tensors(ck / f"{name}.safetensors", self.gen.state_dict()),
                   "optimizer": save_tensors(ck / f"{name}-opt.safetensors", opt_t),
                   "rng": save_tensors(ck / f"{name}-rng.safetensors", rng_t)}
        atomic_write_json(self.checkpoint_path, {"step": self.step, "digests": digests, "optimizer": opt_meta,
                                                 "numpy_rng": rng_meta, "history": history, "seconds": seconds})
        if final:
            # fp16 is ample for argmax decisions and halves what every bundle carries; the
            # rounding happens once, here, so host and device run the very same weights.
            save_tensors(self.weights_path, {k: v.half() for k, v in self.gen.state_dict().items()})
            atomic_write_json(self.meta_path, {
                "config": asdict(self.cfg), "decision_sizes": self.space.decision_sizes(),
                "budget_bounds": {"mflops": [self.lo, self.hi]},
                "cost_tables": {k: v.to_dict() for k, v in self.tables.items()},
                "history": history, "train_seconds": seconds,
                "supernet_sha256": self.meta.get("weights_sha256"),
                "weights_sha256": sha256_file(self.weights_path)})

    def resume(self) -> tuple[list[dict[str, Any]], float]:
        if not self.checkpoint_path.is_file():
            return [], 0.0
        st = json.loads(self.checkpoint_path.read_text())
        ck, name, d = self.run.checkpoint_dir, self.cfg.out_name, st["digests"]
        self.gen.load_state_dict(load_tensors(ck / f"{name}.safetensors", d["model"]))
        optimizer_from_tensors(self.opt, load_tensors(ck / f"{name}-opt.safetensors", d["optimizer"]), st["optimizer"])
        rng_from_tensors(load_tensors(ck / f"{name}-rng.safetensors", d["rng"]), st["numpy_rng"],
                         {"generator": self.rng})
        self.step = st["step"]
        return st["history"], st["seconds"]

    def fit(self, resume: bool = False) -> dict[str, Any]:
        history, seconds = self.resume() if resume else ([], 0.0)
        start = time.perf_counter() - seconds
        name = "generator" + (" (task-agnostic)" if self.cfg.task_agnostic else "")
        window: list[dict[str, float]] = []
        with Progress(self.cfg.steps, name) as bar:
            bar.advance(self.step)
            while self.step < self.cfg.steps:
                st = self.train_step()
                window.append(st)
                bar.advance(1, f"ce {st['ce']:.3f} over-budget {st['over_budget']:.2f} tau {self.tau():.2f}")
                if self.step % 50 == 0 or self.step == self.cfg.steps:
                    history.append({"step": self.step, **{k: float(np.mean([w[k] for w in window])) for k in st}})
                    window = []
                    self.save(final=self.step == self.cfg.steps, history=history,
                              seconds=time.perf_counter() - start)
        if not self.weights_path.is_file():
            self.save(final=True, history=history, seconds=time.perf_counter() - start)
        return {"steps": self.step, "seconds": time.perf_counter() - start,
                "final": history[-1] if history else {}}


def train_generator(run: RunDir, cfg: GeneratorConfig | None = None, resume: bool = False,
                    data: Dataset | None = None) -> dict[str, Any]:
    cfg = cfg or GeneratorConfig()
    if not run.is_complete():
        raise UserError(f"{run.path} has no trained supernet; run `edge_eas train --out {run.path}` first")
    trainer = GeneratorTrainer(run, cfg, data)
    info(f"training the {'task-agnostic ' if cfg.task_agnostic else ''}generator: {cfg.steps} steps x "
         f"{cfg.scenarios_per_step} scenarios")
    return trainer.fit(resume)
