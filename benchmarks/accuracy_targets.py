"""Does specialisation pay at equal accuracy? The seed's "more compact networks" claim, measured.

For each task (2-5 classes, half inside one superclass where the data has that many; Fashion has
19 such tasks, all taken) and each of 3 MFLOPs budgets B, the
target is what a user gets without specialisation: the test accuracy, on the task, of the
generator's all-class pick at B. `specialize --min-accuracy TARGET` (the same `meet_target` the
CLI and the device run) answers with the cheapest network the accuracy predictor says reaches
it (or, when only the margin puts the target out of reach, the likeliest network, flagged and
counted apart as "uncertain"); and, to show what the margin costs, the same search on the
predictor's point estimate (no margin). Reported per case: its MFLOPs and its measured latency
(this machine as the device, tflite, 1 thread) against the all-class pick's, and whether its
test accuracy reaches the target (within a stated tolerance). An oracle row gives the upper bound: the cheapest network among all
those this benchmark evaluated on test (the predictor's measured archs and every pick) whose test
accuracy reaches the target.

Also "honest targets": for targets spread over each task's predicted reachable range, the share
of answers whose test accuracy meets the requested figure, per task group. And the validation -
test gap of the all-class picks, since the predictor learns validation accuracy.

Medians come with 95 % bootstrap CIs over the cases (resampling tasks). Test images are used only
to score; the predictor was fitted on the validation split.

    python -m benchmarks.accuracy_targets --run RUN [--tasks 60] [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks.common import add_allow_dirty, require_clean_tree, save_result
from benchmarks.cost_model import measure_archs
from benchmarks.specialisation import make_scenarios

from edge_eas.archgen.targets import TargetUnreachable, candidate_vectors, meet_target
from edge_eas.cost.latency import latency_ms
from edge_eas.data import run_dataset
from edge_eas.host.accuracy_fit import AccuracyFitConfig, fit_accuracy, load_predictor, measured_archs
from edge_eas.host.arch_spread import arch_key
from edge_eas.host.bundle import export_bundle
from edge_eas.host.evaluate import TaskEvaluator, task_accuracy
from edge_eas.host.rundir import RunDir, load_supernet
from edge_eas.net.space import Arch
from edge_eas.runtime import Runtime
from edge_eas.workflows.specialise import Source

BUDGET_POINTS = (0.25, 0.5, 0.75)   # the budgets B, as fractions of the log MFLOPs range
HONEST_POINTS = (0.1, 0.3, 0.5, 0.7, 0.9)  # honest targets, as fractions of each task's reachable range
TOLERANCE_PP = 0.3


class SplitScores:
    """One split's logits of each arch evaluated (one pass per arch), so any task's accuracy is a lookup."""

    def __init__(self, evaluator: TaskEvaluator) -> None:
        self.evaluator = evaluator
        self.logits: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def accuracy(self, arch: Arch, classes: Sequence[int]) -> float:
        k = arch_key(arch)
        if k not in self.logits:
            self.logits[k] = self.evaluator.split_logits(arch)
        return task_accuracy(*self.logits[k], classes)


def median_ci(values: Sequence[float], seed: int, n: int = 10_000) -> dict[str, Any]:
    v = np.asarray(values, dtype=float)
    if not len(v):
        return {"median": None, "ci95": None, "n": 0}
    idx = np.random.default_rng(seed).integers(0, len(v), size=(n, len(v)))
    meds = np.median(v[idx], 1)
    return {"median": float(np.median(v)), "ci95": [float(np.percentile(meds, 2.5)), float(np.percentile(meds, 97.5))],
            "n": int(len(v))}


def share(flags: Sequence[bool]) -> float | None:
    return float(np.mean(flags)) if len(flags) else None


def summarise(cases: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, sel in (("all", cases), ("in_group", [c for c in cases if c["in_group"]]),
                      ("random_tasks", [c for c in cases if not c["in_group"]])):
        answered = [c for c in sel if c["specialised"] is not None]
        oracle = [c for c in sel if c["oracle"] is not None]
        point = [c for c in sel if c.get("point") is not None]
        out[name] = {
            "cases": len(sel), "answered": len(answered),
            "specialised": {
                "mflops_ratio": median_ci([c["specialised"]["mflops"] / c["all_class"]["mflops"] for c in answered], seed),
                "latency_ratio": median_ci([c["specialised"]["latency_ms"] / c["all_class"]["latency_ms"]
                                            for c in answered], seed),
                "target_met_on_test": share([c["specialised"]["met"] for c in answered]),
                # answers the margin does not cover (the prediction reaches the target, the margin does not)
                "uncertain_answers": sum(not c["specialised"]["certain"] for c in answered),
                "target_met_on_test_when_certain": share([c["specialised"]["met"] for c in answered
                                                          if c["specialised"]["certain"]]),
                "target_met_on_test_when_uncertain": share([c["specialised"]["met"] for c in answered
                                                            if not c["specialised"]["certain"]]),
                "shortfall_pp_when_missed": [round(100 * (c["specialised"]["test_accuracy"] - c["target"]), 2)
                                             for c in answered if not c["specialised"]["met"]]},
            # what the margin costs: the same search on the predictor's point estimate
            "point_prediction": {
                "mflops_ratio": median_ci([c["point"]["mflops"] / c["all_class"]["mflops"] for c in point], seed),
                "target_met_on_test": share([c["point"]["met"] for c in point]), "answered": len(point)},
            "oracle": {
                "mflops_ratio": median_ci([c["oracle"]["mflops"] / c["all_class"]["mflops"] for c in oracle], seed),
                "latency_ratio": median_ci([c["oracle"]["latency_ms"] / c["all_class"]["latency_ms"] for c in oracle],
                                           seed)}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a trained run (fit-accuracy is run on it if needed)")
    ap.add_argument("--tasks", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=int, default=30, help="timed runs per network (tflite, 1 thread)")
    add_allow_dirty(ap)
    args = ap.parse_args()
    require_clean_tree(args.allow_dirty)
    start = time.perf_counter()
    run = RunDir(args.run)
    if not run.accuracy_path.is_file():
        fit_accuracy(run)
    fit_doc = json.loads(run.accuracy_meta_path.read_text())
    src = Source.open(args.run)
    gen, predictor, space = src.generator, load_predictor(run), src.space
    table = gen.cost_table("mflops", None)
    net, meta = load_supernet(run)
    n_cls = len(meta["class_names"])
    data = run_dataset(meta, resolution=space.resolution)
    test, val = SplitScores(TaskEvaluator(net, data, split="test")), SplitScores(TaskEvaluator(net, data, split="val"))
    mflops = lambda a: float(table.cost_of_vectors(space, space.encode(a)[None])[0])  # noqa: E731

    # tasks: distinct, half inside one superclass where the data has that many (Fashion has only 19
    # distinct in-group tasks of 2-5 classes: then all of them, and random tasks fill the rest)
    tasks: list[dict[str, Any]] = []
    want_in = args.tasks // 2
    for sc in make_scenarios(space, n_cls, meta.get("class_groups", {}), 20 * args.tasks, args.seed):
        t = {"classes": sc["classes"], "in_group": sc["in_group"]}
        if sc["in_group"] and t not in tasks and sum(x["in_group"] for x in tasks) < want_in:
            tasks.append(t)
    for sc in make_scenarios(space, n_cls, {}, 20 * args.tasks, args.seed + 1):
        t = {"classes": sc["classes"], "in_group": False}
        if len(tasks) < args.tasks and not any(x["classes"] == t["classes"] for x in tasks):
            tasks.append(t)
    lo, hi = gen.bounds("mflops", table)
    budgets = [float(math.exp(math.log(lo) + f * (math.log(hi) - math.log(lo)))) for f in BUDGET_POINTS]
    all_picks = [space.decode(gen.generate_vectors([list(range(n_cls))], np.array([b]), "mflops", table=table)[0])
                 for b in budgets]

    # the same predictor without its margin: what the search finds on point estimates alone
    point_predictor = dataclasses.replace(predictor, errors=dataclasses.replace(predictor.errors, margin_se=0.0,
                                                                                se_residual_p10=0.0))
    # a task's candidates do not depend on the target: built once for the untimed searches
    cands = {tuple(t["classes"]): candidate_vectors(gen, t["classes"], "mflops", table) for t in tasks}
    cases, answer_ms = [], []
    for t in tasks:
        for b, allc in zip(budgets, all_picks):
            target = test.accuracy(allc, t["classes"])
            case = {**t, "budget_mflops": b, "target": target,
                    "all_class": {"arch": allc.to_dict(), "mflops": mflops(allc)}, "specialised": None}
            try:
                t0 = time.perf_counter()
                ans = meet_target(gen, predictor, t["classes"], target, "mflops", table)
                answer_ms.append(1000 * (time.perf_counter() - t0))
                real = test.accuracy(ans.arch, t["classes"])
                case["specialised"] = {"arch": ans.arch.to_dict(), "mflops": ans.cost, "test_accuracy": real,
                                       **ans.prediction.to_dict(), "certain": bool(ans.prediction.safe >= target),
                                       "met": real >= target - TOLERANCE_PP / 100}
            except TargetUnreachable as exc:
                case["unreachable"] = str(exc)
            try:
                pt = meet_target(gen, point_predictor, t["classes"], target, "mflops", table,
                                 candidates=cands[tuple(t["classes"])])
                real = test.accuracy(pt.arch, t["classes"])
                case["point"] = {"arch": pt.arch.to_dict(), "mflops": pt.cost, "test_accuracy": real,
                                 "met": real >= target - TOLERANCE_PP / 100}
            except TargetUnreachable:
                case["point"] = None
            cases.append(case)

    # the oracle: the cheapest evaluated arch whose test accuracy reaches the target
    pool = {arch_key(a): a for a in measured_archs(space, fit_doc["config"]["archs"], fit_doc["config"]["seed"])}
    pool.update({arch_key(a): a for a in all_picks})
    pool.update({arch_key(Arch.from_dict(c["specialised"]["arch"])): Arch.from_dict(c["specialised"]["arch"])
                 for c in cases if c["specialised"]})
    pool_cost = {k: mflops(a) for k, a in pool.items()}
    for c in cases:
        ok = [k for k, a in pool.items() if test.accuracy(a, c["classes"]) >= c["target"] - TOLERANCE_PP / 100]
        best = min(ok, key=lambda k: pool_cost[k]) if ok else None
        c["oracle"] = None if best is None else {"arch": json.loads(best), "mflops": pool_cost[best]}

    # latency of every network a row names: this machine as the device, tflite, 1 thread
    named = {arch_key(Arch.from_dict(c[r]["arch"])) for c in cases for r in ("all_class", "specialised", "oracle") if c[r]}
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "model.eas"
        export_bundle(args.run, bundle)
        rt = Runtime.load(bundle)
        order = sorted(named)
        rows = measure_archs(rt, [pool[k] if k in pool else Arch.from_dict(json.loads(k)) for k in order],
                             "tflite", 1, args.runs)
    ms = {k: latency_ms(r) for k, r in zip(order, rows)}
    for c in cases:
        for r in ("all_class", "specialised", "oracle"):
            if c[r]:
                c[r]["latency_ms"] = ms[arch_key(Arch.from_dict(c[r]["arch"]))]

    # honest targets: spread over each task's predicted reachable range
    honest = []
    for t in tasks:
        cand = cands[tuple(t["classes"])]
        safe = predictor.safe_vectors(cand, t["classes"])
        low = float(predictor.safe_vectors(space.encode(space.smallest())[None], t["classes"])[0])
        top = float(safe.max())
        for f in HONEST_POINTS:
            target = low + f * (top - low)
            ans = meet_target(gen, predictor, t["classes"], target, "mflops", table, candidates=cand)
            real = test.accuracy(ans.arch, t["classes"])
            honest.append({"classes": t["classes"], "in_group": t["in_group"], "target": target,
                           "test_accuracy": real, "mflops": ans.cost, "met": real >= target,
                           "met_within_tolerance": real >= target - TOLERANCE_PP / 100})

    # the validation - test gap of the all-class picks (what a predictor of validation accuracy cannot see)
    gaps = [100 * (val.accuracy(a, t["classes"]) - test.accuracy(a, t["classes"])) for a in all_picks for t in tasks]

    def honest_share(sel: list[dict[str, Any]]) -> dict[str, Any]:
        return {"answers": len(sel), "met": share([h["met"] for h in sel]),
                "met_within_tolerance": share([h["met_within_tolerance"] for h in sel])}

    result = {
        "run": {"path": str(args.run), "supernet_sha256": meta.get("weights_sha256"), "data": meta["data"]},
        "sample": {"tasks": len(tasks), "in_group_tasks": sum(t["in_group"] for t in tasks), "budgets": len(budgets),
                   "cases": len(cases), "test_images": int(len(data.split("test")[1])), "seeds": [args.seed],
                   "tolerance_pp": TOLERANCE_PP, "budget_points": list(BUDGET_POINTS),
                   "honest_points": list(HONEST_POINTS), "timed_runs": args.runs,
                   "networks_evaluated_on_test": len(test.logits), "latency": "this machine, tflite, 1 thread"},
        "budgets_mflops": budgets,
        "predictor": {"scores": fit_doc["scores"], "images_per_class": fit_doc["images_per_class"],
                      "se_residual_p10": fit_doc["se_residual_p10"], "se_residual_p90": fit_doc["se_residual_p90"],
                      "margin_se_used": predictor.margin,
                      "margin_calibration": fit_doc.get("margin_calibration"),
                      "archs_measured": fit_doc["config"]["archs"], "fit_seconds": fit_doc["seconds"]},
        "summary": summarise(cases, args.seed),
        "by_budget": {f"{b:.4f}": summarise([c for c in cases if c["budget_mflops"] == b], args.seed)["all"]
                      for b in budgets},
        "honest_targets": {"all": honest_share(honest), "in_group": honest_share([h for h in honest if h["in_group"]]),
                           "random_tasks": honest_share([h for h in honest if not h["in_group"]])},
        "val_minus_test_pp_all_class_picks": {"mean": float(np.mean(gaps)), "median": float(np.median(gaps)),
                                              "pairs": len(gaps)},
        "answer_ms": {"median": float(np.median(answer_ms)), "max": float(np.max(answer_ms)),
                      "where": "this host, numpy (meet_target alone)"},
        "cases": cases, "honest": honest, "seconds": time.perf_counter() - start,
    }
    save_result(f"accuracy_targets_{meta['data']}", result, args.allow_dirty)


if __name__ == "__main__":
    main()
