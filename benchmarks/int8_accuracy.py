"""What integer execution costs in accuracy: the tflite-int8 engine against fp32 TFLite, on the
device's own path (a default bundle, int8 weights, BN recalibrated and int8 ranges calibrated on
its 32 training images per class).

Scenarios are those of benchmarks/calibration_images.py (the specialisation scenarios: tasks of
2-5 classes, half inside one superclass, budgets log-uniform; plus all classes at the smallest and
largest budgets), and one more: every class on the largest network. The generator picks each
arch once; both engines run that same arch. Accuracy is on the test split of the task's classes;
differences are paired by scenario, with 95 % bootstrap CIs; top-1 agreement between the two
engines is counted over every test image scored.

    python -m benchmarks.int8_accuracy --run RUN [--scenarios 30]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.calibration_images import predicted_classes, task_test_split
from benchmarks.common import add_allow_dirty, paired, require_clean_tree, save_result
from benchmarks.specialisation import make_scenarios

from edge_eas.cost.flops import macs
from edge_eas.data import load_dataset
from edge_eas.host.bundle import export_bundle
from edge_eas.host.rundir import RunDir
from edge_eas.net.space import SearchSpace
from edge_eas.runtime import Runtime

ENGINES = ("tflite", "tflite-int8")  # the fp32 reference first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a run from `edge_eas train` (with its generator)")
    ap.add_argument("--scenarios", type=int, default=30)
    ap.add_argument("--seed", type=int, default=2)
    add_allow_dirty(ap)
    args = ap.parse_args()
    require_clean_tree(args.allow_dirty)

    meta = RunDir(args.run).meta()
    space = SearchSpace.from_dict(meta["space"])
    n_cls = len(meta["class_names"])
    data = load_dataset(meta["data"], resolution=space.resolution, seed=meta["config"]["seed"])
    scen = make_scenarios(space, n_cls, meta.get("class_groups", {}), args.scenarios, args.seed)
    lo, hi = (macs(space, a, n_cls) / 1e6 for a in (space.smallest(), space.largest()))
    everything = list(range(n_cls))
    scen += [{"id": len(scen), "classes": everything, "budget_mflops": lo * 1.0001, "in_group": False},
             {"id": len(scen) + 1, "classes": everything, "budget_mflops": hi, "in_group": False},
             {"id": len(scen) + 2, "classes": everything, "arch": "largest", "in_group": False}]

    with tempfile.TemporaryDirectory(prefix="eas-int8-bench-") as tmp:
        bundle = Path(tmp) / "model.eas"
        export_bundle(args.run, bundle)
        rt = Runtime.load(bundle, trusted_keys=[])
        methods: dict[str, list[dict[str, Any]]] = {e: [] for e in ENGINES}
        agree, seen = 0, 0
        for s in scen:
            x, y = task_test_split(data, s["classes"])
            if s.get("arch") == "largest":
                arch = space.largest()
            else:
                arch = rt.specialize(classes=s["classes"], budget_mflops=s["budget_mflops"], engine="numpy").arch
            preds = {}
            for engine in ENGINES:
                m = rt.specialize(classes=s["classes"], arch=arch, engine=engine)
                preds[engine] = predicted_classes(m, x)
                methods[engine].append({**s, "test_accuracy": float((preds[engine] == y).mean()),
                                        "mflops": float(m.mflops), "test_images": int(len(y)),
                                        "arch": arch.to_dict()})
            agree += int((preds["tflite"] == preds["tflite-int8"]).sum())
            seen += len(y)
            print(f"scenario {s['id']:2d} classes {s['classes']}: fp32 {100 * methods['tflite'][-1]['test_accuracy']:.2f}"
                  f" % int8 {100 * methods['tflite-int8'][-1]['test_accuracy']:.2f} %", flush=True)

    ids = list(range(len(scen)))
    in_group = [i for i in ids if scen[i]["in_group"]]
    comparisons = {"all": paired(methods, "tflite", ids, args.seed)}
    if in_group:
        comparisons["in_group"] = paired(methods, "tflite", in_group, args.seed)
    largest = {e: methods[e][-1]["test_accuracy"] for e in ENGINES}
    c = comparisons["all"]["tflite-int8"]
    print(f"fp32 - int8: {c['mean_pp']:+.2f} pp [{c['ci95_pp'][0]:+.2f}, {c['ci95_pp'][1]:+.2f}]; largest all-class "
          f"fp32 {100 * largest['tflite']:.2f} % int8 {100 * largest['tflite-int8']:.2f} %; top-1 agreement "
          f"{agree / seen:.2%} of {seen} images")
    data_name = meta["data"].split(":")[0]
    save_result(f"int8_accuracy_{data_name}", {
        "run": str(args.run), "run_commit": meta.get("commit"), "data": meta["data"], "seed": args.seed,
        "reference": "tflite (fp32 graph, the bundle's int8 weights dequantised)",
        "sample": {"scenarios": len(scen), "in_group": sum(s["in_group"] for s in scen), "all_class_scenarios": 3,
                   "test_images_per_class": int(np.bincount(data.y_test).min())},
        "summary": {e: {"mean_test_accuracy": float(np.mean([r["test_accuracy"] for r in rows]))}
                    for e, rows in methods.items()},
        "largest_all_class": largest, "top1_agreement": agree / seen, "images_compared": seen,
        "comparisons": comparisons, "methods": methods}, allow_dirty=args.allow_dirty)


if __name__ == "__main__":
    main()
