"""What leaving training images out of the bundle costs: `export --calibration-images 32 | 8 | 0`.

The device re-estimates every extracted sub-network's BatchNorm statistics on calibration
images. A bundle carries 32 training images per class by default; fewer leak less of the
training set, and 0 leaks none, the user then gives their own (unlabelled) images. This
benchmark exports the run's bundle at each setting and scores the torch-free runtime itself
(numpy engine, int8 weights, as on the device) on the same scenarios:

- bundle 32 per class (the default; the reference of the paired differences);
- bundle 8 per class;
- 0 in the bundle, the user's own images: 10 x classes unlabelled validation images of any
  class (what a user holding a sample of their data has);
- 0 in the bundle, the user's images of the task's classes only (32 each): what a user who
  deploys for this task alone sees, so BN statistics come from a narrower distribution.

Scenarios are those of benchmarks/specialisation.py (tasks of 2-5 classes, half inside one
superclass, budgets log-uniform; the generator picks the arch, the same for every setting)
plus all classes at the smallest and largest budgets. Accuracy is on the test split of the
task's classes; differences are paired by scenario, with 95 % bootstrap CIs.

    python -m benchmarks.calibration_images --run RUN [--scenarios 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks.common import add_allow_dirty, paired, require_clean_tree, save_result
from benchmarks.specialisation import make_scenarios

from edge_eas.host.bundle import export_bundle
from edge_eas.cost.flops import macs
from edge_eas.data import Dataset, run_dataset
from edge_eas.host.rundir import RunDir
from edge_eas.runtime import Runtime, SpecializedModel
from edge_eas.format.signing import generate_keypair
from edge_eas.net.space import SearchSpace

CHUNK = 1000  # images per engine call: bounded memory on large test splits


def task_test_split(data: Dataset, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The test images (uint8, as the device gets them) and labels of the task's classes."""
    x, y = data.split("test")
    sel = np.isin(y, classes)
    return x[sel], y[sel]


def predicted_classes(m: SpecializedModel, x: np.ndarray) -> np.ndarray:
    """The model's class ids for `x`, CHUNK images per engine call."""
    return np.concatenate([m.predict_classes(x[i:i + CHUNK]) for i in range(0, len(x), CHUNK)])


def score(rt: Runtime, classes: list[int], budget: float, data: Dataset) -> dict[str, Any]:
    """The runtime's specialised model for the task and budget, scored on the task's test images."""
    m = rt.specialize(classes=classes, budget_mflops=budget, engine="numpy")
    x, y = task_test_split(data, classes)
    pred = predicted_classes(m, x)
    return {"test_accuracy": float((pred == y).mean()), "mflops": float(m.mflops), "test_images": int(len(y)),
            "arch": m.arch.to_dict()}


def user_images(data: Dataset, classes: list[int] | None, per_class: int, seed: int) -> np.ndarray:
    """Unlabelled validation images a user would hold: of any class, or of the task's only."""
    x, y = data.split("val")
    rng = np.random.default_rng(seed)
    if classes is None:
        return x[rng.permutation(len(x))[:per_class * data.num_classes]]
    return np.concatenate([x[rng.permutation(np.flatnonzero(y == c))[:per_class]] for c in classes])


