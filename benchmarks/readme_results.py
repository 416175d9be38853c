"""Regenerate the README's Results section from benchmarks/results/*.json, so every figure
there traces to a JSON file and the command that produced it.

    python -m benchmarks.readme_results          # rewrites the block between the markers
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks import readme_fashion
from benchmarks.readme_fashion import pct
from benchmarks.readme_fewshot import fewshot_section
from edge_eas.host.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def runnable(command: str) -> str:
    """The recorded command as it runs today: results saved before the benchmarks became modules
    name the script (`python benchmarks/X.py ARGS`), which is now `python -m benchmarks.X ARGS`."""
    return re.sub(r"^python benchmarks/(\w+)\.py\b", r"python -m benchmarks.\1", command)


def commits_behind(commit: str | None) -> int | None:
    """Commits to edge_eas/ between `commit` and the head (None: unknown commit)."""
    if not commit:
        return None
    res = subprocess.run(["git", "rev-list", "--count", f"{commit}..HEAD", "--", "edge_eas/"], cwd=ROOT,
                         capture_output=True, text=True)
    return int(res.stdout.strip()) if res.returncode == 0 and res.stdout.strip().isdigit() else None


def provenance(doc: dict[str, Any], name: str) -> str:
    m = doc.get("machine", {})
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    behind = commits_behind(doc.get("commit"))
    age = "" if behind is None else (", at the head's edge_eas/" if behind == 0 else
                                     f", {behind} commit{'s' * (behind != 1)} to edge_eas/ behind the head")
    return (f"*`{runnable(doc.get('command', '?'))}` — {m.get('cpu', '?')}, {m.get('cores', '?')} cores{gpu}, "
            f"{doc.get('date', '?')[:10]}, commit {doc.get('commit') or '?'}{age} — "
            f"[`benchmarks/results/{name}.json`](benchmarks/results/{name}.json)*")


def check(max_behind: int | None) -> list[str]:
    """Why a section's JSON cannot stand in the README: no commit or dirty flag, a dirty tree, or
    (with `max_behind`) more commits to edge_eas/ behind the head than that."""
    problems = []
    for name, _ in SECTIONS:
        path = RESULTS / f"{name}.json"
        if not path.is_file():
            continue
        doc = json.loads(path.read_text())
        if not doc.get("commit") or "dirty" not in doc:
            problems.append(f"{name}.json: no commit or dirty flag: rerun python -m benchmarks.{doc.get('benchmark', '?')}")
        elif doc["dirty"] is not False:
            problems.append(f"{name}.json: written from a dirty tree (commit {doc['commit']}): rerun it from a clean one")
        elif max_behind is not None and (commits_behind(doc["commit"]) or 0) > max_behind:
            problems.append(f"{name}.json: {commits_behind(doc['commit'])} commits to edge_eas/ behind the head "
                            f"(at most {max_behind})")
    return problems


def generator_section(doc: dict[str, Any]) -> list[str]:
    s, methods = doc["summary"], doc["methods"]
    g = s["generation"]
    lines = ["### Architecture generator vs search (50 scenarios, digits)", "",
             f"50 scenarios generated in **{g['total_ms_median']:.2f} ms** in total on the CPU "
             f"({g['per_scenario_ms'] * 1000:.0f} µs each, numpy, repair included; EAS reports 50 in 0.1 s), "
             f"**{pct(s['budget_compliance'], 0)} within budget**. Search times are per scenario; "
             f"searches ran on {s['search_scenarios']} of the scenarios.", "",
             "| method | mean task accuracy (test) | within budget | mean budget use | search time / scenario |",
             "|---|---|---|---|---|"]
    for name, m in methods.items():
        lines.append(f"| {name} | {pct(m['mean_test_accuracy'], 2)} | {pct(m['budget_compliance'], 0)} | "
                     f"{m['mean_budget_use']:.2f} | {m['mean_search_seconds'] * 1000:.3g} ms |")
    lines += ["", f"Generator − evolution: {s['generator_vs_evolution_pp']:+.2f} pp at "
                  f"{s['search_speedup_vs_evolution']:,.0f}× less search time; generator − task-agnostic: "
                  f"{s['generator_vs_agnostic_pp']:+.2f} pp.", "",
              "![accuracy vs MFLOPs](benchmarks/results/generator_pareto.png)"]
    return lines


def task_dropout_section(doc: dict[str, Any]) -> list[str]:
    r = doc["results"]
    lines = [f"### Task-dropout ablation ({doc['data']}, {doc['epochs']} epochs each, {doc['tasks']} tasks of 2–5 classes)",
             "", "| sub-network | MFLOPs | 2–5-class tasks: with TD | without TD | all 10 classes: with TD | without TD "
                 "| all classes, no BN recalibration (TD) |", "|---|---|---|---|---|---|---|"]
    for arch in ("smallest", "median", "largest"):
        a, b = r["task_dropout"][arch], r["no_task_dropout"][arch]
        lines.append(f"| {arch} | {a['mflops']:.3f} | {pct(a['task_accuracy_mean'], 2)} | {pct(b['task_accuracy_mean'], 2)} "
                     f"| {pct(a['all_class_accuracy'], 2)} | {pct(b['all_class_accuracy'], 2)} | "
                     f"{pct(a['all_class_accuracy_without_bn_recalibration'], 1)} |")
    lines += ["", "Task accuracy: BN recalibrated on all-class calibration images, scored on the test images "
                  "of the task's classes. The last column shows what recalibration buys."]
    return lines


def cost_model_section(doc: dict[str, Any]) -> list[str]:
    lines = [f"### Latency model on `{doc['target']}`, digits networks ({doc['held_out']} held-out sub-networks)", "",
             "| engine/threads | prior | 5 meas. | 10 meas. | 20 meas. | block-profiled | profiled + 20 | "
             "Kendall τ (20 meas.) | MAPE (20 meas.) |", "|---|---|---|---|---|---|---|---|---|"]
    for key, r in doc["results"].items():
        lines.append(f"| {key} | {pct(r['prior']['within_10pct'], 0)} | {pct(r['calibrated_5']['within_10pct'], 0)} | "
                     f"{pct(r['calibrated_10']['within_10pct'], 0)} | {pct(r['calibrated_20']['within_10pct'], 0)} | "
                     f"{pct(r['block_profiled']['within_10pct'], 0)} | "
                     f"{pct(r['block_profiled_calibrated_20']['within_10pct'], 0)} | "
                     f"{r['calibrated_20']['kendall_tau']:.3f} | {pct(r['calibrated_20']['mape'], 1)} |")
    lines += ["", "Cells: share of held-out sub-networks predicted within ±10 % of the measured median.", "",
              f"![predicted vs measured](benchmarks/results/{doc['benchmark']}.png)"]
    return lines


MODEL_COLUMNS = (("prior", "prior (roofline, hand-set)"), ("prior_fitted_on_this_device", "prior (fitted on this device)"),
                 ("calibrated_5", "5 meas."), ("calibrated_10", "10 meas."), ("calibrated_20", "20 meas."),
                 ("block_profiled", "block-profiled"), ("block_profiled_calibrated_20", "profiled + 20"),
                 ("ofa_sum", "OFA-style sum"), ("ofa_delta_sum", "OFA-style, block-own entries"),
                 ("ofa_sum_calibrated_20", "OFA-style sum + 20 meas."), ("fitted_on_host", "fitted on this host"),
                 ("fitted_on_host_calibrated_5", "host model + 5 meas."))


def target_misses(results: dict[str, Any], goal: float = 0.95) -> list[str]:
    """One plain sentence per engine config that misses the >= 95 % goal after block profiling
    + 20 measurements, and, where the 20 measurements made the profile worse, by how much their
    scale differs from what the held-out archs ran at (both read from the held-out points)."""
    out = []
    for key, r in results.items():
        best = r["models"].get("block_profiled_calibrated_20", {}).get("within_10pct")
        prof = r["models"].get("block_profiled", {}).get("within_10pct")
        if best is None or best >= goal:
            continue
        text = f"**{key} misses the ≥ 95 % goal:** profiled + 20 scores {pct(best, 0)}"
        pts = r.get("points", {})
        if prof is not None and prof > best and pts.get("block_profiled"):
            held = float(np.median(np.asarray(pts["measured_ms"]) / np.asarray(pts["block_profiled"])))
            scale = float(np.median(np.asarray(pts["block_profiled_calibrated_20"]) / np.asarray(pts["block_profiled"])))
            text += (f", below block profiling alone ({pct(prof, 0)}): the 20 pool measurements set a scale of "
                     f"{scale:.3f} on the profile, while the held-out archs ran at {held:.3f} of it (median), so "
                     f"the pool was timed in a slower machine state than the held-out set")
        out += [text + ".", ""]
    return out


def is_tie(d: dict[str, Any]) -> bool:
    """A paired within-10 % difference whose 95 % CI holds 0."""
    lo, hi = d["within_10pct_ci95"]
    return lo <= 0 <= hi


def held_out_models_section(doc: dict[str, Any], title: str) -> list[str]:
    """Every model's share of held-out archs within ±10 % (same held-out archs, disjoint by arch
    from the calibration pool and the profile's probes), with the paired differences of the
    block-profiled + 20 model against the others."""
    results = doc["results"]
    present = [(k, label) for k, label in MODEL_COLUMNS if any(k in r["models"] for r in results.values())]
    lines = [title, ""] + target_misses(results)
    fair = [key for key, r in results.items() if "ofa_sum_calibrated_20" in r["paired_vs_block_profiled_calibrated_20"]]
    if fair:
        tied = [key for key in fair if is_tie(results[key]["paired_vs_block_profiled_calibrated_20"]
                                             ["ofa_sum_calibrated_20"])]
        lines += [f"Given the same 20 measurements as a scale and an offset, the OFA-style per-block sum ties block "
                  f"profiling + 20 on {len(tied)} of {len(fair)} engine configs ({', '.join(tied) or 'none'}): "
                  f"on these networks the block-profiled table's advantage over an OFA-style table is its "
                  f"calibration, not its entries.", ""]
    verdicts = []
    for key, r in results.items():
        for other, d in r["paired_vs_block_profiled_calibrated_20"].items():
            if other in ("ofa_sum", "ofa_delta_sum", "ofa_sum_calibrated_20", "calibrated_20"):
                lo, hi = d["within_10pct_ci95"]
                word = "better than" if lo > 0 else ("worse than" if hi < 0 else "tied with")
                verdicts.append(f"{key}: profiled + 20 {word} {dict(MODEL_COLUMNS)[other]} "
                                f"({d['within_10pct_pp']:+.0f} pp [{lo:+.0f}, {hi:+.0f}])")
    lines += ["Within ±10 %, block-profiled + 20 measurements against the OFA-style baselines and against 20 "
              "measurements alone, paired over the held-out archs (95 % bootstrap CI): " + "; ".join(verdicts) + ".",
              "",
              "| engine/threads | " + " | ".join(label for _, label in present)
              + " | Kendall τ (profiled + 20) | MAPE (profiled + 20) | profiling (device s) |",
              "|---|" + "---|" * (len(present) + 3)]
    for key, r in results.items():
        m = r["models"]
        best = m["block_profiled_calibrated_20"]
        cells = [f"{pct(m[k]['within_10pct'], 0)} (τ {m[k]['kendall_tau']:.2f})" if k in m else "–"
                 for k, _ in present]
        secs = r.get("device_seconds", {})
        prof = secs.get("block_profile", doc.get("timing", {}).get(f"{key}_profile_device_s"))
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {best['kendall_tau']:.3f} | {pct(best['mape'], 1)} | "
                     + (f"{prof:.0f} |" if prof is not None else "– |"))
    lo, hi = doc.get("held_out_mflops_range", [None, None])
    lines += ["", f"Cells: share of {doc['held_out']} held-out archs"
                  + (f" ({lo:.0f}–{hi:.0f} MFLOPs)" if lo is not None else "")
                  + f" predicted within ±10 % of the measured latency (fastest sample), and Kendall τ of the "
                  f"predicted against the measured order; calibration pool {doc['pool']} archs; {doc['runs']} timed "
                  f"rounds per network.", "",
              f"![predicted vs measured](benchmarks/results/{doc['benchmark']}.png)"]
    return lines


def mbv3_engines_section(doc: dict[str, Any]) -> list[str]:
    """Per resolution: engines' batch-1 latency on the smallest / median / largest arch, bundle
    sizes, and a fresh device process's load -> first prediction and peak RSS."""
    lines = ["### Engines at MobileNetV3 scale (mbv3, untrained weights; batch 1)", ""]
    own_rss = doc.get("rss_source") == "VmHWM"
    for res in doc["resolutions"]:
        m = res["mflops"]
        lines += [f"**{res['resolution']} px** — smallest {m['smallest']:.0f}, median {m['median']:.0f}, largest "
                  f"{m['largest']:.0f} MFLOPs; int8 bundle {res['bundle_bytes']['int8'] / 2 ** 20:.1f} MiB "
                  f"({pct(res['int8_over_fp32'], 0)} of fp32). "
                  + "; ".join(f"{c['engine']}: load → first prediction {c['load_to_first_prediction_ms']:.0f} ms"
                              + (f", peak RSS {c['peak_rss_mib']} MiB" if own_rss else "")
                              for c in res["cold_start"]) + ".", "",
                  "| engine/threads | smallest ms (fastest / median / p90) | median arch | largest |", "|---|---|---|---|"]
        by_cfg: dict[str, dict[str, Any]] = {}
        for row in res["latency"]:
            by_cfg.setdefault(f"{row['engine']}/{row['threads']}", {})[row["arch"]] = row
        for cfg, rows in by_cfg.items():
            lines.append(f"| {cfg} | " + " | ".join(
                f"{r['latency_ms']:.2f} / {r['median_ms']:.2f} / {r['p90_ms']:.2f}"
                for r in (rows[a] for a in ("smallest", "median", "largest"))) + " |")
        lines.append("")
        archs = ("smallest", "median", "largest")
        for over, under, goal, judged in (("tflite/1", "torch/1", 0.5, archs), ("tflite-int8/1", "torch/1", 0.5, archs),
                                          ("tflite-int8/1", "tflite/1", 0.6, ("median",))):
            if over in by_cfg and under in by_cfg:
                ratio = {a: by_cfg[over][a]["latency_ms"] / by_cfg[under][a]["latency_ms"] for a in archs}
                met = max(ratio[a] for a in judged) <= goal
                lines += [f"{over} over {under} (goal ≤ {goal} for {', '.join(judged)}): "
                          f"{' / '.join(f'{ratio[a]:.2f}' for a in archs)} (smallest / median / largest)"
                          + ("" if met else " — the goal is missed (" + ", ".join(
                              f"{a} {ratio[a]:.3f}" for a in judged if ratio[a] > goal) + ")") + ".", ""]
        if "onnxruntime:cpu/1" in by_cfg:
            lines += [onnxruntime_line(by_cfg, res["cold_start"]), ""]
        if "executorch-int8/1" in by_cfg and "executorch/1" in by_cfg:
            ratio = {a: by_cfg["executorch-int8/1"][a]["latency_ms"] / by_cfg["executorch/1"][a]["latency_ms"]
                     for a in archs}
            lines += [f"executorch-int8/1 over executorch/1: {' / '.join(f'{ratio[a]:.2f}' for a in archs)} "
                      "(smallest / median / largest). Its quantised program keeps torch's own conv padding (XNNPACK "
                      "rejects a QS8 constant-pad node), so its 7×7 depthwise kernels run in one piece, on XNNPACK's "
                      "slow 49-tap path, where tflite-int8 splits them into row bands.", ""]
    lines.append("Latency per the protocol of *How latency is measured*, all networks of one resolution interleaved "
                 "in one group; load → first prediction is the median of 3 fresh torch-free processes (a task of 3 "
                 "classes, the generator's arch at an unlimited budget)"
                 + ("; peak RSS is that process's own high-water mark (VmHWM, median of the 3)." if own_rss else
                    ". The JSON's `peak_rss_mib` is not shown: it was read with RUSAGE_SELF in a child of the large "
                    "benchmark process, and Linux carries ru_maxrss across exec, so it reports the parent's size."))
    return lines


