"""What a user would otherwise pay: the generator's sub-network for a hard in-group task, taken
from the supernet (BN recalibrated, no training), against the same architecture trained from
scratch on only that task's classes.

For each task the generator picks the arch at one budget (default: the geometric middle of the
space's MFLOPs range). The scratch model is a plain network of that arch (supernet/static.py)
trained with the supernet's recipe (SGD + Nesterov, warm-up then cosine, label smoothing, the
run's augmentation) for the run's epoch count over the task's training images. Both are scored
on the task's test images. Paired differences (EAS - scratch) with a 95 % bootstrap CI over
tasks; the scratch training time is what one more task costs a user without the supernet.

    python -m benchmarks.scratch_baseline --run RUN [--tasks 0,2,4,6 0,6 2,4 4,6 5,7,9] [--epochs N]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import add_allow_dirty, paired, require_clean_tree, save_result

import torch
import torch.nn.functional as F

import edge_eas.generator as G
from edge_eas.cost.flops import macs
from edge_eas.data import Dataset, augment, run_dataset
from edge_eas.host.evaluate import TaskEvaluator
from edge_eas.host.rundir import RunDir, load_supernet
from edge_eas.net.space import Arch, SearchSpace
from edge_eas.supernet.static import SubNet
from edge_eas.net.tasks import Task
from edge_eas.host.train import TrainConfig, lr_at

HARD_FASHION_TASKS = ("0,2,4,6", "0,6", "2,4", "4,6", "5,7,9")  # tops and footwear: the confusable ones


def to_tensor(data: Dataset, images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(data.preprocess(images)).contiguous(memory_format=torch.channels_last)


def train_from_scratch(space: SearchSpace, arch: Arch, data: Dataset, classes: list[int], cfg: TrainConfig,
                       seed: int) -> tuple[SubNet, float]:
    """The arch as a plain network, trained on the task's classes only (labels 0..k-1)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    sel = np.isin(data.y_train, classes)
    x, y = data.x_train[sel], np.searchsorted(classes, data.y_train[sel])
    model = SubNet(space, arch, len(classes)).to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0}],
                          lr=cfg.lr, momentum=0.9, nesterov=True)
    steps_per_epoch = max(1, len(y) // cfg.batch_size)
    start, step = time.perf_counter(), 0
    model.train()
    for _ in range(cfg.epochs):
        order = rng.permutation(len(y))
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            for g in opt.param_groups:
                g["lr"] = lr_at(cfg, step, steps_per_epoch)
            xb = to_tensor(data, augment(x[idx], rng, data.crop_padding, data.flip))
            loss = F.cross_entropy(model(xb), torch.from_numpy(y[idx]).long(), label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            step += 1
    model.eval()
    return model, time.perf_counter() - start


@torch.no_grad()
def scratch_accuracy(model: SubNet, data: Dataset, classes: list[int]) -> float:
    sel = np.isin(data.y_test, classes)
    x, y = data.x_test[sel], np.searchsorted(classes, data.y_test[sel])
    pred = torch.cat([model(to_tensor(data, x[i:i + 1000])).argmax(1) for i in range(0, len(x), 1000)])
    return float((pred.numpy() == y).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a run from `edge_eas train` (with its generator)")
    ap.add_argument("--tasks", nargs="+", default=list(HARD_FASHION_TASKS), help="comma-separated class ids each")
    ap.add_argument("--budget-mflops", type=float, default=None, help="default: geometric middle of the space")
    ap.add_argument("--epochs", type=int, default=None, help="scratch training epochs (default: the run's)")
    ap.add_argument("--seed", type=int, default=0)
    add_allow_dirty(ap)
    args = ap.parse_args()
    require_clean_tree(args.allow_dirty)

    run = RunDir(args.run)
    net, meta = load_supernet(run)
    space, n_cls = net.space, len(meta["class_names"])
    data = run_dataset(meta, resolution=space.resolution)
    run_cfg = TrainConfig(**meta["config"])
    cfg = TrainConfig(**{**meta["config"], "epochs": args.epochs or run_cfg.epochs})
    lo, hi = (macs(space, a, n_cls) / 1e6 for a in (space.smallest(), space.largest()))
    budget = args.budget_mflops or math.sqrt(lo * hi)
    gen = G.load(run.path)
    tasks = [sorted(int(c) for c in t.split(",")) for t in args.tasks]
    archs = gen.generate(tasks, [budget] * len(tasks))
    ev = TaskEvaluator(net, data, split="test")
    rows: dict[str, list[dict[str, Any]]] = {"EAS (generator + supernet weights)": [], "trained from scratch": []}
    for classes, arch in zip(tasks, archs):
        eas = ev.accuracy(arch, Task(tuple(classes)))
        model, secs = train_from_scratch(space, arch, data, classes, cfg, args.seed)
        scratch = scratch_accuracy(model, data, classes)
        base = {"classes": classes, "budget_mflops": budget, "mflops": macs(space, arch, len(classes)) / 1e6,
                "arch": arch.to_dict(), "test_images": int(np.isin(data.y_test, classes).sum())}
        rows["EAS (generator + supernet weights)"].append({**base, "test_accuracy": eas})
        rows["trained from scratch"].append({**base, "test_accuracy": scratch, "train_seconds": secs,
                                             "epochs": cfg.epochs})
        print(f"task {classes}: EAS {100 * eas:.2f}%  scratch {100 * scratch:.2f}% ({secs:.0f} s)", flush=True)
    ref = "EAS (generator + supernet weights)"
    comp = paired(rows, ref, list(range(len(tasks))), args.seed)["trained from scratch"]
    print(f"EAS - scratch: {comp['mean_pp']:+.2f} pp, 95% CI [{comp['ci95_pp'][0]:+.2f}, {comp['ci95_pp'][1]:+.2f}] "
          f"({comp['verdict']})")
    data_name = meta["data"].split(":")[0]
    save_result(f"scratch_baseline_{data_name}", {
        "run": str(args.run), "data": meta["data"], "seed": args.seed,
        "sample": {"tasks": len(tasks), "budget_mflops": budget, "scratch_epochs": cfg.epochs,
                   "supernet_epochs": run_cfg.epochs, "test_images_per_class": int(np.bincount(data.y_test).min())},
        "summary": {name: {"mean_test_accuracy": float(np.mean([r["test_accuracy"] for r in rs]))}
                    for name, rs in rows.items()},
        "scratch_train_seconds_per_task": float(np.mean([r["train_seconds"] for r in rows["trained from scratch"]])),
        "comparison": {"EAS - scratch": comp}, "methods": rows}, allow_dirty=args.allow_dirty)


if __name__ == "__main__":
    main()