def scenario_arguments(doc: str) -> argparse.Namespace:
    """--run, --scenarios, --seed and --allow-dirty, parsed; refuses a dirty tree unless allowed."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a run from `edge_eas train` (with its generator)")
    ap.add_argument("--scenarios", type=int, default=30)
    ap.add_argument("--seed", type=int, default=2)
    add_allow_dirty(ap)
    args = ap.parse_args()
    require_clean_tree(args.allow_dirty)
    return args


def runtime_scenarios(meta: dict[str, Any], count: int, seed: int) -> tuple[SearchSpace, Dataset, list[dict[str, Any]]]:
    """The run's space and data, and the specialisation scenarios plus every class at the
    smallest and the largest budget."""
    space = SearchSpace.from_dict(meta["space"])
    n_cls = len(meta["class_names"])
    data = run_dataset(meta, resolution=space.resolution)
    scen = make_scenarios(space, n_cls, meta.get("class_groups", {}), count, seed)
    lo, hi = (macs(space, a, n_cls) / 1e6 for a in (space.smallest(), space.largest()))
    everything = list(range(n_cls))
    scen += [{"id": len(scen), "classes": everything, "budget_mflops": lo * 1.0001, "in_group": False},
             {"id": len(scen) + 1, "classes": everything, "budget_mflops": hi, "in_group": False}]
    return space, data, scen


def main() -> None:
    args = scenario_arguments(__doc__)
    meta = RunDir(args.run).meta()
    _, data, scen = runtime_scenarios(meta, args.scenarios, args.seed)
    n_cls = len(meta["class_names"])

    tmp = Path(tempfile.mkdtemp(prefix="eas-calib-bench-"))
    key = tmp / "key"
    pub, _ = generate_keypair(key)
    bundles = {n: tmp / f"calib{n}.eas" for n in (32, 8, 0)}
    sizes = {n: export_bundle(args.run, p, sign_key=key, calib_per_class=n)["bytes"] for n, p in bundles.items()}

    def fixed(n: int, images: np.ndarray | None = None) -> Callable[[list[int]], Runtime]:
        rt = Runtime.load(bundles[n], trusted_keys=[pub], calibration=images)
        return lambda classes: rt

    per_task_user = 32
    settings: dict[str, Callable[[list[int]], Runtime]] = {
        "bundle 32 per class": fixed(32),
        "bundle 8 per class": fixed(8),
        f"0 in bundle; user's {10 * n_cls} unlabelled images, any class": fixed(0, user_images(data, None, 10, 0)),
        f"0 in bundle; user's images of the task's classes only ({per_task_user} each)":
            lambda classes: Runtime.load(bundles[0], trusted_keys=[pub],
                                         calibration=user_images(data, classes, per_task_user, 0)),
    }
    methods: dict[str, list[dict[str, Any]]] = {}
    t0 = time.perf_counter()
    for name, runtime_for in settings.items():
        rows = []
        for s in scen:
            rows.append({**s, **score(runtime_for(s["classes"]), s["classes"], s["budget_mflops"], data)})
        methods[name] = rows
        print(f"{name:70s} mean {100 * np.mean([r['test_accuracy'] for r in rows]):.2f}%  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)

    ids = list(range(len(scen)))
    ref = "bundle 32 per class"
    in_group = [i for i in ids if scen[i]["in_group"]]
    comparisons = {"all": paired(methods, ref, ids, args.seed)}
    if in_group:
        comparisons["in_group"] = paired(methods, ref, in_group, args.seed)
    for subset, comp in comparisons.items():
        for name, c in comp.items():
            print(f"[{subset}] 32/class - {name}: {c['mean_pp']:+.2f} pp, 95% CI [{c['ci95_pp'][0]:+.2f}, "
                  f"{c['ci95_pp'][1]:+.2f}] ({c['verdict']})")
    same_arch = all(rows[i]["arch"] == methods[ref][i]["arch"] for rows in methods.values() for i in ids)
    data_name = meta["data"].split(":")[0]
    save_result(f"calibration_images_{data_name}", {
        "run": str(args.run), "data": meta["data"], "engine": "numpy", "weights": "int8", "seed": args.seed,
        "sample": {"scenarios": len(scen), "in_group": sum(s["in_group"] for s in scen),
                   "all_class_scenarios": 2, "test_images_per_class": int(np.bincount(data.y_test).min()),
                   "same_arch_for_every_setting": same_arch},
        "bundle_bytes": {str(n): b for n, b in sizes.items()},
        "summary": {name: {"mean_test_accuracy": float(np.mean([r["test_accuracy"] for r in rows]))}
                    for name, rows in methods.items()},
        "comparisons": comparisons, "methods": methods}, allow_dirty=args.allow_dirty)


if __name__ == "__main__":
    main()
