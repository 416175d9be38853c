"""`edge_eas bench`: measure generated sub-networks on one device or a fleet, store every
measurement as it arrives, and optionally calibrate the latency model from them."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_eas.common.console import emit_json, info, print_table
from edge_eas.common.paths import default_store
from edge_eas.commands.ssh_flags import add_ssh_arguments, ssh_overrides
from edge_eas.common.requirements import REMOTE, Need, modules
from edge_eas.errors import UserError
from edge_eas.net.budget import KINDS, UNITS
from edge_eas.remote.fleet import BenchRequest, expand_targets, run_bench


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", required=True, help="target name(s), comma-separated, or a TOML path")
    p.add_argument("--bundle", type=Path, help="bundle to benchmark (default: the one deployed on the target)")
    p.add_argument("--scenarios", type=int, default=50, help="number of (task, budget) scenarios")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget-kind", choices=KINDS, default="mflops",
                   help="what the scenarios' budgets count: mflops (default) or params, log-uniform between the "
                        "smallest and the largest sub-network; ms: over the range the target's calibrated latency "
                        "model predicts (run with --calibrate first; deploy again so the device has the model)")
    p.add_argument("--min-accuracy", type=float, metavar="PERCENT",
                   help="scenarios ask for this accuracy on their task instead of a budget: the device answers with "
                        "the cheapest network its bundle's accuracy predictor says reaches it (fit-accuracy before "
                        "export); a task it cannot reach is reported as an error, the others are measured")
    p.add_argument("--engine", help="engine on the device (default: the target's): auto, numpy, tflite, tflite-int8, "
                   "onnxruntime (its best execution provider) or onnxruntime:tensorrt / :cuda / :cpu, ...")
    p.add_argument("--threads", type=int, help="threads on the device (default: the target's)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per scenario (>= 30)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--store", type=Path, default=None, help=f"measurement store (default {default_store()})")
    p.add_argument("--prepare", action="store_true",
                   help="steady clocks for timing (performance governor / jetson_clocks via firmware_scripts/"
                        "bench_prepare.sh), restored afterwards; temperature and throttling are recorded")
    p.add_argument("--calibrate", action="store_true", help="refit the latency model from the measurements")
    p.add_argument("--run", type=Path, help="run directory to write calibrated models into")
    add_ssh_arguments(p, host_help="override: user@addr[:port]", trust_help="accept and record an unknown host key")


def requires(args: argparse.Namespace) -> list[Need]:
    """SSH only for remote targets (`local` runs the agent here); scipy only to calibrate."""
    need = modules(*REMOTE, why="benchmarking over SSH") if any(not t.local for t in expand_targets(args.target)) else []
    return need + (modules("scipy", why="--calibrate") if args.calibrate else [])


def target_fraction(percent: float) -> float:
    if not 0 < percent <= 100:
        raise UserError(f"--min-accuracy must be a percentage in (0, 100], got {percent:g}")
    return percent / 100


def request(args: argparse.Namespace) -> BenchRequest:
    """The flags as a typed request: the library below the CLI never sees a Namespace."""
    return BenchRequest(target=args.target, bundle=args.bundle, scenarios=args.scenarios, seed=args.seed,
                        budget_kind=args.budget_kind, engine=args.engine, threads=args.threads, runs=args.runs,
                        warmup=args.warmup, store=args.store, calibrate=args.calibrate, run=args.run,
                        prepare=args.prepare, ssh=ssh_overrides(args),
                        min_accuracy=None if args.min_accuracy is None else target_fraction(args.min_accuracy))


def run(args: argparse.Namespace) -> int:
    result = run_bench(request(args))
    if args.json:
        emit_json(result)
        return 0 if not result["failed_devices"] else 1
    column = f"budget_{args.budget_kind}"
    targets = args.min_accuracy is not None
    for dev in result["devices"]:
        rows = [(r["scenario"], ",".join(map(str, r["classes"])),
                 f"{100 * r['predicted_accuracy']:.2f}% [{100 * r['predicted_interval'][0]:.2f}, "
                 f"{100 * r['predicted_interval'][1]:.2f}]" if targets else f"{r[column]:.3f}",
                 f"{r['mflops']:.3f}", "-" if r["predicted_ms"] is None else f"{r['predicted_ms']:.3f}",
                 f"{r['measured_ms']:.3f}", *([] if targets else ["yes" if r["in_budget"] else "NO"]))
                for r in dev["rows"]]
        first = (f"predicted accuracy (target {args.min_accuracy:g}%)" if targets
                 else f"budget {UNITS[args.budget_kind]}")
        print_table(f"{dev['device']} ({dev['target']}): {dev['stored']} stored, {dev['resent']} re-sent, "
                    f"{len(dev['errors'])} errors", ["scenario", "task", first, "MFLOPs", "predicted ms",
                                                       "measured ms", *([] if targets else ["in budget"])], rows)
        prep = dev.get("bench_prepare") or {}
        if prep.get("prepare"):
            p, r = prep["prepare"], prep.get("restore") or {}
            govs = sorted(set((p.get("governors_after") or {}).values())) or ["no cpufreq"]
            info(f"{dev['device']}: prepared {p.get('board')} board (governors {', '.join(govs)}, "
                 f"{p.get('temperature_c')} °C, throttled {p.get('throttled')}); "
                 + (f"restore FAILED: {r['failure']}" if r.get("failure") else "restored afterwards"))
        if dev["failure"]:
            info(f"{dev['device']}: FAILED: {dev['failure']} (measurements stored so far are kept)")
    if result.get("calibration"):
        # lazy: loads scipy only when this command runs (the CLI imports every command for its parser)
        from edge_eas.cost.calibration import held_out_line
        for key, cal in result["calibration"].items():
            info(f"calibrated {held_out_line(key, cal)}")
    return 0 if not result["failed_devices"] else 1
