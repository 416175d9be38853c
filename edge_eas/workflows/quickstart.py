"""`edge_eas quickstart`: the whole loop on the embedded digits data, this machine as the device.

train supernet (task dropout) -> train generator -> export an int8 signed bundle -> the
torch-free device agent specialises and benchmarks 50 scenarios (MFLOPs budgets) -> store ->
calibrate this machine's latency model -> re-specialise 50 scenarios with ms budgets ->
report.json, a table and plots. Every step reuses what a previous run already produced.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_eas.common.console import info, print_table
from edge_eas.cost.latency_models import LatencyModels
from edge_eas.net.budget import Budget
from edge_eas.cost.store import MeasurementStore
from edge_eas.data import run_dataset
from edge_eas.devices.targets import load_target
from edge_eas.errors import UserError
from edge_eas.format.signing import generate_keypair
from edge_eas.host.bundle import export_bundle
from edge_eas.host.pareto import ParetoPoint, is_rising, pareto_front, plot_front, span_pp
from edge_eas.host.rundir import load_supernet, RunDir
from edge_eas.net.space import Arch, SearchSpace
from edge_eas.net.tasks import Task
from edge_eas.remote.fleet import BenchRequest, run_bench
from edge_eas.remote.scenarios import budget_range
from edge_eas.remote.ssh_options import ssh_options
from edge_eas.runtime import Runtime
from edge_eas.runtime.model import benchmark_many
from edge_eas.sim.ssh_lab import DeviceLab, have_sshd


def _step(name: str) -> float:
    info(f"==> {name}")
    return time.perf_counter()


# A shorter schedule than `edge_eas train`'s digits default (50 epochs, 250 generator steps), so
# the whole quick start fits 10 minutes on 2 slow cores: on these digits the supernet reaches
# 100 % training accuracy by epoch ~11, and the generator's loss flattens by step ~150.
QUICKSTART_EPOCHS = 30
QUICKSTART_GENERATOR_STEPS = 150


def ensure_trained(out: Path) -> Path:
    # lazy: loads safetensors, torch only on this path, not when quickstart is imported
    from edge_eas.host.generator_train import GeneratorConfig, train_generator
    from edge_eas.host.train import TrainConfig, train_supernet

    run = out / "run"
    if not RunDir(run).is_complete():
        t = _step("training the supernet on digits with task dropout")
        train_supernet(TrainConfig(epochs=QUICKSTART_EPOCHS), run, resume=(run / "checkpoint" / "state.json").is_file())
        info(f"    {time.perf_counter() - t:.0f} s")
    else:
        info("==> supernet already trained (reusing)")
    if not (run / "generator.safetensors").is_file():
        t = _step("training the architecture generator")
        train_generator(RunDir(run), GeneratorConfig(steps=QUICKSTART_GENERATOR_STEPS), resume=True)
        info(f"    {time.perf_counter() - t:.0f} s")
    else:
        info("==> generator already trained (reusing)")
    return run


def ensure_bundle(out: Path, run: Path, with_models: bool) -> Path:
    key = out / "signing-key"
    if not key.exists():
        generate_keypair(key)
    bundle = out / ("model-calibrated.eas" if with_models else "model.eas")
    newest_input = max(p.stat().st_mtime for p in (run / "generator.safetensors", run / "supernet.safetensors"))
    if with_models or not bundle.is_file() or bundle.stat().st_mtime < newest_input:
        export_bundle(run, bundle, "int8", key, cost_models=LatencyModels.run_document(run) if with_models else None)
    return bundle


def bench_local(bundle: Path, store: Path, scenarios: int, seed: int, run: Path) -> dict[str, Any]:
    """Benchmark on this machine through the device agent, profile its blocks and calibrate."""
    return run_bench(BenchRequest(target="local", bundle=bundle, scenarios=scenarios, seed=seed, runs=30, warmup=5,
                                  store=store, calibrate=True, run=run))


def task_accuracies(run: Path, rows: list[dict[str, Any]]) -> list[float]:
    # lazy: loads torch only on this path, not when quickstart is imported
    from edge_eas.host.evaluate import TaskEvaluator
    net, meta = load_supernet(RunDir(run))
    data = run_dataset(meta, resolution=net.space.resolution)
    ev = TaskEvaluator(net, data)
    return [ev.accuracy(Arch.from_dict(r["arch"]), Task(tuple(r["classes"]))) for r in rows]


def ms_scenarios(bundle: Path, target_models: LatencyModels, scenarios: list[dict[str, Any]], key: str,
                 runs: int = 30) -> list[dict[str, Any]]:
    """Re-specialise with ms budgets on the calibrated model; measure what was generated."""
    rt = Runtime.load(bundle)
    rt.add_latency_models(target_models)
    engine, threads = key.split("/t")
    threads_i = int(threads) or None
    # the margin included: from the smallest feasible budget (+2 %) to the largest arch's
    lo, hi = budget_range(rt.space, rt.num_classes, "ms", rt.latency_model(engine, threads_i))
    rng = np.random.default_rng(7)
    budgets = [float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) for _ in scenarios]
    models = [rt.specialize(sc["classes"], Budget("ms", b), engine=engine, threads=threads_i)
              for sc, b in zip(scenarios, budgets)]
    reference = rt.speed_reference(engine, threads_i, warmup=5, runs=runs)
    stats = benchmark_many(models, warmup=5, runs=runs, reference=reference)  # the agent's protocol
    return [{"scenario": sc["id"], "classes": sc["classes"], "budget_ms": budget, "arch": m.arch.to_dict(),
             "mflops": m.mflops, "predicted_ms": m.predicted_ms, "measured_ms": st["latency_ms"],
             "median_ms": st["median_ms"], "predicted_within_budget": m.predicted_ms <= budget + 1e-12,
             "measured_within_budget": st["latency_ms"] <= budget, "median_within_budget": st["median_ms"] <= budget}
            for sc, budget, m, st in zip(scenarios, budgets, models, stats)]


def plots(out: Path, front: list[ParetoPoint], mflops_rows: list[dict[str, Any]], before: list[float],
          after: list[float]) -> list[str]:
    """The all-class accuracy front (the generator's pick per MFLOPs budget, val split) and the
    latency model's predictions against the measurements."""
    # lazy: matplotlib only on this path, not when quickstart is imported
    import matplotlib
    matplotlib.use("Agg")
    # lazy: after the backend is chosen
    import matplotlib.pyplot as plt

    files = [str(plot_front(front, out / "accuracy_vs_mflops.png",
                            "quick start: all classes, val split (the generator's pick per MFLOPs budget)"))]
    measured = [r["measured_ms"] for r in mflops_rows]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(measured, before, s=12, label="prior (roofline)")
    ax.scatter(measured, after, s=12, label="after calibration")
    lo, hi = min(measured) * 0.8, max(measured) * 1.2
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi * 2)
    ax.set_xlabel("measured ms")
    ax.set_ylabel("predicted ms")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "latency_predicted_vs_measured.png", dpi=110)
    plt.close(fig)
    files.append(str(out / "latency_predicted_vs_measured.png"))
    return files


