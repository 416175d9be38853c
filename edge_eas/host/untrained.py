"""`edge_eas init`: a run with initialised, untrained weights, for latency work at real scale.

Latency does not depend on trained weights, so everything latency-related (export, deploy,
bench, calibrate, `specialize --budget ms=X`) works on such a run, and a MobileNetV3-size space
can be studied on a machine that could never train it. The run, its bundle and every report
say `untrained`; commands that measure accuracy refuse it in one line (`require_trained`).

Its generator is untrained too. Zero-initialised, as training starts it, it would pick the
smallest choice everywhere, and every budget would get the same network. Instead its last
layer favours the largest choices and carries small random weights: each (task, budget)
starts near the largest arch, and the budget repair shrinks it along a path that the random
weights vary from task to task. So benches cover archs spread over the whole cost range.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_eas import __version__
from edge_eas.host.checkpoint import save_tensors, sha256_file
from edge_eas.errors import UserError
from edge_eas.common.fileio import atomic_write_json
from edge_eas.common.source import source_state
from edge_eas.host.generator_train import GeneratorConfig, GeneratorNet
from edge_eas.net.preprocess import Preprocess
from edge_eas.archgen.generator import default_cost_tables
from edge_eas.host.rundir import RunDir
from edge_eas.net.space import SearchSpace
from edge_eas.supernet import Supernet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LARGEST_CHOICE_BIAS = 2.0   # logit bonus of each decision's largest choice in an untrained generator
GENERATOR_WEIGHT_STD = 0.5  # spread of its random last layer: how much archs vary between tasks


def init_run(space: SearchSpace, out: Path, num_classes: int = 1000, seed: int = 0) -> RunDir:
    """Write RUN/run.json, the initialised supernet and an untrained generator."""
    out = Path(out)
    if (out / "run.json").exists():
        raise UserError(f"{out} already holds a run; choose another --out")
    if num_classes < 2:
        raise UserError(f"--num-classes must be at least 2, got {num_classes}")
    run = RunDir(out)
    torch.manual_seed(seed)
    net = Supernet(space, num_classes).eval()
    digest = save_tensors(run.weights_path, net.state_dict())
    channels = space.in_channels
    preprocess = Preprocess(channels, space.resolution, IMAGENET_MEAN[:channels] if channels == 3 else (0.5,),
                            IMAGENET_STD[:channels] if channels == 3 else (0.25,))
    meta: dict[str, Any] = {
        "format": 1, "untrained": True, "space": space.to_dict(), "data": None,
        "class_names": [f"class{i}" for i in range(num_classes)], "class_groups": {},
        "augmentation": {"flip": False, "crop_padding": 0}, "preprocess": preprocess.to_dict(),
        "config": {"seed": seed, "created_by": f"edge_eas {__version__} init"}, "weights_sha256": digest,
        "history": [], "throughput": None, "splits": {}, "source": source_state()}
    atomic_write_json(run.meta_path, meta)
    _write_generator(run, space, num_classes, seed)
    return run


def _write_generator(run: RunDir, space: SearchSpace, num_classes: int, seed: int) -> None:
    cfg = GeneratorConfig()
    gen = GeneratorNet(num_classes, space.decision_sizes(), cfg.hidden)
    rng = np.random.default_rng(seed)
    weight = rng.normal(0.0, GENERATOR_WEIGHT_STD, tuple(gen.fc2.weight.shape))
    bias = np.concatenate([np.eye(n)[-1] * LARGEST_CHOICE_BIAS for n in space.decision_sizes()])
    with torch.no_grad():
        gen.fc2.weight.copy_(torch.from_numpy(weight))
        gen.fc2.bias.copy_(torch.from_numpy(bias))
    save_tensors(run.generator_path, {k: v.half() for k, v in gen.state_dict().items()})
    tables = default_cost_tables(space, num_classes)
    lo, hi = (float(v) for v in tables["mflops"].cost_of_vectors(
        space, np.stack([space.encode(space.smallest()), space.encode(space.largest())])))
    atomic_write_json(run.generator_meta_path, {
        "untrained": True, "config": asdict(cfg), "decision_sizes": space.decision_sizes(),
        "budget_bounds": {"mflops": [lo, hi]}, "cost_tables": {k: v.to_dict() for k, v in tables.items()},
        "history": [], "train_seconds": 0.0, "supernet_sha256": json.loads(run.meta_path.read_text())["weights_sha256"],
        "weights_sha256": sha256_file(run.generator_path)})


def is_untrained(meta: dict[str, Any]) -> bool:
    return bool(meta.get("untrained"))


def require_trained(meta: dict[str, Any], run: Path, what: str) -> None:
    """One-line refusal for accuracy work on an `edge_eas init` run."""
    if is_untrained(meta):
        raise UserError(f"{run} is an untrained run (edge_eas init): it has no accuracy to {what}; latency work "
                        f"(export, deploy, bench, calibrate, specialize --budget ms=X) is what it is for")