def onnxruntime_line(by_cfg: dict[str, dict[str, Any]], cold: list[dict[str, Any]]) -> str:
    """ONNX Runtime (CPU provider) beside TFLite and torch, and its cold start against its goals."""
    archs = ("smallest", "median", "largest")
    ort = by_cfg["onnxruntime:cpu/1"]
    ratios = "; ".join(f"over {ref}: " + " / ".join(f"{ort[a]['latency_ms'] / by_cfg[ref][a]['latency_ms']:.2f}"
                                                      for a in archs)
                       for ref in ("tflite/1", "torch/1") if ref in by_cfg)
    c = next((c for c in cold if c["engine"] == "onnxruntime"), None)
    start = "" if c is None else (
        f" Load → first prediction {c['load_to_first_prediction_ms']:.0f} ms (goal ≤ 1000 ms: "
        f"{'met' if c['load_to_first_prediction_ms'] <= 1000 else 'missed'}), peak RSS {c['peak_rss_mib']} MiB "
        f"(goal ≤ 300 MiB: {'met' if c['peak_rss_mib'] <= 300 else 'missed'}).")
    return (f"onnxruntime:cpu/1 (ONNX Runtime's CPU provider; no GPU here) {ratios} (smallest / median / largest)."
            + start)


def int8_accuracy_section(doc: dict[str, Any]) -> list[str]:
    """What the full-integer engine costs in accuracy against fp32 TFLite, on the same archs."""
    c = doc["comparisons"]["all"]["tflite-int8"]
    lo, hi = c["ci95_pp"]
    big = doc["largest_all_class"]
    loss_big = 100 * (big["tflite"] - big["tflite-int8"])
    s = doc["sample"]
    verdict = ("within the 0.5 pp goal" if c["mean_pp"] <= 0.5 and loss_big <= 0.5 else "over the 0.5 pp goal")
    lines = ["### Integer execution: what int8 costs in accuracy (Fashion-MNIST)", "",
             f"The full-integer engine (tflite-int8) loses {c['mean_pp']:.2f} pp [{lo:+.2f}, {hi:+.2f}] of task "
             f"accuracy against fp32 TFLite on average over {c['scenarios']} scenarios, and {loss_big:.2f} pp on the "
             f"largest network over all 10 classes: {verdict}. The two agree on top-1 for {pct(doc['top1_agreement'], 2)} of "
             f"{doc['images_compared']:,} test images.", "",
             "| engine | mean task accuracy | largest network, all classes |", "|---|---|---|"]
    for engine, summary in doc["summary"].items():
        lines.append(f"| {engine} | {pct(summary['mean_test_accuracy'], 2)} | {pct(big[engine], 2)} |")
    lines += ["", f"Sample: {s['scenarios']} scenarios ({s['in_group']} in-group tasks of 2-5 classes, the rest random "
                  f"tasks and {s['all_class_scenarios']} all-class ones), one seed-0 run, {s['test_images_per_class']:,} "
                  "test images per class; both engines run the generator's arch for each scenario, from a default "
                  "bundle (int8 weights; BN statistics and int8 ranges from its 32 training images per class). "
                  "Differences are paired by scenario with a 95 % bootstrap CI."]
    return lines


