"""The `edge_eas` command. Each sub-command lives in `edge_eas.commands.<name>`; this module
only builds the parser and turns user errors into one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from edge_eas import __version__
from edge_eas.errors import UserError
from edge_eas.common.requirements import check

# name -> (module in edge_eas.commands, one-line help). Modules are imported lazily so that
# `edge_eas --help` stays fast and never imports torch.
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("quickstart", "the whole loop on the embedded digits data, this machine as the device"),
    "space": ("space", "show the search space, or an arch's MACs and parameters"),
    "train": ("train", "train the supernet with task dropout (then the generator)"),
    "init": ("init", "an untrained run (initialised weights) for latency work, e.g. --space mbv3"),
    "eval": ("evaluate", "task accuracy of a sub-network, BN recalibrated"),
    "train-generator": ("train_generator", "train the architecture generator of a run"),
    "fit-accuracy": ("fit_accuracy", "fit the accuracy predictor of a run (what --min-accuracy answers with)"),
    "specialize": ("specialize", "generate the architecture for a task and budget, or the cheapest for an accuracy"),
    "pareto": ("pareto", "accuracy against MFLOPs (and ms on a target) of the generator's picks along a ladder of budgets"),
    "keygen": ("keygen", "make an Ed25519 key pair for signing bundles"),
    "export": ("export", "pack a run into a compressed, optionally signed .eas bundle"),
    "export-subnet": ("export_subnet", "one generated sub-network as a standalone .pte or .tflite file"),
    "provision": ("provision", "set up a fresh board over its serial console as a verified SSH target"),
    "deploy": ("deploy", "install the runtime and a bundle on a device over SSH (offline, atomic, rollback)"),
    "bench": ("bench", "benchmark generated sub-networks on a device or fleet, store the latencies"),
    "calibrate": ("calibrate", "refit a device's latency model from stored measurements"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge_eas", description=(
        "Elastic Architecture Search for edge devices: train one supernet, generate task- and "
        "budget-specific sub-networks in one forward pass, run them on the device."))
    parser.add_argument("--version", action="version", version=f"edge_eas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(f"edge_eas.commands.{module}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_arguments(p)
        p.add_argument("--json", action="store_true", help="print one JSON document on stdout, nothing else")
        p.set_defaults(_run=mod.run, _requires=getattr(mod, "requires", None))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        if args._requires is not None:  # before any work: a missing package must not cost a half-done run
            check("this command", args._requires(args))
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("edge_eas: interrupted", file=sys.stderr)
        return 130
    except (UserError, ValueError, FileNotFoundError, FileExistsError, PermissionError) as exc:
        if os.environ.get("EDGE_EAS_DEBUG"):
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"edge_eas {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
