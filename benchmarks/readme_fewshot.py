"""README section for benchmarks/fewshot.py (used by readme_results.py): task heads fitted on the
device from k examples per class, against pixel nearest-class-mean, imprinting and the ceiling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.readme_fashion import ci, pct

SUBSETS = {"all": "all tasks", "in_tops": "inside tops (Coat new: the hard case)",
           "in_footwear": "inside footwear (Sneaker new)", "in_other": "inside other (Bag new)",
           "across_groups": "across superclasses", "coat_in_tops": "Coat inside tops"}


def _verdict(c: dict[str, Any]) -> str:
    return {"win": "above", "loss": "below", "tie": "level with"}[c["verdict"]]


def fewshot_section(doc: dict[str, Any]) -> list[str]:
    new, known, s = doc["new_class"], doc["known_class"], doc["sample"]
    fit = next(k for k in new["k10"]["all"]["mean_accuracy"] if k.startswith("fit_") and "nearest" not in k)
    k10 = new["k10"]["all"]
    vs_pixels, vs_ceiling = k10["fit_minus"]["pixel_ncm"], k10["fit_minus"]["ceiling"]
    known10 = known["k10"]["fit_minus"]["masked"]
    goal_pixels = "met" if vs_pixels["mean_pp"] >= 15 else "missed"
    goal_ceiling = "met" if vs_ceiling["mean_pp"] >= -8 else "missed"
    goal_known = "met" if known10["mean_pp"] >= -0.3 else "missed"
    held = ", ".join(doc["held_out_names"])
    lines = [f"### Your own classes: task heads fitted on the device from k examples (Fashion-MNIST, {held} "
             "never seen)", "",
             f"With 10 examples per class, the fitted head is {vs_pixels['mean_pp']:+.1f} pp "
             f"[{vs_pixels['ci95_pp'][0]:+.1f}, {vs_pixels['ci95_pp'][1]:+.1f}] from nearest class mean on raw pixels "
             f"(goal ≥ +15: {goal_pixels}) and {vs_ceiling['mean_pp']:+.1f} pp [{vs_ceiling['ci95_pp'][0]:+.1f}, "
             f"{vs_ceiling['ci95_pp'][1]:+.1f}] from the full-data run's own head (goal within 8 pp: {goal_ceiling}) "
             f"on {k10['tasks']} tasks with a class the supernet never saw; on known-class tasks it is "
             f"{ci(known10)} from the masked head (goal ≥ −0.3 pp: {goal_known}).", "",
             "| shots per class | pixel nearest mean | imprinting only | fitted head | full-data ceiling | "
             "fitted − pixels | fitted − ceiling |", "|---|---|---|---|---|---|---|"]
    for k in doc["shots"]:
        a = new[f"k{k}"]["all"]
        m, d = a["mean_accuracy"], a["fit_minus"]
        lines.append(f"| {k} | {pct(m['pixel_ncm'])} | {pct(m['imprint'])} | {pct(m[fit])} | {pct(m['ceiling'])} | "
                     f"{ci(d['pixel_ncm'])} | {ci(d['ceiling'])} |")
    by = new["k10"]
    shown = [k for k in SUBSETS if k in by and k != "all" and not  # every task inside tops holds Coat: same rows
             (k == "coat_in_tops" and by[k]["tasks"] == by.get("in_tops", {}).get("tasks"))]
    ties = [SUBSETS[k] for k in shown if by[k]["fit_minus"]["pixel_ncm"]["verdict"] != "win"]
    far = [SUBSETS[k] for k in shown if by[k]["fit_minus"]["ceiling"]["mean_pp"] < -8]
    plain = (f"By superclass the fitted head beats pixels everywhere but {', '.join(ties)}, where the two tie"
             if ties else "By superclass the fitted head beats pixels everywhere")
    plain += (f"; it stays within 8 pp of the ceiling everywhere but {', '.join(far)}." if far
              else "; it stays within 8 pp of the ceiling everywhere.")
    lines += ["", plain + " At 10 shots (a task inside a superclass holds that superclass's held-out class):", "",
              "| tasks | n | pixel nearest mean | fitted head | ceiling | fitted − pixels | fitted − ceiling |",
              "|---|---|---|---|---|---|---|"]
    for key in ["all", *shown]:
        a, label = by[key], SUBSETS[key]
        m, d = a["mean_accuracy"], a["fit_minus"]
        lines.append(f"| {label} | {a['tasks']} | {pct(m['pixel_ncm'])} | {pct(m[fit])} | {pct(m['ceiling'])} | "
                     f"{ci(d['pixel_ncm'])} | {ci(d['ceiling'])} |")
    if "fit_nearest_rule" in k10["fit_minus"]:
        r = k10["fit_minus"]["fit_nearest_rule"]
        lines += ["", f"The task vector for new classes: the default, all classes, is {_verdict(r)} the \"nearest\" "
                      f"rule (the known classes the shared head finds closest to each new one) by {ci(r)} at 10 shots, "
                      f"so the default stays the simpler rule." if r["verdict"] != "loss" else
                  f"The task vector for new classes: the \"nearest\" rule beats the default (all classes) by "
                  f"{-r['mean_pp']:.2f} pp at 10 shots [{-r['ci95_pp'][1]:+.2f}, {-r['ci95_pp'][0]:+.2f}]."]
    lines += ["", f"Known classes: the fitted head against the masked head of the full-data run, on "
                  f"{s['known_class_tasks']} tasks of 2–5 known classes.", "",
              "| shots per class | masked head | fitted head | fitted − masked |", "|---|---|---|---|"]
    for k in doc["shots"]:
        a = known[f"k{k}"]
        lines.append(f"| {k} | {pct(a['mean_accuracy']['masked'], 2)} | {pct(a['mean_accuracy'][fit], 2)} | "
                     f"{ci(a['fit_minus']['masked'])} |")
    c = doc["cost"]
    sel = doc.get("selection_from_val")
    in_group = sum(1 for t in doc["new_tasks"] if t["group"])
    lines += ["", f"Cost on `local` (x86-64, 1 thread): features and fit for {c['labels']} classes × {c['shots']} "
                  f"examples take {1000 * c['seconds_median']:.0f} ms (median of 5; goal ≤ 500 ms) and "
                  f"{c['peak_extra_mib']:.1f} MiB of extra peak memory by tracemalloc (goal ≤ 20 MiB), on "
                  f"{c['feature_dim']} features. " + arm64_line(), "",
              f"Sample: {s['new_class_tasks']} new-class tasks of 2–5 classes ({in_group} inside one superclass: "
              f"all the tasks there are that hold a superclass's held-out class; the rest across superclasses) and "
              f"{s['known_class_tasks']} known-class tasks, {s['draws']} draws of the shots per task and k (the 5 "
              f"shots are the first 5 of the 10), {s['eval_images_per_class']:,} {doc['split']} images per class; one "
              f"seed-0 run per arm (held out: {held}; full data: the Fashion default run), the network the generator "
              f"picks at {doc['budget_mflops']:.1f} MFLOPs, features from the numpy engine with BN on the bundle's "
              f"all-class images. A task's figure is its mean over draws; differences are paired by task with a 95 % "
              f"bootstrap CI. Fit settings: pull {doc['fit_config']['pull']:g} on known rows, "
              f"{doc['fit_config']['pull_new']:g} on new ones, {doc['fit_config']['steps']} steps"
              + (f", chosen on the validation split ({sel['rule']}; [`{sel['file']}`](benchmarks/results/{sel['file']}), "
                 f"commit {sel['commit']})." if sel else ".")]
    return lines


def arm64_line() -> str:
    """The same fit on the arm64 stand-in (benchmarks/fewshot_arm64.py), when it was measured."""
    path = Path(__file__).parent / "results" / "fewshot_arm64.json"
    if not path.is_file():
        return "The arm64 stand-in was not measured."
    d = json.loads(path.read_text())
    return (f"Through the device agent (`--examples`, whose timing also covers the features of the bundle's "
            f"calibration images), {d['labels']} labels × {d['shots']} images at 1 thread took "
            f"{d['local_median_s']:.2f} s here and {d['arm64_median_s']:.2f} s on the arm64 stand-in under qemu, "
            f"{d['slowdown']:.1f}× slower (median of {d['repeats']}; [`fewshot_arm64.json`]"
            f"(benchmarks/results/fewshot_arm64.json), commit {d['commit']}).")
