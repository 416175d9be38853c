"""`edge_eas deploy` and `edge_eas bench` over real SSH: OpenSSH sshd in network namespaces
(tests/labs/ssh_lab.py), each "device" with its own address, host key, hostname, home and a torch-free
runtime venv installed offline by deploy. Faults are real too: unknown and changed host keys,
a wrong key, an unreachable address, a cable pulled mid-bench, sshd killed mid-bench.

The CLI runs as a subprocess, exactly as a user runs it.
"""

from __future__ import annotations

import json
import math
import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .labs.ssh_lab import FaultLab, SimDevice, have_sshd, leftovers

from .test_firmware_scripts import _governors as governors
from .test_firmware_scripts import _pi_tree as pi_tree

paramiko = pytest.importorskip("paramiko")
pytestmark = pytest.mark.skipif(not have_sshd(), reason="needs OpenSSH sshd (apt-get install openssh-server)")

# Quick failure for tests that expect one (wrong key, unreachable host): nothing there is timed.
FAST = {"connect_timeout": 1.5, "command_timeout": 2.0, "retries": 2, "backoff": 0.2}
FAULT_SCENARIOS = 24  # the agent times scenarios in interleaved groups of 10: three groups
# How long a fault test waits for the bench to get somewhere (a first result, a retry). Only a hung
# bench should hit it: 120 s ran out on this machine while an arm64 rootfs was being built beside it.
PROGRESS_WAIT_S = 900.0


