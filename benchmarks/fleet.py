"""Fleet benchmark: the harness's own cost when it drives 1, 4 and 8 devices over real SSH.

Each simulated device is an OpenSSH sshd in its own network namespace (edge_eas/sim/ssh_lab.py; sshd on
loopback ports where namespaces are not allowed) with the runtime deployed by `edge_eas deploy`'s
code. The bench runs in this process through `edge_eas.remote.fleet.run_bench`, so
getrusage(RUSAGE_SELF) around it is exactly the host harness's CPU time (all its threads,
paramiko's included); the devices' sshd and agents are other processes and never counted.

    python -m benchmarks.fleet [--bundle model.eas] [--devices 1,4,8] [--scenarios 10] [--runs 30,300]
    python -m benchmarks.fleet --bundle mbv3.eas --runs 30 --name fleet_mbv3   # MobileNetV3-size networks
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import add_allow_dirty, require_clean_tree, save_result

from edge_eas.sim.ssh_lab import DeviceLab, have_sshd

METHOD = {
    "host_cpu": "resource.getrusage(RUSAGE_SELF) user+system time of this process around run_bench only: the "
                "harness's worker threads, paramiko transports, JSON parsing and SQLite writes. The simulated "
                "devices (sshd, their sessions, the agents) are separate processes and RUSAGE_SELF excludes "
                "children, so device work never counts as host time.",
    "device_time": "what the agents report: per stored measurement, stats.mean_ms x stats.runs x stats.repeat x stats.attempts "
                   "(the timed runs, measured with perf_counter inside the agent on the device). "
                   "device_work also adds warm-up runs and specialisation (generate, extract, engine build).",
    "overhead_ratio": "host_cpu / device_timed. On this 2-core machine the devices share the host's cores, so "
                      "with 4-8 devices preemption inflates their timed runs (mean) and triggers noisy-run "
                      "repeats (attempts); overhead_ratio_steady divides by sum(median_ms x runs) instead, "
                      "which contention barely moves: the conservative figure.",
    "lost_duplicated": "lost = scenarios with no stored row per device; duplicated = extra rows for the same "
                       "(device, scenario).",
}


def tiny_bundle(work: Path) -> Path:
    """The tests' tiny digits run (3 epochs + 30 generator steps), exported."""
    from edge_eas.host.bundle import export_bundle
    from edge_eas.host.generator_train import GeneratorConfig, train_generator
    from edge_eas.host.train import TrainConfig, train_supernet
    run = train_supernet(TrainConfig(epochs=3, train_generator=False), work / "run")
    train_generator(run, GeneratorConfig(steps=30, scenarios_per_step=4, images_per_scenario=32))
    export_bundle(work / "run", work / "model.eas")
    return work / "model.eas"


def deploy_all(targets: list[Path], bundle: Path, workers: int = 4) -> list[dict[str, Any]]:
    from edge_eas.remote.deploy import deploy
    from edge_eas.remote.install_plan import DevicePlatform, dependency_wheels, runtime_wheel
    from edge_eas.remote.ssh_options import ssh_options
    from edge_eas.devices.targets import load_target
    runtime_wheel()  # fill the host caches once before the parallel deploys
    dependency_wheels(DevicePlatform.host())

    def one(path: Path) -> dict[str, Any]:
        t = load_target(str(path))
        return deploy(t, ssh_options(t), bundle, allow_unsigned=True).to_dict()  # simulated devices

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, targets))


def bench(targets: list[Path], bundle: Path, store: Path, scenarios: int, runs: int, warmup: int) -> dict[str, Any]:
    from edge_eas.remote.fleet import BenchRequest, run_bench
    args = BenchRequest(target=",".join(map(str, targets)), bundle=bundle, scenarios=scenarios, runs=runs,
                        warmup=warmup, store=store, concurrency=len(targets))
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    result = run_bench(args)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    host_cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"wall_s": wall, "host_cpu_s": host_cpu, "failed_devices": result["failed_devices"],
            "attempts": {d["device"]: d["attempts"] for d in result["devices"]}}


