"""`edge_eas calibrate`: refit a device's latency model from its stored measurements."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_eas.common.console import emit_json, print_table
from edge_eas.common.paths import default_store
from edge_eas.common.requirements import Need, modules


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", required=True)
    p.add_argument("--engine", help="only this engine (default: every engine measured on the target); onnxruntime "
                   "covers each provider measured (onnxruntime:cuda, :cpu)")
    p.add_argument("--threads", type=int)
    p.add_argument("--fit", type=int, default=20, help="fit on at most this many distinct architectures (and at most two thirds of "
                   "them); the rest are held out")
    p.add_argument("--store", type=Path, default=None, help=f"measurement store (default {default_store()})")
    p.add_argument("--run", type=Path, help="also write the models into this run (bundled by export)")
    p.add_argument("--sign", type=Path, metavar="KEYFILE", help="sign the cost-model file for deploy")


def requires(args: argparse.Namespace) -> list[Need]:
    return modules("scipy", why="fitting the latency model")


def run(args: argparse.Namespace) -> int:
    # lazy: loads scipy only when this command runs (the CLI imports every command for its parser)
    from edge_eas.cost.calibration import calibrate_target, held_out_line

    result = calibrate_target(args.target, args.store or default_store(), engine=args.engine, threads=args.threads,
                              n_fit=args.fit, run_dir=args.run, sign_key=args.sign)
    if args.json:
        emit_json(result)
        return 0
    rows = []
    for key, cal in result["models"].items():
        for label in ("before", "after"):
            m = cal[label]
            if m is None:  # nothing held out: no figure rather than the fit set's
                rows.append((key, label, cal["fit_n"], 0, "-", "-", "-", "-"))
                continue
            rows.append((key, label, cal["fit_n"], f"{m['n']} ({cal.get('held_noisy_n', 0)} noisy)",
                         f"{m['rmse_ms']:.4f}", f"{100 * m['mape']:.1f}%", f"{100 * m['within_10pct']:.0f}%",
                         f"{m['kendall_tau']:.3f}"))
    if result["resolved_from"]:
        print(f"target {result['resolved_from']}: calibrating {result['target']}, the board its measurements came from")
    print_table(f"latency model for {result['target']} (held-out measurements)",
                ["model", "", "fit on", "held out", "RMSE ms", "MAPE", "within ±10%", "Kendall tau"], rows)
    for key, cal in result["models"].items():
        print(held_out_line(key, cal))
    print(f"wrote {result['model_file']}")
    return 0
