"""`edge_eas deploy`: install the runtime (offline) and a bundle on a device over SSH, keep the
previous deployment for `--rollback`, and prove it works with a smoke specialisation."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edge_eas.common.console import emit_json, info
from edge_eas.commands.ssh_flags import add_ssh_arguments, ssh_overrides
from edge_eas.common.requirements import REMOTE, Need, modules
from edge_eas.errors import UserError
from edge_eas.remote.fleet import expand_targets
from edge_eas.remote.ssh_options import ssh_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", required=True, help="target name(s), comma-separated, or a TOML path")
    p.add_argument("--bundle", type=Path, default=None, help="bundle to deploy (default model.eas)")
    add_ssh_arguments(p, host_help="override: user@addr[:port] (one target only)",
                      trust_help="accept an unknown host key and record it in the target's known_hosts")
    p.add_argument("--rollback", action="store_true", help="switch back to the previous deployment")
    p.add_argument("--trust-key", type=Path, action="append", default=[], metavar="KEY.pub",
                   help="also trust this public key on the device (key rotation); the target's [trust] keys are "
                        "always installed")
    p.add_argument("--allow-unsigned", action="store_true",
                   help="deploy an unsigned bundle: the device pins exactly this bundle's SHA-256 (recorded in "
                        "the deploy and bench reports)")
    p.add_argument("--wheels", type=Path, help="directory of wheels for the device (edge_eas, numpy, "
                                               "cryptography...) instead of building/downloading them")


def requires(args: argparse.Namespace) -> list[Need]:
    return modules(*REMOTE, why="deploying over SSH")


def run(args: argparse.Namespace) -> int:
    # lazy: loads packaging, paramiko only when this command runs (the CLI imports every command for its parser)
    from edge_eas.remote.deploy import deploy

    targets = expand_targets(args.target)
    if args.host and len(targets) > 1:
        raise UserError("--host overrides one target; --target names several")
    if args.wheels is not None and not args.wheels.is_dir():
        raise UserError(f"--wheels {args.wheels} is not a directory")
    bundle = None if args.rollback else (args.bundle or Path("model.eas"))
    ssh = ssh_overrides(args)
    reports: list[dict[str, Any]] = []
    failed: list[str] = []
    for t in targets:
        try:
            rep = deploy(t, ssh_options(t, ssh), bundle, rollback=args.rollback, wheels_dir=args.wheels,
                         trust_keys=tuple(args.trust_key), allow_unsigned=args.allow_unsigned)
        except UserError as exc:
            if len(targets) == 1:
                raise
            failed.append(t.name)
            reports.append({"target": t.name, "failure": str(exc)})
            info(f"[{t.name}] FAILED: {exc}")
            continue
        reports.append(rep.to_dict())
        if not args.json:
            print_summary(rep.to_dict())
    if args.json:
        emit_json(reports[0] if len(targets) == 1 else {"devices": reports, "failed_devices": failed})
    return 1 if failed else 0


def print_summary(r: dict[str, Any]) -> None:
    sm = r["smoke"]
    what = "rolled back" if r["rolled_back"] else ("deployed" if r["switched"] else "already deployed")
    print(f"{r['target']} ({r['host']}): {what} bundle {str(r['bundle_sha256'])[:16]} in {r['seconds']:.1f} s")
    print(f"  runtime   {r['runtime_dir']}/venv: edge_eas {sm.get('runtime_version')}, python {sm.get('python')}, "
          f"numpy {sm.get('numpy')}{' (system)' if r.get('numpy_source') == 'system' else ''} "
          f"({'installed' if r['runtime_installed'] else 'unchanged'})")
    if r.get("board"):
        b = r["board"]
        print(f"  board     {b.get('model') or 'no device-tree model'}"
              + (f", JetPack {b['jetpack']}" if b.get("jetpack") else "")
              + (f" (target {r['resolved_from']} -> profile {r['target']})" if r.get("resolved_from") else ""))
    providers = r.get("providers")
    print(f"  engine    {r.get('engine_package') or 'numpy only (no engine wheel)'}"
          + (f" (execution providers: {', '.join(providers)})" if providers else ""))
    tr = r.get("trust") or {}
    if r.get("rolled_back"):
        print("  trust     unchanged (rollback)")
    elif tr.get("store"):
        print(f"  trust     store with key(s) {', '.join(tr['keys'])}; bundle "
              + (f"signed by {tr['signed_by']}" if tr.get("signed_by") else "UNSIGNED, pinned (--allow-unsigned)"))
    else:
        print("  trust     no trust store on the device (no [trust] keys)")
    print(f"  releases  current {r['current']}, previous {r['previous'] or '-'}")
    print(f"  transfer  {r['transferred_bytes']:,} bytes" + (" (bundle uploaded)" if r["bundle_uploaded"] else ""))
    print(f"  smoke     classes {sm.get('classes')} budget {sm.get('budget_mflops')} MFLOPs -> "
          f"{sm.get('mflops', 0):.3f} MFLOPs, median {sm.get('median_ms', 0):.3f} ms ({sm.get('engine')}) "
          f"on {sm.get('hostname')}")
    for w in r.get("warnings") or []:
        print(f"  warning   {w}")