def time_split_section(doc: dict[str, Any]) -> list[str]:
    """Where an mbv3 network's time goes, by op kind, and the 7x7 depthwise counterfactuals."""
    cf = doc["counterfactual_ms"]
    res = doc["resolution"]

    def ratio(p: str, variant: str) -> float:
        return cf[f"largest/{p}/{variant}"] / cf[f"largest/{p}/7x7 as row bands (default)"]

    lines = [f"### Where the time goes (mbv3 at {res} px, TFLite, 1 thread)", "",
             f"The 7×7 depthwise convolutions are what make the largest network slow: they take "
             f"{pct(doc['splits']['largest/int8']['by_kind'].get('depthwise 7x7', {}).get('share', 0), 0)} of its int8 "
             f"time and {pct(doc['splits']['largest/fp32']['by_kind'].get('depthwise 7x7', {}).get('share', 0), 0)} "
             f"of its fp32 time. Run in one piece, XNNPACK's 49-tap path is {ratio('fp32', '7x7 in one piece'):.1f}× "
             f"(fp32) and {ratio('int8', '7x7 in one piece'):.1f}× (int8) slower than the row bands edge_eas splits "
             f"them into; but even split, the same network with 5×5 kernels instead runs in "
             f"{ratio('fp32', 'every 7x7 a 5x5'):.2f}× (fp32) and {ratio('int8', 'every 7x7 a 5x5'):.2f}× (int8) of "
             f"its time. Bands of 2 or 1 rows measured slower than the 3-row bands used. What cannot be fixed here: "
             f"XNNPACK has no fast kernel above 25 taps.", "",
             "| network / precision | whole ms | top kinds (share of the time) |", "|---|---|---|"]
    for key, r in doc["splits"].items():
        top = ", ".join(f"{k} {pct(v['share'], 0)}" for k, v in list(r["by_kind"].items())[:4])
        lines.append(f"| {key} | {r['whole_ms']:.2f} | {top} |")
    lines += ["", "| largest network, 7×7 kernels | " + " | ".join(f"{p} ms" for p in ("fp32", "int8")) + " |",
              "|---|---|---|"]
    for variant in ("7x7 as row bands (default)", "7x7 in one piece", "every 7x7 a 5x5"):
        lines.append(f"| {variant} | " + " | ".join(f"{cf[f'largest/{p}/{variant}']:.2f}" for p in ("fp32", "int8"))
                     + " |")
    lines += ["", "LiteRT's Python wheel has no op profiler and XNNPACK runs the graph as one node, so an op's time is "
                  "the difference between the network cut after it and cut before it, all cuts timed interleaved: "
                  "shares are approximate (a cut also changes what the last op writes), and sum to 100 % with the "
                  "kinds not shown. Untrained weights; int8 at uniform ranges (its speed does not depend on them)."]
    return lines


