"""The budget flags `specialize` and `export-subnet` share: one `--budget KIND=VALUE` (the older
`--budget-mflops/--budget-params/--budget-ms` kept as aliases) and the device whose latency model
turns an ms budget into an arch."""

from __future__ import annotations

import argparse

from edge_eas.net.budget import Budget


def add_budget_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    budget = p.add_mutually_exclusive_group(required=required)
    budget.add_argument("--budget", metavar="KIND=VALUE",
                        help="mflops=5 (millions of MACs), params=2e5, or ms=3 on --target (needs its calibrated "
                             "latency model)")
    budget.add_argument("--budget-mflops", type=float, metavar="X", help="the same as --budget mflops=X")
    budget.add_argument("--budget-params", type=float, metavar="X", help="the same as --budget params=X")
    budget.add_argument("--budget-ms", type=float, metavar="X", help="the same as --budget ms=X")
    p.add_argument("--target", help="device whose latency model turns ms budgets into archs")
    p.add_argument("--engine", help="engine of the latency model (default: the target's)")
    p.add_argument("--threads", type=int, help="threads of the latency model (default: the target's)")


def budget_of(args: argparse.Namespace) -> Budget | None:
    """The one budget the flags give (argparse lets only one through; None when the group is
    optional and none is given); a misspelt one is a ValueError, which the CLI prints as one line."""
    return Budget.given(args.budget, args.budget_mflops, args.budget_params, args.budget_ms)