def quickstart(out: Path, scenarios: int = 50, seed: int = 0, with_ssh_demo: bool = False) -> dict[str, Any]:
    # lazy: loads scipy only on this path, not when quickstart is imported
    from edge_eas.cost.calibrate import accuracy_report
    from edge_eas.cost.calibration import prior_model

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    run = ensure_trained(out)
    bundle = ensure_bundle(out, run, with_models=False)
    store = out / "measurements.sqlite"
    _step(f"device agent (torch-free runtime): specialise + benchmark {scenarios} scenarios with MFLOPs budgets")
    bench = bench_local(bundle, store, scenarios, seed, run)
    dev = bench["devices"][0]
    if dev["failure"]:
        raise UserError(f"local benchmark failed: {dev['failure']}")
    rows = dev["rows"]
    full_rows = {r["scenario"]: r for r in _stored_rows(store, dev)}
    for r in rows:
        r["arch"] = full_rows[r["scenario"]]["arch"]
    _step("task accuracy of the generated archs (test split)")
    for r, acc in zip(rows, task_accuracies(run, rows)):
        r["accuracy"] = acc
    key, cal_report = next(iter(bench["calibration"].items()))
    key = key.split("/", 1)[1]
    models = LatencyModels.of_run(run, "local")
    space = SearchSpace.from_dict(json.loads((run / "run.json").read_text())["space"])
    engine, thr = key.split("/t")
    prior = prior_model("local", engine, int(thr) or None)
    after_model = models.for_space(space).get(engine, int(thr) or None)
    assert after_model is not None  # the bench just calibrated it for this run's space
    archs = [Arch.from_dict(r["arch"]) for r in rows]
    before = [prior.predict(space, a) for a in archs]
    after = [after_model.predict(space, a) for a in archs]
    _step("re-specialising with ms budgets on the calibrated model")
    scen = [{"id": r["scenario"], "classes": r["classes"]} for r in rows]
    ms_rows = ms_scenarios(bundle, models, scen, key)
    _step("accuracy front of all classes along MFLOPs budgets (val split)")
    front = pareto_front(RunDir(run), None, split="val", latency=after_model)  # ms: this machine, calibrated
    files = plots(out, front, rows, before, after)
    report = {
        "seconds": time.perf_counter() - start, "run": str(run), "bundle": str(bundle), "store": str(store),
        "engine": key, "scenarios": len(rows),
        "mflops_budgets": {"within_budget": float(np.mean([r["in_budget"] for r in rows])),
                           "mean_task_accuracy": float(np.mean([r["accuracy"] for r in rows])), "rows": rows},
        "calibration": {"held_out": cal_report, "all_50_before": accuracy_report(before, [r["measured_ms"] for r in rows]),
                        "all_50_after": accuracy_report(after, [r["measured_ms"] for r in rows])},
        "ms_budgets": {"predicted_within_budget": float(np.mean([r["predicted_within_budget"] for r in ms_rows])),
                       "measured_within_budget": float(np.mean([r["measured_within_budget"] for r in ms_rows])),
                       "median_within_budget": float(np.mean([r["median_within_budget"] for r in ms_rows])),
                       "rows": ms_rows},
        "pareto_front": {"classes": "all", "split": "val", "rising": is_rising(front), "span_pp": span_pp(front),
                         "rows": [p.to_dict() for p in front]},
        "plots": files,
    }
    if with_ssh_demo:
        report["ssh_demo"] = ssh_demo(out, bundle, store, scenarios, seed)
        report["seconds"] = time.perf_counter() - start
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def ssh_demo(out: Path, bundle: Path, store: Path, scenarios: int, seed: int) -> dict[str, Any]:
    """The same bench against a simulated device over real SSH: an sshd in its own network
    namespace (loopback port without namespace rights), deploy offline, bench, calibrate."""
    import os

    # lazy: loads packaging, paramiko only on this path, not when quickstart is imported
    from edge_eas.remote.deploy import deploy

    if not have_sshd():
        raise UserError("--ssh-demo needs OpenSSH's sshd and ssh-keygen: apt-get install openssh-server iproute2")
    _step("SSH demo: a simulated device (sshd in a network namespace), deploy, bench over SSH, calibrate")
    lab_dir = out / "ssh-lab"
    if lab_dir.exists():  # a lab is ephemeral: keys, homes and the device venv are made anew
        import shutil
        shutil.rmtree(lab_dir)
    with DeviceLab(lab_dir, ["sim-device"]) as lab:
        dev = lab.devices[0]
        target_path = lab.write_target(dev, out / "sim-device.toml")
        target = load_target(str(target_path))
        # the quick start signs its bundle: the simulated device trusts that key (a full trust store)
        key = out / "signing-key.pub"
        rep = deploy(target, ssh_options(target), bundle, trust_keys=(key,) if key.is_file() else (),
                     allow_unsigned=not key.is_file())
        result = run_bench(BenchRequest(target=str(target_path), bundle=bundle, scenarios=scenarios, seed=seed,
                                        runs=30, warmup=5, store=store, calibrate=True))
    d = result["devices"][0]
    return {"device": dev.hostname, "address": f"{dev.addr}:{dev.port}", "network_namespace": lab.uses_netns,
            "deploy": rep.to_dict(), "measurements": len(d["rows"]), "new_this_run": d["stored"],
            "failure": d["failure"],
            "within_budget": float(np.mean([r["in_budget"] for r in d["rows"]])) if d["rows"] else None,
            "calibration": result.get("calibration", {}), "euid": os.geteuid()}