def cost_model_mbv3_section(doc: dict[str, Any]) -> list[str]:
    return held_out_models_section(doc, f"### Latency model at MobileNetV3 scale on `{doc['target']}` (mbv3 at "
                                        f"{doc['resolution']} px, untrained weights)")


def arm64_wall_time(wall_s: float, timing: dict[str, float]) -> str:
    device_s = sum(timing.values())
    goal = "met" if wall_s <= 20 * 60 else "missed"
    return (f"The whole benchmark took {wall_s / 60:.0f} min (goal ≤ 20 min: {goal}): {device_s / 60:.0f} min on the "
            f"device (up {timing.get('device_up_s', 0):.0f} s, deploy {timing.get('deploy_s', 0):.0f} s, then profiling "
            f"and measuring), the rest on this host (its own measurements of the same networks for the host model "
            f"and the slowdown).")


def cost_model_arm64_section(doc: dict[str, Any]) -> list[str]:
    """The host table's columns for the emulated arm64 device (benchmarks/cost_model_arm64.py),
    plus the emulation slowdown on the same held-out sub-networks and the benchmark's wall time."""
    space = (f"mbv3 at {doc['resolution']} px{', untrained weights' if doc.get('untrained') else ''}; "
             if doc.get("resolution") else "")
    title = (f"### Latency model on the arm64 stand-in (Debian arm64 under qemu, over SSH; {space}"
             f"{doc['held_out']} held-out sub-networks)")
    dev, t = doc.get("device", {}), doc.get("timing", {})
    return held_out_models_section(doc, title) + ["", "Emulation slowdown on the held-out archs: " + "; ".join(
        f"{key} {r['emulation_slowdown']['median']:.0f}× ({r['emulation_slowdown']['min']:.0f}–"
        f"{r['emulation_slowdown']['max']:.0f}×)" for key, r in doc["results"].items() if r.get("emulation_slowdown"))
        + ". qemu translates XNNPACK's NEON kernels far worse than numpy's, so read these timings as a second, "
          "differently shaped device, not as a Raspberry Pi. "
        + f"Device: {dev.get('machine')} Python {dev.get('python')}, ai-edge-litert "
          f"{dev.get('versions', {}).get('ai-edge-litert')} (aarch64 wheel, deployed offline). "
        + (arm64_wall_time(doc["wall_seconds"], t) if doc.get("wall_seconds") else "")]