def store_accounting(store: Path, devices: list[str], scenarios: int) -> dict[str, Any]:
    db = sqlite3.connect(store)
    rows = db.execute("SELECT device_id, scenario, stats_json FROM measurements")
    timed = work = steady = 0.0
    medians: list[float] = []
    seen: dict[tuple[str, str], int] = {}
    for dev, scen, stats_json in rows.fetchall():
        s = json.loads(stats_json)
        seen[(dev, scen)] = seen.get((dev, scen), 0) + 1
        calls = s["runs"] * s.get("repeat", 1)  # each timed sample repeats sub-ms inferences
        timed += s["mean_ms"] * calls * s.get("attempts", 1) / 1000
        work += s["mean_ms"] * (calls * s.get("attempts", 1) + s.get("warmup", 0)) / 1000
        steady += s["median_ms"] * calls / 1000
        medians.append(s["median_ms"])
    db.close()
    expected = {(d, f"s{i:03d}") for d in devices for i in range(scenarios)}
    return {"measurements": sum(seen.values()), "lost": len(expected - set(seen)),
            "duplicated": sum(n - 1 for n in seen.values()), "device_timed_s": timed, "device_work_s": work,
            "device_steady_s": steady,
            "median_ms_mean": sum(medians) / max(1, len(medians))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, help="bundle to deploy (default: train the tiny digits run)")
    p.add_argument("--devices", default="1,4,8")
    p.add_argument("--scenarios", type=int, default=10)
    p.add_argument("--runs", default="30,300", help="timed runs per scenario, one bench per value")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--name", default="fleet", help="result name (e.g. fleet_mbv3 with an mbv3 bundle)")
    add_allow_dirty(p)
    a = p.parse_args()
    require_clean_tree(a.allow_dirty)
    if not have_sshd():
        sys.exit("fleet benchmark needs OpenSSH sshd (apt-get install openssh-server)")
    counts = sorted({int(n) for n in a.devices.split(",")})
    runs_list = [int(r) for r in a.runs.split(",")]
    work = Path(tempfile.mkdtemp(prefix="edge-eas-fleet-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped run still tears its devices down
    try:
        bundle = a.bundle or tiny_bundle(work)
        with DeviceLab(work / "lab", [f"dev-{i}" for i in range(1, max(counts) + 1)]) as lab:
            targets = [lab.write_target(d) for d in lab.devices]
            t0 = time.perf_counter()
            deployed = deploy_all(targets, bundle)
            deploy_s = time.perf_counter() - t0
            results = run_matrix(targets, lab, bundle, counts, runs_list, a, work)
            split = cost_split(targets[0], bundle, work, a.warmup)
            mode = "network namespaces" if lab.uses_netns else "loopback sshd"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc = {"method": METHOD, "devices_mode": mode, "scenarios": a.scenarios, "warmup": a.warmup,
           "deploy": {"devices": len(deployed), "seconds_4_in_parallel": round(deploy_s, 2),
                      "bytes_per_device": deployed[0]["transferred_bytes"]},
           "results": results, "host_cost_split": split,
           "goal": "host CPU <= 5 % of the devices' measured time; nothing lost or duplicated at 8 devices"}
    print(json.dumps(doc, indent=2))
    if not a.no_save:
        save_result(a.name, doc, allow_dirty=a.allow_dirty)
    return 0


def cost_split(target: Path, bundle: Path, work: Path, warmup: int) -> dict[str, Any]:
    """Host CPU = fixed (per bench and device: bundle check, SSH handshake, SFTP) + per measurement,
    from one device benched with 10 and then 50 scenarios (runs 30)."""
    cpu = {n: bench([target], bundle, work / f"split-{n}.sqlite", n, 30, warmup)["host_cpu_s"] for n in (10, 50)}
    per = (cpu[50] - cpu[10]) / 40
    return {"fixed_ms": round(1000 * (cpu[10] - 10 * per), 2), "per_measurement_ms": round(1000 * per, 3),
            "device_ms_per_measurement_for_5pct": round(1000 * per / 0.05, 1),
            "note": "the 5 % goal holds once a measurement's timed runs (runs x latency) take about "
                    "per_measurement_ms / 0.05 on the device, plus fixed_ms / (0.05 x scenarios)"}


def run_matrix(targets: list[Path], lab: DeviceLab, bundle: Path, counts: list[int], runs_list: list[int],
               a: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    results = []
    for runs in runs_list:
        for n in counts:
            store = work / f"store-{n}-{runs}.sqlite"
            b = bench(targets[:n], bundle, store, a.scenarios, runs, a.warmup)
            acc = store_accounting(store, [d.name for d in lab.devices[:n]], a.scenarios)
            row = {"devices": n, "runs": runs, "wall_s": round(b["wall_s"], 3), "measurements": acc["measurements"],
                   "host_cpu_s": round(b["host_cpu_s"], 4),
                   "host_cpu_ms_per_measurement": round(1000 * b["host_cpu_s"] / max(1, acc["measurements"]), 3),
                   "device_timed_s": round(acc["device_timed_s"], 4), "device_work_s": round(acc["device_work_s"], 4),
                   "overhead_ratio": round(b["host_cpu_s"] / acc["device_timed_s"], 4),
                   "device_steady_s": round(acc["device_steady_s"], 4),
                   "overhead_ratio_steady": round(b["host_cpu_s"] / acc["device_steady_s"], 4),
                   "median_ms_mean": round(acc["median_ms_mean"], 4), "lost": acc["lost"],
                   "duplicated": acc["duplicated"], "failed_devices": b["failed_devices"],
                   "attempts": sum(b["attempts"].values())}
            clean = not row["lost"] and not row["duplicated"] and not row["failed_devices"]
            row["goal_met"] = clean and row["overhead_ratio"] <= 0.05
            row["goal_met_steady"] = clean and row["overhead_ratio_steady"] <= 0.05
            print(json.dumps(row), file=sys.stderr)
            results.append(row)
    return results


if __name__ == "__main__":
    sys.exit(main())
