"""A real 64-bit ARM device in the suite: Debian arm64 under qemu user emulation (made by
firmware_scripts/make_arm64_device.sh, wrapped by tests/labs/arm64_lab.py), reached over SSH
through its own aarch64 sshd, deployed to offline with aarch64 wheels (LiteRT included), then
specialised, predicted and benchmarked on, through the CLI as a user runs it.

Skips only where the stand-in cannot exist: not root, or no qemu-aarch64 binfmt entry.
The rootfs is built once (a few minutes) and cached as a tarball; later runs restore it in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .labs.arm64_lab import Arm64Lab, Arm64Unavailable, chroot_pids, leftovers, mounts_under, script_path

from .test_firmware_scripts import _pi_tree as pi_tree

paramiko = pytest.importorskip("paramiko")
pytestmark = pytest.mark.slow  # builds and boots an arm64 device (see pyproject markers)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "firmware_scripts" / "make_arm64_device.sh"
BENCH_SCENARIOS = 6
PI_MODEL = "Raspberry Pi 4 Model B Rev 1.4"  # what the bookworm device's device-tree says (pi_tree)

# Runs on the device with the deployed venv: specialise the tasks with each engine, predict.
DEVICE_PREDICT = r"""
import json, platform, sys
import numpy as np
from edge_eas.runtime import Runtime
rt = Runtime.load(sys.argv[1])
x = np.load(sys.argv[2])
out = {"machine": platform.machine(), "numpy": np.__version__, "numpy_file": np.__file__, "results": []}
for sc in json.loads(sys.argv[3]):
    for engine in json.loads(sys.argv[4]):
        m = rt.specialize(classes=sc["classes"], budget_mflops=sc["budget_mflops"], engine=engine, threads=1)
        out["results"].append({"engine": m.engine, "arch": m.arch.to_dict(), "probs": m.predict(x).tolist()})
print(json.dumps(out))
"""


def cli(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_eas.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def stored(store: Path) -> list[tuple[str, str, str]]:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return db.execute("SELECT device_id, scenario, environment_json FROM measurements").fetchall()
    finally:
        db.close()


def engine_warnings(deploy_report: dict[str, Any]) -> list[str]:
    """Deploy warnings other than the trust ones these unsigned test bundles always get."""
    trust = [w for w in deploy_report["warnings"] if "[trust] keys" in w or "--allow-unsigned" in w]
    assert len(trust) == 2, deploy_report["warnings"]  # no store, and the pinned unsigned bundle: said plainly
    return [w for w in deploy_report["warnings"] if w not in trust]


# ---- fixtures ------------------------------------------------------------------------------------
def started_lab(root: Path, **kwargs: Any) -> Arm64Lab:
    """An arm64 device up (built or restored from the cache), or the test skipped where it cannot exist."""
    t0 = time.monotonic()
    try:
        lab = Arm64Lab(root, **kwargs).start()
    except Arm64Unavailable as exc:
        pytest.skip(f"no arm64 stand-in on this machine: {exc}")
    print(f"\n{lab.suite} arm64 device: build/restore {lab.build.seconds if lab.build else '?'} s "
          f"({'restored' if lab.build and lab.build.restored else 'debootstrap'}), sshd start {lab.start_seconds} s, "
          f"total {time.monotonic() - t0:.1f} s")
    return lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The bookworm device, as a Raspberry Pi 4 on Raspberry Pi OS (64-bit, bookworm) is: its
    device-tree model and sysfs are a Pi 4's (the board tree the lab names to every session)."""
    lab = started_lab(tmp_path_factory.mktemp("arm64"), board_tree=pi_tree(tmp_path_factory.mktemp("pi-tree")))
    yield lab
    lab.close()
    assert leftovers(lab) == {"processes": [], "mounts": []}
    assert not lab.device.rootfs.exists()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("edge_eas_home_arm64")
    return dict(os.environ, EDGE_EAS_HOME=str(home), PYTHONPATH=str(ROOT))


@pytest.fixture(scope="module")
def target(lab: Arm64Lab) -> Path:
    return lab.write_target(engine="auto", threads=1, command_timeout=300.0)