def runtime_section(doc: dict[str, Any]) -> list[str]:
    b = doc["bundle"]
    lines = ["### Bundle and on-device runtime (digits: networks of 0.3-2 MFLOPs, µs latencies)", "",
             f"int8 bundle {b['int8_bytes'] / 1024:.0f} KiB = **{pct(b['ratio'], 1)}** of fp32 "
             f"({b['fp32_bytes'] / 1024:.0f} KiB); mean task accuracy int8 {pct(b['int8_accuracy'], 2)} vs fp32 "
             f"{pct(b['fp32_accuracy'], 2)} ({b['accuracy_change_pp']:+.2f} pp). `Runtime.load` → first prediction: "
             f"**{doc['load_to_first_prediction_ms']:.0f} ms** in a fresh process ({doc['cold_start_ms']:.0f} ms "
             f"including Python start-up and imports).", "",
             "| sub-network | MFLOPs | engine | batch 1 median / p90 (ms) | batch 32 median / p90 (ms) | vs torch eager (batch 1) |",
             "|---|---|---|---|---|---|"]
    for row in doc["latency"]:
        lines.append(f"| {row['subnet']} | {row['mflops']:.3f} | {row['engine']} | {row['b1_median_ms']:.3f} / "
                     f"{row['b1_p90_ms']:.3f} | {row['b32_median_ms']:.3f} / {row['b32_p90_ms']:.3f} | "
                     f"{row['speedup_vs_torch_b1']:.2f}× |")
    return lines


