"""`edge_eas quickstart`: digits -> supernet -> generator -> signed bundle -> device agent ->
measurements -> calibrated latency model -> ms budgets, with a report and plots."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..console import emit_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="output folder (reused when re-run)")
    p.add_argument("--scenarios", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ssh-demo", action="store_true",
                   help="also run it against a simulated device over real SSH (needs root and sshd)")


def run(args: argparse.Namespace) -> int:
    import os

    from ..quickstart import print_report, quickstart

    # keep the quick start's store and latency models inside its folder, not in the user's home
    os.environ.setdefault("EDGE_EAS_HOME", str(args.out.resolve() / "home"))
    report = quickstart(args.out, args.scenarios, args.seed, with_ssh_demo=args.ssh_demo)
    if args.json:
        emit_json({k: v for k, v in report.items()})
    else:
        print_report(report)
    return 0
