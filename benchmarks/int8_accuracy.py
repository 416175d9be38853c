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

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.calibration_images import predicted_classes, runtime_scenarios, scenario_arguments, task_test_split
from benchmarks.common import paired, save_result

from edge_eas.host.bundle import export_bundle
from edge_eas.host.rundir import RunDir
from edge_eas.runtime import Runtime

ENGINES = ("tflite", "tflite-int8")  # the fp32 reference first


def main() -> None:
    args = scenario_arguments(__doc__)
    meta = RunDir(args.run).meta()
    space, data, scen = runtime_scenarios(meta, args.scenarios, args.seed)
    scen.append({"id": len(scen), "classes": list(range(len(meta["class_names"]))), "arch": "largest",
                 "in_group": False})

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