def fleet_section(doc: dict[str, Any]) -> list[str]:
    lines = [f"### Fleet benchmarking over SSH ({doc.get('devices_mode', '')}, {doc.get('scenarios')} scenarios per device)",
             "", "| devices | timed runs | wall s | host CPU ms / measurement | host CPU / device timed time | "
                 "host CPU / steady device time | lost | duplicated |", "|---|---|---|---|---|---|---|---|"]
    for row in doc.get("results", []):
        lines.append(f"| {row['devices']} | {row['runs']} | {row['wall_s']:.1f} | {row['host_cpu_ms_per_measurement']:.2f} "
                     f"| {pct(row['overhead_ratio'], 1)} | {pct(row['overhead_ratio_steady'], 1)} | {row['lost']} | "
                     f"{row['duplicated']} |")
    split = doc.get("host_cost_split", {})
    method = doc.get("method", {})
    lines += ["", f"Host cost: {split.get('fixed_ms', 0):.0f} ms fixed per device per bench plus "
                  f"{split.get('per_measurement_ms', 0):.2f} ms per measurement, so the 5 % goal holds once a "
                  f"measurement's timed runs take about {split.get('device_ms_per_measurement_for_5pct', 0):.0f} ms on "
                  f"the device. " + " ".join(str(v) for v in method.values())]
    return lines