@pytest.fixture(scope="module")
def deployed(lab: Arm64Lab, target: Path, env: dict[str, str], tiny_bundle: Path) -> dict[str, Any]:
    t0 = time.monotonic()
    res = cli(env, "deploy", "--target", str(target), "--bundle", str(tiny_bundle), "--allow-unsigned", "--json")
    assert res.returncode == 0, res.stderr
    print(f"\narm64 deploy: {time.monotonic() - t0:.1f} s")
    return json.loads(res.stdout)


def ssh(target: Path) -> Any:
    from edge_eas.remote.ssh import SSHSession
    from edge_eas.remote.ssh_options import ssh_options
    from edge_eas.devices.targets import load_target
    t = load_target(str(target))
    return SSHSession(t.connection, ssh_options(t), python=t.python)  # type: ignore[arg-type]


# ---- the script on its own -----------------------------------------------------------------------
def test_arm64_script_usage_and_exit_codes() -> None:
    assert script_path() == SCRIPT
    res = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "build" in res.stdout and "EDGE_EAS_ARM64_CACHE" in res.stdout
    for argv in ([], ["frobnicate"], ["build", "--port"], ["start", "--port", "99999"], ["build", "--bogus"],
                 ["start", "--setenv", "NO SPACES=allowed"]):
        assert subprocess.run([str(SCRIPT), *argv], capture_output=True).returncode == 2, argv
    if os.geteuid() == 0:  # as an unprivileged user: the distinct "not root" code tests skip on
        import tempfile
        public = Path(tempfile.mkdtemp(prefix="eas-arm64-script-"))  # a checkout under /root is not readable
        try:
            public.chmod(0o755)
            script = Path(shutil.copy(SCRIPT, public / SCRIPT.name))
            script.chmod(0o755)
            res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(script), "build",
                                  "--rootfs", str(public / "r")], capture_output=True, text=True)
        finally:
            shutil.rmtree(public)
        assert res.returncode == 3 and "must run as root" in res.stderr


def test_arm64_mirror_comes_from_apt_sources_never_a_fixed_host(tmp_path: Path) -> None:
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)

    (tmp_path / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n')

    def mirror(suite: str = "bookworm") -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SCRIPT), "mirror", "--suite", suite], capture_output=True, text=True,
                              env=dict(os.environ, EDGE_EAS_APT_DIR=str(apt),
                                       EDGE_EAS_OS_RELEASE=str(tmp_path / "os-release")))

    assert mirror().returncode == 1 and "no apt source carries suite 'bookworm'" in mirror().stderr
    (apt / "sources.list.d" / "other.sources").write_text(
        "Types: deb\nURIs: https://example.org/node\nSuites: nodistro\nComponents: main\nArchitectures: amd64\n")
    (apt / "sources.list.d" / "debian.sources").write_text(
        "# a comment\nTypes: deb deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n")
    assert mirror().stdout.strip() == "http://mirror.example/debian"
    assert mirror("bookworm-security").stdout.strip() == "http://mirror.example/debian-security"
    # another release (the bullseye stand-in): no source names it, this machine's own mirror carries it
    other = mirror("bullseye")
    assert other.stdout.strip() == "http://mirror.example/debian" and "using the mirror of 'bookworm'" in other.stderr
    (apt / "sources.list").write_text("# old style\ndeb [arch=amd64,arm64 signed-by=/k.gpg] http://one.example/d bookworm main\n")
    assert mirror().stdout.strip() == "http://one.example/d"  # sources.list is read first
    (apt / "sources.list").write_text("deb [arch=amd64] http://x86only.example/d bookworm main\n")
    assert mirror().stdout.strip() == "http://mirror.example/debian"  # an amd64-only source cannot serve arm64


