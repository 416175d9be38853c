"""`edge_eas provision`: set up a fresh board over its serial console so that it becomes a
verified SSH target (hostname, authorized key, sshd, host key learnt over the cable)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from edge_eas.common.console import emit_json, info
from edge_eas.common.requirements import REMOTE, SERIAL, Need, modules
from edge_eas.common.paths import targets_dir
from edge_eas.devices.targets import load_target
from edge_eas.errors import UserError
from edge_eas.remote.provision import check_hostname, check_ip, provision, ProvisionRequest, Step
from edge_eas.remote.serial import Credentials, USER_ENV


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", required=True, help="profile to start from (e.g. raspberry-pi-4) or a TOML path")
    p.add_argument("--serial", required=True, help="the console's serial port, e.g. /dev/ttyUSB0")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--host-ip", help="this machine's address on the device's network: the device's address "
                                     "on that network is the one recorded")
    p.add_argument("--name", help="the device's target name (default: the profile's name)")
    p.add_argument("--hostname", help="hostname to give the device (default: the target name)")
    p.add_argument("--user", help="console login user (default $EDGE_EAS_SERIAL_USER, else the profile's SSH "
                                  "user); the password comes from $EDGE_EAS_SERIAL_PASSWORD or a prompt")
    p.add_argument("--key", type=Path, help="SSH private key to authorise (default: the profile's; created "
                                            "if missing)")
    p.add_argument("--known-hosts", type=Path, help="known_hosts file to record the host key in (default: "
                                                    "the profile's, else ~/.ssh/known_hosts)")
    p.add_argument("--out", type=Path, help="target TOML to create or update (default: "
                                            "$EDGE_EAS_HOME/targets/NAME.toml)")
    p.add_argument("--login-timeout", type=float, default=60.0, help="seconds to wait for a prompt")
    p.add_argument("--transcript", type=Path, help="append everything read from the console here "
                                                   "(passwords are never written)")


def requires(args: argparse.Namespace) -> list[Need]:
    return modules(*SERIAL, *REMOTE, why="provisioning over a serial console and confirming over SSH")


def run(args: argparse.Namespace) -> int:
    profile = load_target(args.target)
    if profile.is_fleet or profile.local:
        raise UserError(f"target {profile.name} is a {'fleet' if profile.is_fleet else 'local target'}: "
                        f"provision one device profile at a time")
    if args.baud <= 0:
        raise UserError("--baud must be positive")
    name = args.name or profile.name
    conn = profile.connection
    user = args.user or os.environ.get(USER_ENV) or (conn.user if conn else None)
    key = (args.key or Path(conn.key if conn and conn.key else "~/.ssh/id_ed25519")).expanduser()
    known = (args.known_hosts or Path(conn.known_hosts if conn and conn.known_hosts else "~/.ssh/known_hosts"))
    req = ProvisionRequest(
        profile=profile, name=name, serial=args.serial, baud=args.baud, creds=Credentials.from_env(user),
        hostname=check_hostname(args.hostname or name), key=key.resolve(), known_hosts=known.expanduser().resolve(),
        out=(args.out or targets_dir() / f"{name}.toml").expanduser().resolve(), host_ip=check_ip(args.host_ip),
        login_timeout=args.login_timeout, transcript=args.transcript)

    def show(step: Step) -> None:
        if not args.json:
            info(f"  {'changed  ' if step.changed else 'unchanged'}  {step.name:<16} {step.detail}")

    info(f"provisioning {name} over {args.serial} ({args.baud} baud)")
    report = provision(req, progress=show)
    if args.json:
        emit_json(report.to_dict())
    else:
        verdict = "provisioned" if report.changed else "already provisioned, nothing changed"
        print(f"{name}: {verdict}; reach it with --target {req.out} ({report.user}@{report.host}:{report.port})")
    return 0