def quickstart_repeat_section(doc: dict[str, Any]) -> list[str]:
    runs, rng = doc["runs"], doc["range"]

    def span(key: str) -> str:
        lo, hi = rng[key]
        return pct(lo, 0) if lo == hi else f"{pct(lo, 0)}–{pct(hi, 0)}"

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> str:
        return f"| {label} | " + " | ".join(cell(r) for r in runs) + " |"

    def held(r: dict[str, Any]) -> dict[str, Any]:
        return r["latency_model_held_out"]

    def ref(r: dict[str, Any]) -> str:
        b = r.get("bench_speed_reference")
        return "-" if not b else (f"{b['reference_ms_min'] * 1000:.1f}–{b['reference_ms_max'] * 1000:.1f} µs, "
                                  f"{b['groups_timed_again']} retimed")

    def loop(r: dict[str, Any]) -> str:
        m = r.get("machine_speed_before", {}).get("python_loop_ms")
        return "-" if not m else f"{m['min']:.2f} / {m['median']:.2f} ms"

    kept = [held(r)["kept"] for r in runs]
    kept_line = (f"Calibration kept the calibrated model in {kept.count('calibrated')} of {len(runs)} runs; the kept "
                 f"figure is the better of the two on the same held-out rows it is chosen on, so it says how good the "
                 f"choice was, not that choosing never hurts.")
    missed = [i + 1 for i, r in enumerate(runs) if held(r)["within_10pct_kept"] < 0.9]
    verdict = (f"**A miss: run {', '.join(map(str, missed))} of {doc['repeat']} fell short of the held-out goal "
               f"(≥ 90 % within ±10 %)**; the others met every goal." if missed else
               f"All {doc['repeat']} runs met every goal.")
    return [f"### Quick start, {doc['repeat']} fresh runs in a row (`{doc['quickstart_command']}`)", "", verdict, "",
            f"Each run starts from nothing (fresh `--out` and `EDGE_EAS_HOME`): it trains the supernet and the "
            f"generator, exports the int8 signed bundle, specialises and benchmarks {runs[0]['scenarios']} scenarios "
            f"on this machine as the device ({runs[0]['engine']}), calibrates, and re-specialises with ms budgets. "
            f"Over the {doc['repeat']} runs: wall clock {rng['wall_seconds'][0]:.0f}–{rng['wall_seconds'][1]:.0f} s "
            f"(goal ≤ 600 s); held-out architectures within ±10 % with the kept model "
            f"{span('held_out_within_10pct_kept')} (goal ≥ 90 %); ms budgets met as measured "
            f"{span('ms_measured_within_budget')} (goal ≥ 90 %). {kept_line}", "",
            "| figure | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " |",
            "|---|" + "---|" * len(runs),
            row("wall clock", lambda r: f"{r['wall_seconds']:.0f} s"),
            row("scenarios within their MFLOPs budget", lambda r: pct(r["mflops_within_budget"], 0)),
            row("mean task accuracy (test images of each task's classes)", lambda r: pct(r["mean_task_accuracy"], 2)),
            row("measurements scored, each by a fit that never saw its arch", lambda r: f"{held(r)['n']}"),
            row("within ±10 %: block-profiled → calibrated", lambda r: f"{pct(held(r)['within_10pct_before'], 0)} → "
                                                                      f"{pct(held(r)['within_10pct_after'], 0)}"),
            row("model kept; calibrated model's held-out MAPE", lambda r: f"{held(r)['kept']}; "
                                                                          f"{pct(held(r)['mape_after'], 1)}"),
            row("ms-budget margin learnt", lambda r: f"+{pct(held(r)['margin'], 1)}"),
            row("ms budgets met: fastest sample / median sample",
                lambda r: f"{pct(r['ms_measured_within_budget'], 0)} / {pct(r.get('ms_median_within_budget') or 0, 0)}"),
            row("bench speed reference (smallest arch), groups retimed", ref),
            row("machine speed before the run: Python loop, fastest / median", loop),
            "", "Validation is leave one architecture out: each measurement is predicted by a calibration fitted on "
                "the other architectures only (50 scenarios yield about 14 distinct architectures, so holding a "
                "fixed slice out left fits that never saw a large network). The block-profiled column needs no "
                "fit. Measured latency is the fastest interleaved sample of the faster of two engine instances "
                "(see *How latency is measured*); the median column shows how often a budget also holds for the "
                "median sample on this shared machine.", ""] + [
        f"![{p}](benchmarks/results/{p})" for p in doc.get("plots", [])]