def _stored_rows(store: Path, dev: dict[str, Any]) -> list[dict[str, Any]]:
    with MeasurementStore(store) as st:
        return st.measurements(bench_run=dev["bench_run"], device_id=dev["device"], batch_size=None)


def print_report(report: dict[str, Any]) -> None:
    rows = report["mflops_budgets"]["rows"]
    ms_rows = {r["scenario"]: r for r in report["ms_budgets"]["rows"]}
    print_table(f"quickstart: {len(rows)} scenarios on this machine ({report['engine']}); "
                "left: MFLOPs budgets, right: the same tasks with ms budgets",
                ["task", "budget", "MFLOPs", "acc", "ms", "ok", "budget ms", "pred", "meas", "ok "],
                [(",".join(map(str, r["classes"])), f"{r['budget_mflops']:.2f}", f"{r['mflops']:.2f}",
                  f"{100 * r['accuracy']:.0f}%", f"{r['measured_ms']:.3f}", "✓" if r["in_budget"] else "✗",
                  f"{ms_rows[r['scenario']]['budget_ms']:.3f}", f"{ms_rows[r['scenario']]['predicted_ms']:.3f}",
                  f"{ms_rows[r['scenario']]['measured_ms']:.3f}",
                  "✓" if ms_rows[r["scenario"]]["measured_within_budget"] else "✗")
                 for r in rows])
    c = report["calibration"]
    print(f"MFLOPs budgets: {100 * report['mflops_budgets']['within_budget']:.0f}% within budget, mean task accuracy "
          f"{100 * report['mflops_budgets']['mean_task_accuracy']:.2f}%")
    h = c["held_out"]
    if h["after"] is None:
        print(f"latency model: {h['reason']}")
    else:
        print(f"latency model on {h['held_n']} measurements ({h.get('held_noisy_n', 0)} noisy), each predicted by a "
              f"fit that never saw its architecture ({h['fit_archs']} archs, leave one out): within ±10% "
              f"{100 * h['before']['within_10pct']:.0f}% (block-profiled) -> {100 * h['after']['within_10pct']:.0f}% "
              f"(calibrated); kept: {h.get('kept')}, ms budgets carry a +{100 * h.get('margin', 0.0):.1f}% margin")
    if h.get("poor"):
        print(f"warning: latency predictions are unreliable on this machine (best {100 * h['kept_within_10pct']:.0f}% "
              f"within ±10% on held-out archs; median CV {h['median_cv'] or 0:.2f}, load average "
              f"{h['load_average'][0]:.1f}): timings are noisy, likely other work on the CPU; rerun when it is idle")
    print(f"ms budgets: {100 * report['ms_budgets']['predicted_within_budget']:.0f}% predicted within budget, "
          f"{100 * report['ms_budgets']['measured_within_budget']:.0f}% measured within budget (fastest sample; "
          f"{100 * report['ms_budgets'].get('median_within_budget', 0):.0f}% by the median sample)")
    if report.get("pareto_front", {}).get("rows"):
        pf, lo_hi = report["pareto_front"], (report["pareto_front"]["rows"][0], report["pareto_front"]["rows"][-1])
        print(f"accuracy front (all classes, val split): {100 * lo_hi[0]['accuracy']:.1f}% at "
              f"{lo_hi[0]['mflops']:.3f} MFLOPs -> {100 * lo_hi[1]['accuracy']:.1f}% at {lo_hi[1]['mflops']:.3f} "
              f"MFLOPs over {len(pf['rows'])} budgets ({'rising' if pf['rising'] else 'NOT rising'})")
    if "ssh_demo" in report:
        s = report["ssh_demo"]
        cal = next(iter(s["calibration"].values()), None)
        print(f"SSH demo: {s['measurements']} measurements ({s['new_this_run']} new) from {s['device']} at "
              f"{s['address']} over SSH"
              + (f", latency model {100 * cal['after']['within_10pct']:.0f}% within ±10%"
                 if cal and cal["after"] is not None else "")
              + (f"; FAILED: {s['failure']}" if s["failure"] else ""))
    print(f"report: {Path(report['run']).parent / 'report.json'}; plots: {', '.join(report['plots'])}; "
          f"total {report['seconds']:.0f} s")