# ---- helpers -----------------------------------------------------------------------------------
def cli(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_eas.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def cli_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    res = cli(env, *args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    """A user error: exit 2, nothing on stdout, exactly one line on stderr, no traceback."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert res.stdout == ""
    return lines[0]


def stored(store: Path) -> list[tuple[str, str]]:
    """(device, scenario) of every stored measurement."""
    if not store.exists():
        return []
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute("SELECT device_id, scenario FROM measurements").fetchall()
    except sqlite3.OperationalError:  # schema not created yet
        return []
    finally:
        db.close()


def wait_for(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def assert_each_scenario_once(store: Path, devices: list[str], n: int) -> None:
    rows = stored(store)
    for d in devices:
        mine = sorted(s for dev, s in rows if dev == d)
        assert mine == [f"s{i:03d}" for i in range(n)], (d, mine)  # each scenario once: none lost, none twice


def known_hosts_with(tmp: Path, lab: FaultLab, *devices: SimDevice) -> Path:
    path = tmp / "known_hosts"
    path.write_text("".join(lab.known_hosts_line(d) for d in devices))
    return path


# ---- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    # dev-a's /proc, /sys and /etc, as firmware_scripts see them, are a fake Raspberry Pi tree
    fake_pi = pi_tree(tmp_path_factory.mktemp("fake-pi"))
    lab = FaultLab(tmp_path_factory.mktemp("lab"), ["dev-a", "dev-b", "dev-c"],
                    device_env={"EDGE_EAS_SYSFS_ROOT": str(fake_pi)}).start()
    lab.fake_pi = fake_pi  # type: ignore[attr-defined]
    yield lab
    lab.close()
    assert leftovers(lab) == {"netns": [], "links": [], "processes": []}


@pytest.fixture(scope="module")
def targets(lab: FaultLab) -> dict[str, Path]:
    return {d.name: lab.write_target(d) for d in lab.devices}


@pytest.fixture(scope="module")
def deployed(lab: FaultLab, targets: dict[str, Path], env: dict[str, str], tiny_bundle: Path) -> dict[str, Any]:
    """dev-a and dev-b deployed in parallel through the CLI: venv + offline install, once per run."""
    from edge_eas.remote.install_plan import dependency_wheels, runtime_wheel
    from edge_eas.remote.wheels import DevicePlatform
    runtime_wheel()  # fill the host's wheel caches once, so the parallel deploys do not race on them
    dependency_wheels(DevicePlatform.host())
    procs = {name: subprocess.Popen([sys.executable, "-m", "edge_eas.cli", "deploy", "--target", str(targets[name]),
                                     "--bundle", str(tiny_bundle), "--allow-unsigned", "--json"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env) for name in ("dev-a", "dev-b")}
    out = {}
    for name, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        out[name] = json.loads(stdout)
    return out


@dataclass(frozen=True)
class Pace:
    """How fast this machine runs the device agent over SSH, measured once per module, so that the
    fault tests size their timeouts and their work from this machine, not from constants tuned on
    another one (a 2x slower machine of the same kind failed on fixed 2 s timeouts)."""
    connect_s: float       # SSH connect + authenticate
    first_line_s: float    # command start -> the agent's first line (interpreter start, imports)
    per_run_ms: float      # one timed sample of the benchmarked sub-network (it repeats sub-ms inferences)

    def silence_timeout(self) -> float:
        """Silence that means a dead link: several times the longest gap a live agent leaves."""
        return max(2.0, 4 * (self.connect_s + self.first_line_s))

    def fast(self) -> dict[str, float]:
        """Give up on a silent link quickly, relative to this machine."""
        return {"connect_timeout": max(1.5, 4 * self.connect_s), "command_timeout": self.silence_timeout(),
                "retries": 2, "backoff": 0.2}

    def keepalive(self) -> dict[str, float]:
        """A long command timeout, as users have: a cut link is noticed through unanswered keep-alives."""
        return {**self.fast(), "command_timeout": 120.0, "keepalive": 1}

    def fault_bench(self) -> list[str]:
        """Enough timed runs that a group of 10 interleaved scenarios takes ~1.5 s here: a fault
        injected when the first group's results are stored always lands mid-bench."""
        runs = min(50_000, max(30, math.ceil(150 / self.per_run_ms)))
        return ["--scenarios", str(FAULT_SCENARIOS), "--runs", str(runs), "--warmup", "10"]


@pytest.fixture(scope="module")
def pace(lab: FaultLab, deployed: dict[str, Any], targets: dict[str, Path], tiny_bundle: Path) -> Pace:
    from edge_eas.remote.ssh import SSHSession
    from edge_eas.remote.ssh_options import ssh_options
    from edge_eas.remote.ssh_runner import SSHRunner
    from edge_eas.devices.targets import load_target
    t = load_target(str(targets["dev-a"]))
    opts = ssh_options(t)
    t0 = time.monotonic()
    with SSHSession(t.connection, opts):  # type: ignore[arg-type]
        connect_s = time.monotonic() - t0
    runner = SSHRunner(t, opts, bundle=tiny_bundle)
    try:
        path = runner.prepare_scenarios([{"id": "pace", "classes": [0, 1, 2], "budget_mflops": 1e6}])
        args = ["--bundle", runner.bundle_path(), "--scenarios", path, "--runs", "300", "--warmup", "10",
                "--engine", "numpy", "--threads", "1"]
        t0 = time.monotonic()
        lines = [(time.monotonic() - t0, json.loads(ln)) for ln in runner.stream(args) if ln.startswith("{")]
    finally:
        runner.close()
    meas = next(doc for _, doc in lines if doc["type"] == "measurement")
    return Pace(connect_s=connect_s, first_line_s=lines[0][0], per_run_ms=meas["stats"]["sample_median_ms"])


@pytest.fixture(scope="module")
def other_bundle(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, different bundle of the same run (for rollback)."""
    from edge_eas.host.bundle import export_bundle
    out = tmp_path_factory.mktemp("bundle2") / "model.eas"
    export_bundle(tiny_run, out, calib_per_class=8)
    return out


# ---- deploy + bench ----------------------------------------------------------------------------------
def test_deploy_then_bench_two_devices_end_to_end(lab: FaultLab, deployed: dict[str, Any],
                                                  targets: dict[str, Path], env: dict[str, str],
                                                  tiny_bundle: Path, tmp_path: Path) -> None:
    from edge_eas.remote.layout import sha256_file
    sha = sha256_file(tiny_bundle)
    for dev in lab.devices[:2]:
        rep = deployed[dev.name]
        assert rep["runtime_installed"] and rep["bundle_uploaded"] and rep["switched"]
        assert rep["transferred_bytes"] > tiny_bundle.stat().st_size  # bundle + wheels
        assert rep["bundle_sha256"] == sha == rep["smoke"]["bundle_sha256"]
        assert rep["smoke"]["hostname"] == dev.hostname  # the agent ran inside that device's namespace
        assert "torch" not in rep["smoke"]["versions"] and rep["smoke"]["numpy"]
        assert rep["smoke"]["median_ms"] > 0
        on_device = dev.runtime_dir / "current" / "model.eas"
        assert on_device.resolve().parent.name == sha[:16] and sha256_file(on_device) == sha
        assert not list(dev.runtime_dir.rglob("*.tmp-*"))  # no temporary upload left behind

    store = tmp_path / "store.sqlite"
    res = cli(env, "bench", "--target", f"{targets['dev-a']},{targets['dev-b']}", "--bundle", str(tiny_bundle),
              "--scenarios", "6", "--runs", "30", "--store", str(store), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["failed_devices"] == [] and doc["scenarios"] == 6
    assert {d["device"]: d["stored"] for d in doc["devices"]} == {"dev-a": 6, "dev-b": 6}
    assert_each_scenario_once(store, ["dev-a", "dev-b"], 6)
    db = sqlite3.connect(store)
    envs = [json.loads(e) for (e,) in db.execute("SELECT environment_json FROM measurements")]
    db.close()
    assert all("torch" not in e["versions"] for e in envs)
    assert {e["hostname"] for e in envs} == {"dev-a", "dev-b"}


def test_bench_prepare_sets_governors_records_state_and_restores(lab: FaultLab, deployed: dict[str, Any],
                                                                targets: dict[str, Path], env: dict[str, str],
                                                                tiny_bundle: Path, tmp_path: Path) -> None:
    fake = lab.fake_pi  # type: ignore[attr-defined]
    assert set(governors(fake)) == {"ondemand"}
    res = cli(env, "bench", "--target", str(targets["dev-a"]), "--bundle", str(tiny_bundle), "--scenarios", "2",
              "--runs", "30", "--warmup", "1", "--store", str(tmp_path / "s.sqlite"), "--prepare", "--json")
    assert res.returncode == 0, res.stderr
    prep = json.loads(res.stdout)["devices"][0]["bench_prepare"]
    assert prep["prepare"]["board"] == "raspberry-pi" and prep["prepare"]["changed"]
    assert set(prep["prepare"]["governors_after"].values()) == {"performance"}
    assert prep["prepare"]["temperature_c"] == 51.0 and prep["prepare"]["throttled"] == "0x0"
    assert set(prep["restore"]["governors_after"].values()) == {"ondemand"}
    assert set(governors(fake)) == {"ondemand"}  # the device is as it was
    # the scripts were uploaded beside the runtime, where they can also be run by hand
    assert (lab.devices[0].runtime_dir / "firmware" / "bench_prepare.sh").is_file()


def test_device_venv_has_no_torch_and_arguments_are_never_shell_interpreted(lab: FaultLab, deployed: dict[str, Any],
                                                                             targets: dict[str, Path]) -> None:
    from edge_eas.remote.ssh import SSHSession
    from edge_eas.remote.ssh_options import ssh_options
    from edge_eas.devices.targets import load_target
    t = load_target(str(targets["dev-a"]))
    with SSHSession(t.connection, ssh_options(t)) as s:  # type: ignore[arg-type]
        venv_python = s.expand("~/.edge_eas/venv/bin/python")
        assert s.expand("~/.edge_eas") == s.home + "/.edge_eas" and s.home != ""
        res = s.run([venv_python, "-c", "import importlib.util as u; print(u.find_spec('torch'))"])
        assert (res.rc, res.stdout.strip()) == (0, "None")
        hostile = ["a; touch /tmp/edge-eas-pwned", "$(id)", "`id`", "'\"", "~", "*", "x\ny"]
        res = s.run([venv_python, "-c", "import json,sys; print(json.dumps(sys.argv[1:]))", *hostile])
        assert json.loads(res.stdout) == hostile and not Path("/tmp/edge-eas-pwned").exists()


def test_redeploying_the_same_bundle_transfers_nothing(deployed: dict[str, Any], targets: dict[str, Path],
                                                       env: dict[str, str], tiny_bundle: Path) -> None:
    rep = cli_json(env, "deploy", "--target", str(targets["dev-a"]), "--bundle", str(tiny_bundle), "--allow-unsigned")
    assert rep["transferred_bytes"] == 0
    assert not rep["runtime_installed"] and not rep["bundle_uploaded"] and not rep["switched"]
    assert rep["current"] == deployed["dev-a"]["current"] and rep["smoke"]["median_ms"] > 0


def test_deploy_ships_the_targets_latency_models_beside_the_bundle(lab: FaultLab, deployed: dict[str, Any],
                                                                   targets: dict[str, Path], env: dict[str, str],
                                                                   tiny_bundle: Path) -> None:
    """What the agent's help promises: the target's calibrated models (and their signature)
    next to the bundle, where the agent reads them; sent again only when they changed."""
    from edge_eas.cost.latency_models import LatencyModels
    name = deployed["dev-a"]["target"]
    local = Path(env["EDGE_EAS_HOME"]) / "latency-models" / f"{name}.json"
    models = LatencyModels(name, {"numpy/t1": {"target": name, "engine": "numpy", "threads": 1}})
    models.write(local)
    try:
        rep = cli_json(env, "deploy", "--target", str(targets["dev-a"]), "--bundle", str(tiny_bundle),
                       "--allow-unsigned")
        shipped = lab.devices[0].runtime_dir / rep["current"] / "latency_models.json"
        assert shipped.read_bytes() == local.read_bytes() and rep["transferred_bytes"] == len(local.read_bytes())
        assert rep["smoke"]["median_ms"] > 0  # the agent loaded them
        again = cli_json(env, "deploy", "--target", str(targets["dev-a"]), "--bundle", str(tiny_bundle),
                         "--allow-unsigned")
        assert again["transferred_bytes"] == 0
    finally:
        local.unlink()


def test_rollback_returns_to_the_previous_bundle(lab: FaultLab, deployed: dict[str, Any], targets: dict[str, Path],
                                                 env: dict[str, str], tiny_bundle: Path, other_bundle: Path,
                                                 tmp_path: Path) -> None:
    from edge_eas.remote.layout import sha256_file
    first, second = sha256_file(tiny_bundle), sha256_file(other_bundle)
    assert first != second
    t = str(targets["dev-b"])
    rep = cli_json(env, "deploy", "--target", t, "--bundle", str(other_bundle), "--allow-unsigned")
    assert rep["bundle_uploaded"] and not rep["runtime_installed"]
    assert other_bundle.stat().st_size < rep["transferred_bytes"] < other_bundle.stat().st_size + 4096  # + smoke.json
    assert (rep["current"], rep["previous"]) == (f"releases/{second[:16]}", f"releases/{first[:16]}")
    assert rep["smoke"]["bundle_sha256"] == second
    # bench refuses to measure a bundle the device does not run (measurements would be mislabelled)
    res = cli(env, "bench", "--target", t, "--bundle", str(tiny_bundle), "--scenarios", "2", "--runs", "30",
              "--store", str(tmp_path / "s.sqlite"), "--json")
    assert res.returncode == 1 and "edge_eas deploy" in json.loads(res.stdout)["devices"][0]["failure"]

    back = cli_json(env, "deploy", "--target", t, "--rollback")
    assert back["rolled_back"] and back["transferred_bytes"] == 0
    assert (back["current"], back["previous"]) == (f"releases/{first[:16]}", f"releases/{second[:16]}")
    assert back["bundle_sha256"] == first == back["smoke"]["bundle_sha256"]
    dev = lab.devices[1]
    assert sha256_file(dev.runtime_dir / "current" / "model.eas") == first


# ---- host keys and credentials ---------------------------------------------------------------------------
def test_unknown_host_key_is_refused(lab: FaultLab, env: dict[str, str], tiny_bundle: Path, tmp_path: Path) -> None:
    dev = lab.devices[2]
    kh = tmp_path / "known_hosts"
    kh.write_text(lab.known_hosts_line(lab.devices[0]))  # knows another device, not this one
    target = lab.write_target(dev, tmp_path / "c.toml", known_hosts=kh)
    msg = one_line_error(cli(env, "deploy", "--target", str(target), "--bundle", str(tiny_bundle), "--allow-unsigned"))
    assert f"host {dev.addr} is not in {kh}" in msg and "--trust-new-host" in msg and "SHA256:" in msg
    assert kh.read_text() == lab.known_hosts_line(lab.devices[0])  # nothing recorded
    assert not (dev.runtime_dir / "current").exists()
    # bench gives up at once: retrying cannot make an unknown host key known
    res = cli(env, "bench", "--target", str(target), "--bundle", str(tiny_bundle), "--scenarios", "2", "--runs", "30",
              "--store", str(tmp_path / "s.sqlite"), "--json")
    rep = json.loads(res.stdout)["devices"][0]
    assert res.returncode == 1 and rep["attempts"] == 1 and f"host {dev.addr} is not in {kh}" in rep["failure"]


def test_trust_new_host_records_the_key_then_deploys(lab: FaultLab, env: dict[str, str], tiny_bundle: Path,
                                                     tmp_path: Path) -> None:
    dev = lab.devices[2]
    kh = tmp_path / "ssh" / "known_hosts"  # does not exist yet
    target = lab.write_target(dev, tmp_path / "c.toml", known_hosts=kh)
    res = cli(env, "deploy", "--target", str(target), "--bundle", str(tiny_bundle), "--allow-unsigned", "--trust-new-host", "--json")
    assert res.returncode == 0, res.stderr
    assert kh.read_text() == lab.known_hosts_line(dev) and "trusted new host" in res.stderr
    assert json.loads(res.stdout)["smoke"]["hostname"] == dev.hostname
    again = cli_json(env, "deploy", "--target", str(target), "--bundle", str(tiny_bundle), "--allow-unsigned")  # no flag: key known now
    assert again["transferred_bytes"] == 0 and kh.read_text() == lab.known_hosts_line(dev)


def test_changed_host_key_is_refused_even_with_trust_new_host(lab: FaultLab, env: dict[str, str], tiny_bundle: Path,
                                                              tmp_path: Path) -> None:
    dev = lab.devices[2]
    kh = known_hosts_with(tmp_path, lab, dev)
    recorded = kh.read_text()
    target = lab.write_target(dev, tmp_path / "c.toml", known_hosts=kh)
    lab.regenerate_host_key(dev)  # reinstalled device, or an impostor at its address
    for extra in ([], ["--trust-new-host"]):
        msg = one_line_error(cli(env, "deploy", "--target", str(target), "--bundle", str(tiny_bundle), "--allow-unsigned", *extra))
        assert "CHANGED" in msg and "man-in-the-middle" in msg and str(kh) in msg
    assert kh.read_text() == recorded


def test_wrong_key_and_unreachable_host_are_one_line_errors(lab: FaultLab, env: dict[str, str], tiny_bundle: Path,
                                                            tmp_path: Path) -> None:
    dev = lab.devices[2]
    kh = known_hosts_with(tmp_path, lab, dev)
    target = lab.write_target(dev, tmp_path / "c.toml", known_hosts=kh, **FAST)
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    msg = one_line_error(cli(env, "deploy", "--target", str(target), "--bundle", str(tiny_bundle), "--allow-unsigned", "--key",
                             str(stranger)))
    assert "refused SSH key" in msg and str(stranger) in msg
    nobody = f"{dev.addr.rsplit('.', 1)[0]}.99:22" if lab.uses_netns else f"127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    msg = one_line_error(cli(env, "deploy", "--target", str(target), "--bundle", str(tiny_bundle), "--allow-unsigned", "--host",
                             f"root@{nobody}"))
    assert "cannot reach" in msg and "after 3 attempts" in msg and time.monotonic() - t0 < 30


def _closed_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- faults mid-bench ------------------------------------------------------------------------------------
class Bench:
    """`edge_eas bench` running in the background; its stderr lines arrive in a queue, so a test can
    wait for what the harness reports (a lost link, a retry) instead of sleeping."""

    def __init__(self, env: dict[str, str], target: Path, bundle: Path, store: Path, work: list[str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_eas.cli", "bench", "--target", str(target),
                                      "--bundle", str(bundle), *work, "--store", str(store), "--json"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for_line(self, needle: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"bench never reported {needle!r}; it said: {self.seen}") from None
            self.seen.append(line)
            if needle in line:
                return line

    def finish(self, timeout: float = 180) -> tuple[int, dict[str, Any], str]:
        out = self.proc.communicate(timeout=timeout)[0]
        self._reader.join(10)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return self.proc.returncode, json.loads(out), "".join(self.seen)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.parametrize("conn", ["fast", "keepalive"], ids=["command-timeout", "keepalive"])
def test_link_down_mid_bench_then_up_completes_without_loss_or_duplicates(
        lab: FaultLab, deployed: dict[str, Any], pace: Pace, env: dict[str, str], tiny_bundle: Path,
        tmp_path: Path, conn: str) -> None:
    if not lab.uses_netns:
        pytest.skip("network namespaces unavailable: no link to cut")
    dev = lab.devices[0]
    target = lab.write_target(dev, tmp_path / "a-fast.toml", **getattr(pace, conn)())
    store = tmp_path / "store.sqlite"
    bench = Bench(env, target, tiny_bundle, store, pace.fault_bench())
    try:
        wait_for(lambda: len(stored(store)) >= 1, PROGRESS_WAIT_S, "the first measurement")
        lab.set_link(dev, up=False)  # the cable is pulled right after a result was stored
        cut_at = len(stored(store))
        # the link stays down until the harness has noticed and is retrying: it must reconnect
        bench.wait_for_line("retrying (attempt 2)", PROGRESS_WAIT_S)
        lab.set_link(dev, up=True)
        rc, doc, err = bench.finish()
    finally:
        lab.set_link(dev, up=True)
        bench.kill()
    assert rc == 0, err
    rep = doc["devices"][0]
    assert cut_at < FAULT_SCENARIOS, "the bench finished before the link was cut: the test proved nothing"
    assert rep["failure"] is None and rep["attempts"] >= 2  # it lost the link and reconnected
    assert_each_scenario_once(store, [dev.name], FAULT_SCENARIOS)


def test_sshd_killed_mid_bench_keeps_results_and_rerun_resumes(
        lab: FaultLab, deployed: dict[str, Any], pace: Pace, env: dict[str, str], tiny_bundle: Path,
        tmp_path: Path) -> None:
    dev = lab.devices[1]
    target = lab.write_target(dev, tmp_path / "b-fast.toml", **pace.fast())
    store = tmp_path / "store.sqlite"
    bench = Bench(env, target, tiny_bundle, store, pace.fault_bench())
    try:
        wait_for(lambda: len(stored(store)) >= 1, PROGRESS_WAIT_S, "the first measurement")
        lab.kill_device_processes(dev)  # sshd, the session and the agent: the board lost power
        rc, doc, err = bench.finish()
    finally:
        bench.kill()
        if lab.devices[1].proc is None:
            lab.start_sshd(dev)
    assert rc == 1, err
    rep = doc["devices"][0]
    assert "cannot reach" in rep["failure"] and "connection refused" in rep["failure"]
    kept = stored(store)
    assert 1 <= len(kept) < FAULT_SCENARIOS and len(set(kept)) == len(kept)

    res = cli(env, "bench", "--target", str(target), "--bundle", str(tiny_bundle), *pace.fault_bench(), "--store",
              str(store), "--json")
    assert res.returncode == 0, res.stderr
    again = json.loads(res.stdout)["devices"][0]
    assert (again["skipped"], again["stored"], again["resent"]) == (len(kept), FAULT_SCENARIOS - len(kept), 0)
    assert_each_scenario_once(store, [dev.name], FAULT_SCENARIOS)


# ---- options ---------------------------------------------------------------------------------------------
def test_ssh_options_precedence_and_validation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_eas.errors import UserError
    from edge_eas.remote.ssh_options import SSHOptions, SSHOverrides, ssh_options
    from edge_eas.devices.targets import load_target
    path = tmp_path / "dev.toml"
    path.write_text('name = "dev"\n[connection]\nhost = "10.0.0.2"\nkey = "~/k"\ncommand_timeout = 7\nretries = 0\n')
    t = load_target(str(path))
    opts = ssh_options(t, SSHOverrides(host="pi@10.0.0.3:2222", key="/k2", trust_new_host=True))
    assert (opts.command_timeout, opts.retries, opts.connect_timeout) == (7.0, 0, SSHOptions().connect_timeout)
    assert (opts.host, opts.key, opts.trust_new_host) == ("pi@10.0.0.3:2222", "/k2", True)
    monkeypatch.setenv("EDGE_EAS_SSH_COMMAND_TIMEOUT", "3.5")
    assert ssh_options(t, None).command_timeout == 3.5 and not ssh_options(t, None).trust_new_host
    monkeypatch.setenv("EDGE_EAS_SSH_COMMAND_TIMEOUT", "soon")
    with pytest.raises(UserError, match="EDGE_EAS_SSH_COMMAND_TIMEOUT must be a number"):
        ssh_options(t, None)
    monkeypatch.delenv("EDGE_EAS_SSH_COMMAND_TIMEOUT")
    path.write_text('name = "dev"\n[connection]\nhost = "h"\nconnect_timeout = -1\n')
    with pytest.raises(UserError, match=r"dev.toml: \[connection\] connect_timeout must be a positive number"):
        ssh_options(load_target(str(path)), None)


def test_quickstart_ssh_demo_runs_against_a_simulated_device(tiny_bundle: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`edge_eas quickstart --ssh-demo`'s SSH leg: its own lab, offline deploy, bench, calibration."""
    from edge_eas.workflows.quickstart import ssh_demo

    def namespaces() -> list[str]:
        return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines()

    monkeypatch.setenv("EDGE_EAS_HOME", str(tmp_path / "home"))
    store = tmp_path / "m.sqlite"
    before = namespaces()
    out = ssh_demo(tmp_path, tiny_bundle, store, scenarios=6, seed=3)
    assert out["failure"] is None and out["measurements"] == 6 and out["new_this_run"] == 6
    assert out["within_budget"] == 1.0 and out["calibration"]
    assert sorted(s for _, s in stored(store)) == [f"s{i:03d}" for i in range(6)]
    assert namespaces() == before  # the demo's lab cleaned up after itself


# ---- trust on the device ----------------------------------------------------------------------------------
def test_trust_store_refuses_what_its_keys_did_not_sign(lab: FaultLab, env: dict[str, str], tiny_run: Path,
                                                       tiny_bundle: Path, tmp_path: Path) -> None:
    """A target with [trust] keys: deploy installs the store; unsigned bundles, bundles signed by a
    removed key, a bundle swapped in behind deploy's back and a tampered latency model are each
    refused in one line, and the release that ran keeps running."""
    from edge_eas.host.bundle import export_bundle
    from edge_eas.format.signing import generate_keypair, key_id_of, sign
    dev = lab.devices[2]
    keys = tmp_path / "keys"
    for name in ("release", "next"):
        generate_keypair(keys / name)
    signed, nxt = tmp_path / "signed.eas", tmp_path / "next.eas"
    export_bundle(tiny_run, signed, sign_key=keys / "release", calib_per_class=8)
    export_bundle(tiny_run, nxt, sign_key=keys / "next", calib_per_class=4)
    kh = known_hosts_with(tmp_path, lab, dev)
    target = lab.write_target(dev, tmp_path / "c.toml", known_hosts=kh)
    target.write_text(target.read_text() + f'\n[trust]\nkeys = ["{keys / "release.pub"}"]\n')

    rep = cli_json(env, "deploy", "--target", str(target), "--bundle", str(signed))
    assert rep["trust"]["store"] and rep["trust"]["signed_by"] == key_id_of(keys / "release.pub")
    current = rep["current"]
    release_dir = dev.runtime_dir / current

    def current_now() -> str:
        return os.readlink(dev.runtime_dir / "current")

    msg = one_line_error(cli(env, "deploy", "--target", str(target), "--bundle", str(tiny_bundle)))
    assert "unsigned" in msg and "--allow-unsigned" in msg and current_now() == current
    msg = one_line_error(cli(env, "deploy", "--target", str(target), "--bundle", str(nxt)))
    assert "would refuse" in msg and current_now() == current

    # an attacker with write access to the runtime directory swaps the bundle behind deploy's back
    original = (release_dir / "model.eas").read_bytes()
    (release_dir / "model.eas").write_bytes(tiny_bundle.read_bytes())
    res = cli(env, "bench", "--target", str(target), "--bundle", str(signed), "--scenarios", "1", "--runs", "30",
              "--store", str(tmp_path / "s.sqlite"), "--json")
    assert res.returncode == 1
    fail = json.loads(res.stdout)["devices"][0]["failure"]
    assert "runs bundle" in fail or "not signed" in fail  # refused: the swapped file is not what was deployed
    res = subprocess.run(["ip", "netns", "exec", dev.netns, str(dev.runtime_dir / "venv/bin/python"), "-m",
                          "edge_eas.runtime", "--bundle", str(release_dir / "model.eas")] if dev.netns else
                         [str(dev.runtime_dir / "venv/bin/python"), "-m", "edge_eas.runtime", "--bundle",
                          str(release_dir / "model.eas")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "not signed" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    (release_dir / "model.eas").write_bytes(original)

    # a latency model shipped beside the bundle: signed it loads, tampered it is refused
    models = release_dir / "latency_models.json"
    models.write_text(json.dumps({"target": "dev-c", "models": {}}))
    Path(str(models) + ".sig").write_text(json.dumps(sign(models.read_bytes(), keys / "release")))
    ok = cli(env, "bench", "--target", str(target), "--bundle", str(signed), "--scenarios", "1", "--runs", "30",
             "--store", str(tmp_path / "s2.sqlite"), "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["devices"][0]["hello"]["trust"]["verified"]
    models.write_text(json.dumps({"target": "dev-c", "models": {"numpy/t1": {}}}))
    bad = cli(env, "bench", "--target", str(target), "--bundle", str(signed), "--scenarios", "1", "--runs", "30",
              "--store", str(tmp_path / "s3.sqlite"), "--json")
    assert bad.returncode == 1 and "latency model" in json.loads(bad.stdout)["devices"][0]["failure"]
    models.unlink()
    Path(str(models) + ".sig").unlink()

    # rotation: trust the next key, deploy what it signed, then drop the old key
    rep = cli_json(env, "deploy", "--target", str(target), "--bundle", str(nxt), "--trust-key",
                   str(keys / "next.pub"))
    assert set(rep["trust"]["keys"]) == {key_id_of(keys / "release.pub"), key_id_of(keys / "next.pub")}
    target.write_text(target.read_text().replace(str(keys / "release.pub"), str(keys / "next.pub")))
    rep = cli_json(env, "deploy", "--target", str(target), "--bundle", str(nxt))
    assert rep["trust"]["keys"] == [key_id_of(keys / "next.pub")]
    running = current_now()
    msg = one_line_error(cli(env, "deploy", "--target", str(target), "--rollback"))  # back to the release-key bundle
    assert "does not match any trusted key" in msg and current_now() == running  # refused; what ran still runs


def test_passphrase_protected_key_works_via_ssh_agent_and_env(lab: FaultLab, deployed: dict[str, Any],
                                                              env: dict[str, str], tiny_bundle: Path,
                                                              tmp_path: Path) -> None:
    dev = lab.devices[1]
    key = tmp_path / "id_protected"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret phrase", "-f", str(key)], check=True)
    with open(dev.dir / "authorized_keys", "a") as f:
        f.write(Path(f"{key}.pub").read_text())
    target = lab.write_target(dev, tmp_path / "b.toml", key=key)
    clean = {k: v for k, v in env.items() if k not in ("SSH_AUTH_SOCK", "EDGE_EAS_KEY_PASSPHRASE")}
    msg = one_line_error(cli(clean, "deploy", "--target", str(target), "--bundle", str(tiny_bundle),
                             "--allow-unsigned"))
    assert "protected by a passphrase" in msg and "ssh-add" in msg

    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(sock.exists, 30, "ssh-agent's socket")
        askpass = tmp_path / "askpass.sh"
        askpass.write_text("#!/bin/sh\necho 's3cret phrase'\n")
        askpass.chmod(0o700)
        subprocess.run(["ssh-add", str(key)], check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                       env={**clean, "SSH_AUTH_SOCK": str(sock), "SSH_ASKPASS": str(askpass),
                            "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"})
        res = cli({**clean, "SSH_AUTH_SOCK": str(sock)}, "deploy", "--target", str(target), "--bundle",
                  str(tiny_bundle), "--allow-unsigned", "--json")
        assert res.returncode == 0, res.stderr
        assert "s3cret" not in res.stdout + res.stderr
    finally:
        agent.kill()
        agent.wait()
    res = cli({**clean, "EDGE_EAS_KEY_PASSPHRASE": "s3cret phrase"}, "deploy", "--target", str(target), "--bundle",
              str(tiny_bundle), "--allow-unsigned", "--json")
    assert res.returncode == 0, res.stderr
    msg = one_line_error(cli({**clean, "EDGE_EAS_KEY_PASSPHRASE": "wrong"}, "deploy", "--target", str(target),
                             "--bundle", str(tiny_bundle), "--allow-unsigned"))
    assert "wrong passphrase" in msg and "wrong" not in msg.replace("wrong passphrase", "")