SECTIONS: list[tuple[str, Callable[[dict[str, Any]], list[str]]]] = [
    ("quickstart_repeat", quickstart_repeat_section), *readme_fashion.SECTIONS,
    ("fewshot_fashion-mnist", fewshot_section), ("generator", generator_section),
    ("task_dropout", task_dropout_section),
    # latency at real scale (mbv3) is the headline; the digits tables (µs networks) follow it
    ("mbv3_engines", mbv3_engines_section), ("mbv3_time_split_224", time_split_section),
    ("int8_accuracy_fashion-mnist", int8_accuracy_section),
    ("cost_model_mbv3", cost_model_mbv3_section),
    ("cost_model_mbv3_onnxruntime", lambda d: [cost_model_mbv3_section(d)[0].replace(
        "untrained weights)", "untrained weights), ONNX Runtime", 1), *cost_model_mbv3_section(d)[1:]]),
    ("fleet_mbv3", lambda d: [fleet_section(d)[0].replace("### Fleet benchmarking", "### Fleet benchmarking, mbv3 "
                                                                                     "networks"), *fleet_section(d)[1:]]),
    ("cost_model_arm64", cost_model_arm64_section),
    ("runtime", runtime_section), ("cost_model", cost_model_section), ("fleet", fleet_section),
    ("gpu_training", lambda d: ["### GPU training", "", d.get("summary", "")]),
]


FASHION_EPOCHS = TrainConfig.for_preset("fashion").epochs

def render() -> str:
    out = [START, "", "Generated by `python -m benchmarks.readme_results` from `benchmarks/results/*.json`; "
                      "rerun the command under each table to reproduce it. `RUN` directories are made with the defaults: "
                      f"for Fashion-MNIST sections `edge_eas train --data fashion-mnist --out RUN` ({FASHION_EPOCHS} supernet epochs "
                      "+ 400 generator steps + the accuracy predictor, whose stage `edge_eas fit-accuracy RUN` redoes alone; 8 epochs for the sections measured on the narrow space), elsewhere `edge_eas train --data digits --out RUN` (50 supernet epochs "
                      "+ 250 generator steps, 129-184 s on these 2 cores); bundles are `edge_eas export RUN --out "
                      "model.eas`. No GPU machine was available for these runs.", ""]
    for name, fn in SECTIONS:
        path = RESULTS / f"{name}.json"
        if not path.is_file():
            continue
        doc = json.loads(path.read_text())
        out += fn(doc) + ["", provenance(doc, name), ""]
    out.append(END)
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description="Render README.md's results section from benchmarks/results/*.json.")
    ap.add_argument("--check", action="store_true", help="only check every section's JSON (commit, dirty flag, a "
                                                         "clean tree); exit 1 naming each that fails")
    ap.add_argument("--max-behind", type=int, help="with --check: also fail a JSON more than this many commits to "
                                                   "edge_eas/ behind the head")
    args = ap.parse_args()
    if args.check:
        problems = check(args.max_behind)
        for line in problems:
            print(line, file=sys.stderr)
        raise SystemExit(1 if problems else 0)
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} block")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(head + render() + tail)
    print("README.md results section updated")


if __name__ == "__main__":
    main()
