"""The bench runner over SSH: runs the deployed runtime's device agent and streams its lines."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from pathlib import Path
from typing import Any, Iterator

from edge_eas.errors import DeviceRefused, UserError
from edge_eas.devices.targets import Target
from edge_eas.remote.layout import DeviceLayout, sha256_file
from edge_eas.remote.ssh import SSHSession
from edge_eas.remote.ssh_options import SSHOptions


class SSHRunner:
    """The bench harness's Runner over SSH: runs the deployed runtime's agent on the device.
    Each stream ends its connection (failed or not), so a retry always reconnects and a
    finished bench leaves no session open on the device."""

    def __init__(self, target: Target, options: SSHOptions = SSHOptions(), bundle: str | Path | None = None) -> None:
        if target.connection is None:
            raise UserError(f"target {target.name} has no [connection] table")
        self.target = target
        self.options = options
        self.device_id = target.name
        self._expected = sha256_file(bundle) if bundle and Path(bundle).is_file() else None
        self._session: SSHSession | None = None
        self._layout: DeviceLayout | None = None

    def session(self) -> SSHSession:
        """The runner's live connection, (re)connecting when there is none: for callers that run
        their own commands on the device beside the bench (e.g. --prepare)."""
        if self._session is None or not self._session.alive:
            self._drop()
            assert self.target.connection is not None
            session = SSHSession(self.target.connection, self.options, python=self.target.python)
            session.connect()
            self._session = session
            self._layout = DeviceLayout(session.expand(self.target.runtime_dir))
        return self._session

    def _drop(self) -> None:
        if self._session is not None:
            self._session.close()
        self._session = None

    @property
    def layout(self) -> DeviceLayout:
        self.session()
        assert self._layout is not None
        return self._layout

    def bundle_path(self) -> str:
        return self.layout.bundle

    def fetch_deployed_bundle(self, dest: Path) -> Path:
        """Copy the device's current bundle here (bench needs its manifest: space, classes)."""
        session = self.session()
        if not session.exists(self.layout.bundle):
            raise DeviceRefused(f"no bundle deployed on {self.device_id}: run `edge_eas deploy --target "
                            f"{self.target.name} --bundle model.eas` first")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".part")
        session.sftp.get(self.layout.bundle, str(tmp))
        os.replace(tmp, dest)
        return dest

    def prepare_scenarios(self, scenarios: list[dict[str, Any]]) -> str:
        """Check the device runs the bundle being benchmarked, then upload the scenarios file."""
        try:
            session = self.session()
            self._check_deployment(session)
            data = json.dumps(scenarios, sort_keys=True).encode()
            remote = f"{self.layout.root}/bench/scenarios-{hashlib.sha256(data).hexdigest()[:16]}.json"
            if not session.exists(remote):
                session.write_bytes(data, remote)
            return remote
        except Exception:
            self._drop()
            raise

    def _check_deployment(self, session: SSHSession) -> None:
        layout = self.layout
        if not session.exists(layout.venv_python):
            raise DeviceRefused(f"no edge_eas runtime on {self.device_id} ({layout.root}): run "
                            f"`edge_eas deploy --target {self.target.name}` first")
        if self._expected is None:
            return
        try:
            release = posixpath.basename(session.sftp.readlink(layout.current) or "")
        except (FileNotFoundError, OSError):
            release = ""
        if release != self._expected[:16]:
            raise DeviceRefused(f"{self.device_id} runs bundle {release or 'none'}, not {self._expected[:16]}: run "
                            f"`edge_eas deploy --target {self.target.name} --bundle ...` first")

    def stream(self, agent_args: list[str]) -> Iterator[str]:
        try:
            session = self.session()
            argv = [self.layout.venv_python, "-m", "edge_eas.runtime", *agent_args,
                    "--heartbeat", f"{self.options.heartbeat_s:g}"]
            yield from session.stream(argv, ok=(0, 3))  # 3: some scenarios failed, reported as error lines
        finally:
            self._drop()  # a cut link can leave the transport looking alive: never reuse it

    def close(self) -> None:
        self._drop()
