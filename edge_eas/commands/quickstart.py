"""`edge_eas quickstart`: digits -> supernet -> generator -> signed bundle -> device agent ->
measurements -> calibrated latency model -> ms budgets, with a report and plots."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from edge_eas.common.console import emit_json
from edge_eas.common.requirements import HOST, REMOTE, Need, modules
from edge_eas.workflows.quickstart import print_report, quickstart


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="output folder (reused when re-run)")
    p.add_argument("--scenarios", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ssh-demo", action="store_true",
                   help="also run it against a simulated device over real SSH (needs root and sshd)")


def requires(args: argparse.Namespace) -> list[Need]:
    need = modules(*HOST, why="training and the device loop")
    if args.ssh_demo:
        why = "--ssh-demo (a simulated device over SSH)"
        need += modules(*REMOTE, why=why)
        need += [Need(program=p, hint="apt-get install openssh-server", why=why) for p in ("sshd", "ssh-keygen")]
        if os.geteuid() == 0:  # as root the simulated device gets its own network namespace
            need.append(Need(program="ip", hint="apt-get install iproute2", why=why))
    return need


def run(args: argparse.Namespace) -> int:
    # keep the quick start's store and latency models inside its folder, not in the user's home
    os.environ.setdefault("EDGE_EAS_HOME", str(args.out.resolve() / "home"))
    report = quickstart(args.out, args.scenarios, args.seed, with_ssh_demo=args.ssh_demo)
    if args.json:
        emit_json({k: v for k, v in report.items()})
    else:
        print_report(report)
    return 0