# ---- the device ------------------------------------------------------------------------------------
def test_arm64_device_runs_aarch64_sshd_with_its_own_host_key(lab: Arm64Lab, target: Path) -> None:
    dev = lab.device
    with ssh(target) as s:
        assert s.check(["uname", "-m"], "uname").strip() == "aarch64"
        assert s.check(["hostname"], "hostname").strip() == dev.name
        assert s.check(["/usr/bin/python3", "-c", "import platform; print(platform.machine())"], "py").strip() == "aarch64"
        assert not s.exists("/sys/kernel")  # never the host's /sys: LiteRT segfaults under qemu with it
    sshd = chroot_pids(dev.rootfs)
    assert dev.pid in sshd  # the sshd itself runs in the chroot (under qemu)
    exe = os.readlink(f"/proc/{dev.pid}/exe")
    assert "qemu" in exe or "aarch64" in exe, exe
    assert mounts_under(dev.rootfs) == []  # /proc and /dev live in the device's own mount namespace
    host_key = (dev.rootfs / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[1]
    assert dev.known_hosts_line.split()[2] == host_key
    again = subprocess.run([str(SCRIPT), "build", "--rootfs", str(dev.rootfs)], capture_output=True, text=True)
    assert again.returncode == 0 and "up to date" in again.stderr  # idempotent


def test_arm64_deploy_is_offline_with_aarch64_wheels_and_litert(lab: Arm64Lab, deployed: dict[str, Any],
                                                                tiny_bundle: Path) -> None:
    from edge_eas.remote.layout import sha256_file
    rep = deployed
    assert rep["device"]["machine"] == "aarch64" and rep["runtime_installed"] and rep["bundle_uploaded"]
    assert rep["engine_package"] == "ai-edge-litert" and rep["numpy_source"] == "system", rep
    assert engine_warnings(rep) == [], rep["warnings"]
    assert rep["smoke"]["engine"] == "tflite" and rep["smoke"]["median_ms"] > 0
    assert "torch" not in rep["smoke"]["versions"] and rep["smoke"]["numpy"].startswith("1.")  # Debian's numpy
    wheels = sorted(p.name for p in (lab.device.runtime_dir / "wheels").glob("*.whl"))
    assert any(w.startswith("ai_edge_litert-") and w.endswith("_aarch64.whl") for w in wheels), wheels
    assert any(w.startswith("cryptography-") and "aarch64" in w for w in wheels), wheels
    assert not any(w.startswith("numpy-") for w in wheels)  # Debian's python3-numpy is used instead
    cfg = (lab.device.runtime_dir / "venv" / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in cfg
    assert sha256_file(lab.device.runtime_dir / "current" / "model.eas") == sha256_file(tiny_bundle)


def test_arm64_redeploy_transfers_nothing(deployed: dict[str, Any], target: Path, env: dict[str, str],
                                          tiny_bundle: Path) -> None:
    res = cli(env, "deploy", "--target", str(target), "--bundle", str(tiny_bundle), "--allow-unsigned", "--json")
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["transferred_bytes"] == 0 and not rep["runtime_installed"] and not rep["bundle_uploaded"]
    assert rep["engine_package"] == "ai-edge-litert" and rep["smoke"]["engine"] == "tflite"


def test_raspberry_pi_target_as_written_deploys_and_benches_the_bookworm_device(
        lab: Arm64Lab, deployed: dict[str, Any], env: dict[str, str], tiny_bundle: Path, tmp_path: Path) -> None:
    """`edge_eas deploy --target raspberry-pi` as the README writes it: the shipped generic target,
    only the address given (--host), the key and known_hosts read from ~/.ssh as on a user's
    machine. The board is read on the device and its profile (raspberry-pi-4: tflite, 4 threads)
    used; every stored row is filed under it and carries the model read."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(lab.client_key, home / ".ssh" / "id_ed25519")
    shutil.copy(lab.known_hosts, home / ".ssh" / "known_hosts")
    user_env = dict(env, HOME=str(home))
    where = ["--target", "raspberry-pi", "--host", f"root@{lab.device.addr}:{lab.device.port}", "--bundle", str(tiny_bundle)]
    res = cli(user_env, "deploy", *where, "--allow-unsigned", "--json")
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["target"] == "raspberry-pi-4" and rep["resolved_from"] == "raspberry-pi"
    assert rep["board"]["model"] == PI_MODEL and rep["device"]["machine"] == "aarch64"
    assert rep["smoke"]["engine"] == "tflite" and rep["smoke"]["hostname"] == lab.device.name

    store = tmp_path / "store.sqlite"
    res = cli(user_env, "bench", *where, "--scenarios", "2", "--runs", "30", "--warmup", "2", "--store", str(store), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["failed_devices"] == [] and [d["target"] for d in doc["devices"]] == ["raspberry-pi-4"]
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        rows = [(t, json.loads(e)) for t, e in db.execute("SELECT target, environment_json FROM measurements")]
    finally:
        db.close()
    assert len(rows) == 2
    assert {(t, e["board_model"], e["machine"]) for t, e in rows} == {("raspberry-pi-4", PI_MODEL, "aarch64")}
    assert {r["engine"] for r in doc["devices"][0]["rows"]} == {"tflite"}


PREDICT_SCENARIOS = [{"classes": [0, 3, 7], "budget_mflops": 0.35},
                     {"classes": [1, 2, 4, 5, 6, 8, 9], "budget_mflops": 1.0}]


def predict_on_device(target: Path, root: str, engines: list[str], images: np.ndarray, bundle: Path,
                      tmp_path: Path) -> dict[str, Any]:
    """DEVICE_PREDICT with the runtime deployed under `root`, each of its results checked against
    the host's numpy engine (the same arch, probabilities within 1e-4); returns its output."""
    from edge_eas.runtime import Runtime
    np.save(tmp_path / "x.npy", images)
    with ssh(target) as s:
        remote = f"{root}/test-x.npy"
        s.upload(tmp_path / "x.npy", remote)
        out = json.loads(s.check([f"{root}/venv/bin/python", "-c", DEVICE_PREDICT, f"{root}/current/model.eas", remote,
                                  json.dumps(PREDICT_SCENARIOS), json.dumps(engines)],
                                 "predict on the device", timeout=300).strip().splitlines()[-1])
    host = Runtime.load(bundle)
    for i, sc in enumerate(PREDICT_SCENARIOS):
        m = host.specialize(classes=sc["classes"], budget_mflops=sc["budget_mflops"], engine="numpy", threads=1)
        for got in out["results"][len(engines) * i:len(engines) * (i + 1)]:
            assert got["arch"] == m.arch.to_dict()
            np.testing.assert_allclose(np.asarray(got["probs"]), m.predict(images), atol=1e-4, err_msg=got["engine"])
    return out  # type: ignore[no-any-return]


def test_arm64_specialise_and_predict_on_aarch64_match_host_numpy(deployed: dict[str, Any], target: Path,
                                                                  tiny_bundle: Path, digits_uint8: Any,
                                                                  tmp_path: Path) -> None:
    out = predict_on_device(target, "/root/.edge_eas", ["numpy", "tflite"], digits_uint8[0][:16], tiny_bundle, tmp_path)
    assert out["machine"] == "aarch64" and out["numpy_file"].startswith("/usr/lib/python3/dist-packages/")
    assert [r["engine"] for r in out["results"]] == ["numpy", "tflite"] * 2


def test_arm64_tflite_runtime_fallback_runs_with_the_shipped_schema(lab: Arm64Lab, deployed: dict[str, Any],
                                                                    env: dict[str, str], tiny_bundle: Path,
                                                                    tmp_path: Path) -> None:
    """No LiteRT wheel offered (--wheels without it): tflite-runtime (numpy<2) plus the host's TFLite
    schema as a tiny wheel, into a second runtime dir of the same device; the smoke runs TFLite."""

    from edge_eas.remote.install_plan import cache_dir, runtime_wheel
    from edge_eas.remote.wheels import DevicePlatform
    dev = deployed["device"]
    major, minor = (int(v) for v in dev["python"].split(".")[:2])
    tag = DevicePlatform(dev["python"], (major, minor), dev["machine"], tuple(dev["libc"])).tag  # type: ignore[arg-type]
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    picks = [runtime_wheel(), *(cache_dir() / "wheels" / tag).glob("*.whl"),
             *(cache_dir() / "wheels" / tag / "engines" / "tflite-runtime").glob("*/*.whl")]
    for w in picks:
        if not w.name.startswith(("numpy-", "ai_edge_litert-")):
            shutil.copy(w, wheels / w.name)
    assert any(w.name.startswith("tflite_runtime-") for w in wheels.iterdir())
    target = lab.write_target(tmp_path / "tflrt.toml", command_timeout=300.0)
    target.write_text(target.read_text().replace('runtime_dir = "/root/.edge_eas"', 'runtime_dir = "/root/.edge_eas-tflrt"'))
    res = cli(env, "deploy", "--target", str(target), "--bundle", str(tiny_bundle), "--allow-unsigned", "--wheels", str(wheels), "--json")
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["engine_package"] == "tflite-runtime" and rep["numpy_source"] == "system"
    assert engine_warnings(rep) == [], rep["warnings"]
    assert rep["smoke"]["engine"] == "tflite" and "tflite-runtime" in rep["smoke"]["versions"]
    assert "ai-edge-litert" not in rep["smoke"]["versions"]


NO_ORT_WHEEL = "onnxruntime: no aarch64 wheel for this device could be fetched and installed offline"


def test_arm64_onnxruntime_engine_matches_host_numpy(lab: Arm64Lab, deployed: dict[str, Any], env: dict[str, str],
                                                     tiny_bundle: Path, digits_uint8: Any, tmp_path: Path) -> None:
    """An onnxruntime target deployed into a second runtime dir of the device: PyPI's aarch64
    onnxruntime (CPU provider) installed offline, the smoke filed under onnxruntime:cpu, and its
    predictions those of the host's numpy engine. Where no aarch64 wheel can be fetched, deploy
    falls back to TFLite and this test is skipped, saying so (NO_ORT_WHEEL)."""
    target = lab.write_target(tmp_path / "ort.toml", engine="onnxruntime", command_timeout=300.0)
    target.write_text(target.read_text().replace('runtime_dir = "/root/.edge_eas"', 'runtime_dir = "/root/.edge_eas-ort"'))
    res = cli(env, "deploy", "--target", str(target), "--bundle", str(tiny_bundle), "--allow-unsigned", "--json")
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    if rep["engine_package"] != "onnxruntime":
        assert rep["engine_package"] == "ai-edge-litert" and rep["smoke"]["engine"] == "tflite", rep
        pytest.skip(NO_ORT_WHEEL)
    assert rep["smoke"]["engine"] == "onnxruntime:cpu" and "CPUExecutionProvider" in rep["providers"], rep
    out = predict_on_device(target, "/root/.edge_eas-ort", ["onnxruntime"], digits_uint8[0][:16], tiny_bundle,
                            tmp_path)
    assert [r["engine"] for r in out["results"]] == ["onnxruntime:cpu"] * 2


def test_arm64_bench_calibrate_stores_each_measurement_once(lab: Arm64Lab, deployed: dict[str, Any], target: Path,
                                                            env: dict[str, str], tiny_bundle: Path,
                                                            tmp_path: Path) -> None:
    store = tmp_path / "store.sqlite"
    t0 = time.monotonic()
    res = cli(env, "bench", "--target", str(target), "--bundle", str(tiny_bundle), "--scenarios",
              str(BENCH_SCENARIOS), "--runs", "30", "--warmup", "5", "--store", str(store), "--calibrate", "--json")
    assert res.returncode == 0, res.stderr
    print(f"\narm64 bench ({BENCH_SCENARIOS} scenarios + block profiling + calibration): {time.monotonic() - t0:.1f} s")
    doc = json.loads(res.stdout)
    dev = doc["devices"][0]
    assert doc["failed_devices"] == [] and dev["stored"] == BENCH_SCENARIOS and dev["resent"] == 0
    rows = stored(store)
    assert sorted(s for _, s, _ in rows) == [f"s{i:03d}" for i in range(BENCH_SCENARIOS)]  # each exactly once
    envs = [json.loads(e) for _, _, e in rows]
    assert {e["machine"] for e in envs} == {"aarch64"} and {e["hostname"] for e in envs} == {lab.device.name}
    assert all("torch" not in e["versions"] and "ai-edge-litert" in e["versions"] for e in envs)
    assert all(r["in_budget"] for r in dev["rows"])
    assert doc["block_profiles"][lab.device.name] and doc["calibration"]
    key = next(iter(doc["calibration"]))
    assert key.startswith(f"{lab.device.name}/tflite")
    # a rerun measures nothing again
    again = cli(env, "bench", "--target", str(target), "--bundle", str(tiny_bundle), "--scenarios",
                str(BENCH_SCENARIOS), "--runs", "30", "--warmup", "5", "--store", str(store), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["devices"][0]["skipped"] == BENCH_SCENARIOS and len(stored(store)) == len(rows)


def test_arm64_lab_teardown_kills_every_chroot_process_and_unmounts(tmp_path: Path, lab: Arm64Lab) -> None:
    """A second device from the cached rootfs; a process left running in it (detached from the
    SSH session) must die with the lab, and nothing may stay mounted or on disk."""
    other = Arm64Lab(tmp_path / "other", name="arm64-two").start()
    try:
        target = other.write_target()
        with ssh(target) as s:
            s.check(["/bin/sh", "-c", "exec /usr/bin/setsid -f /bin/sleep 600 </dev/null >/dev/null 2>&1"], "orphan")
        assert other.build and other.build.restored
        assert len(chroot_pids(other.device.rootfs)) >= 2  # sshd + the orphaned sleep
        assert other.device_pids().isdisjoint(lab.device_pids())
    finally:
        other.close()
    assert leftovers(other) == {"processes": [], "mounts": []}
    assert not other.device.rootfs.exists()
    assert lab.device_pids()  # the module's device is untouched


# ---- engine choice, without a device -------------------------------------------------------------
def fake_wheel(d: Path, name: str, version: str, requires: list[str] = (),  # type: ignore[assignment]
               tag: str = "cp311-cp311-manylinux_2_27_aarch64") -> Path:
    import zipfile
    path = d / f"{name}-{version}-{tag}.whl"
    meta = "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}-{version}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{meta}")
    return path


def test_aarch64_engine_choice_follows_the_numpy_the_device_runs(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_eas.remote.install_plan import plan_runtime
    from edge_eas.remote.wheels import DevicePlatform
    monkeypatch.setenv("EDGE_EAS_CACHE", str(tmp_path / "cache"))
    d = tmp_path / "wheels"
    d.mkdir()
    for args in [("cryptography", "50.0.2", ["cffi>=1.14"]), ("cffi", "2.1.1"), ("numpy", "2.4.6"),
                 ("threadpoolctl", "3.6.0", [], "py3-none-any"),
                 ("ai_edge_litert", "2.3.0", ["numpy>=1.23.2", "ml_dtypes", "flatbuffers"]),
                 ("ml_dtypes", "0.6.0", ["numpy>=2.0; python_version >= '3.9'", "numpy>=1.21; extra == 'old'"]),
                 ("tflite_runtime", "2.14.0", ["numpy>=1.23.2"]), ("flatbuffers", "25.12.19", [], "py2.py3-none-any")]:
        fake_wheel(d, *args)  # type: ignore[arg-type]
    debian = DevicePlatform("3.11.2", (3, 11), "aarch64", ("glibc", "2.36"), "1.24.2",
                            "/usr/lib/python3/dist-packages/numpy")
    plan = plan_runtime(debian, "auto", d)
    assert plan.system_numpy and plan.numpy_version == "1.24.2"
    assert not any(w.name.startswith("numpy-") for w in plan.wheels)  # Debian's numpy, no wheel uploaded
    assert [c.package for c in plan.engines.candidates] == ["tflite-runtime"]  # LiteRT's ml_dtypes needs numpy 2
    assert plan.engines.reasons == ["ai-edge-litert needs numpy>=2.0 (ml-dtypes), the device has numpy 1.24.2"]
    assert any(w.name.startswith("edge_eas_tflite_schema-") for w in plan.engines.candidates[0].wheels)
    assert not any(w.name.startswith("numpy-") for w in plan.engines.candidates[0].wheels)

    wheel_numpy = DevicePlatform("3.11.2", (3, 11), "aarch64", ("glibc", "2.36"), "2.3.0",
                                 "/root/.pyenv/versions/3.11.2/lib/python3.11/site-packages/numpy")
    plan = plan_runtime(wheel_numpy, "tflite", d)  # a pyenv numpy is not taken: its neighbours would leak in
    assert not plan.system_numpy and plan.numpy_version == "2.4.6"
    assert [c.package for c in plan.engines.candidates] == ["ai-edge-litert"]  # tflite-runtime needs numpy<2
    assert not plan_runtime(debian, "numpy", d).engines.candidates  # numpy target: no engine shipped
    old = DevicePlatform("3.9.2", (3, 9), "aarch64", ("glibc", "2.31"), "1.19.5", "/usr/lib/python3/dist-packages/numpy")
    assert not old.uses_distro_numpy()  # below the runtime's numpy>=1.21: a wheel instead

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("cryptography", "cffi", "numpy", "threadpoolctl"):
        fake_wheel(bare, name, "1.26.4")
    plan = plan_runtime(debian, "tflite", bare)
    assert not plan.engines.candidates
    assert "no ai-edge-litert wheel in" in plan.engines.warning() and "numpy engine" in plan.engines.warning()


# ---- the bullseye stand-in: Python 3.9 and Debian's numpy 1.19, as Raspberry Pi OS bullseye ships ----
@pytest.fixture(scope="module")
def bullseye(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    lab = started_lab(tmp_path_factory.mktemp("bullseye"), name="bullseye-dev", suite="bullseye")
    yield lab
    lab.close()
    assert leftovers(lab) == {"processes": [], "mounts": []}


def test_bullseye_python39_device_deploys_and_benches(bullseye: Arm64Lab, env: dict[str, str], tiny_bundle: Path,
                                                      tmp_path: Path) -> None:
    target = bullseye.write_target(engine="auto", threads=1, command_timeout=300.0)
    res = cli(env, "deploy", "--target", str(target), "--bundle", str(tiny_bundle), "--allow-unsigned", "--json")
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["device"]["python"].startswith("3.9.") and rep["device"]["machine"] == "aarch64"
    assert rep["numpy_source"] == "wheel"  # Debian's numpy 1.19 is below the runtime's numpy>=1.21: a wheel instead
    wheels = sorted(p.name for p in (bullseye.device.runtime_dir / "wheels").glob("*.whl"))
    assert any(w.startswith("numpy-") and "cp39" in w and "aarch64" in w for w in wheels), wheels
    # an engine chosen for its Python and glibc, or the numpy engine with the reason said
    if rep["engine_package"] is None:
        assert any("numpy engine" in w for w in engine_warnings(rep)), rep["warnings"]
    assert rep["smoke"]["engine"] == ("tflite" if rep["engine_package"] else "numpy")
    print(f"\nbullseye engine: {rep['engine_package'] or 'numpy'}; warnings: {engine_warnings(rep)}")

    store = tmp_path / "store.sqlite"
    res = cli(env, "bench", "--target", str(target), "--bundle", str(tiny_bundle), "--scenarios", "3", "--runs", "30",
              "--warmup", "2", "--store", str(store), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    dev = doc["devices"][0]
    assert doc["failed_devices"] == [] and dev["stored"] == 3
    assert dev["hello"]["environment"]["python"].startswith("3.9.")  # the report says which Python ran
    envs = [json.loads(e) for _, _, e in stored(store)]
    assert {e["python"][:4] for e in envs} == {"3.9."} and {e["machine"] for e in envs} == {"aarch64"}
    assert {r["engine"] for r in dev["rows"]} == {"tflite" if rep["engine_package"] else "numpy"}
