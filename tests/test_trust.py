"""The device trust store, on the device side: `Runtime.load` and the agent without explicit keys
answer to the store deploy installed (found via $EDGE_EAS_TRUST_DIR here, beside the venv on a
device). Real signatures, real bundles, the real agent process."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_eas.host.bundle import export_bundle
from edge_eas.runtime import BundleError, Runtime
from edge_eas.format.signing import generate_keypair, key_id_of, sign
from edge_eas.runtime.trust import TRUST_ENV, TrustError, store_document


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("trust-keys")
    generate_keypair(d / "release")
    generate_keypair(d / "old")
    return d


@pytest.fixture(scope="module")
def bundles(tiny_run: Path, keys: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("trust-bundles")
    out = {"release": d / "release.eas", "old": d / "old.eas", "unsigned": d / "unsigned.eas"}
    export_bundle(tiny_run, out["release"], sign_key=keys / "release", calib_per_class=8)
    export_bundle(tiny_run, out["old"], sign_key=keys / "old", calib_per_class=8)
    export_bundle(tiny_run, out["unsigned"], calib_per_class=8)
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_store(where: Path, keys: list[Path], allow_unsigned: list[str] = ()) -> Path:  # type: ignore[assignment]
    where.mkdir(parents=True, exist_ok=True)
    files = {}
    for pub in keys:
        files[key_id_of(pub)] = f"{key_id_of(pub)}.pub"
        shutil.copy(pub, where / files[key_id_of(pub)])
    (where / "trust.json").write_bytes(store_document(files, list(allow_unsigned)))
    return where


def test_store_decides_what_loads(bundles: dict[str, Path], keys: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRUST_ENV, str(make_store(tmp_path / "trust", [keys / "release.pub"])))
    assert Runtime.load(bundles["release"]).bundle.signed_by  # signed by a trusted key
    with pytest.raises(BundleError, match="not signed"):
        Runtime.load(bundles["unsigned"])
    with pytest.raises(BundleError, match="does not match any trusted key"):
        Runtime.load(bundles["old"])  # the key was removed from the store
    # explicit keys still win over the store (a user's own check)
    assert Runtime.load(bundles["old"], trusted_keys=[keys / "old.pub"]).bundle.signed_by


def test_allow_unsigned_pins_one_bundle_only(bundles: dict[str, Path], keys: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(tmp_path / "trust", [keys / "release.pub"], [_sha(bundles["unsigned"])])
    monkeypatch.setenv(TRUST_ENV, str(store))
    assert Runtime.load(bundles["unsigned"]).bundle.signed_by is None
    swapped = tmp_path / "swapped.eas"
    raw = bundles["unsigned"].read_bytes()
    swapped.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))  # another unsigned bundle: its SHA-256 is not pinned
    with pytest.raises((BundleError, TrustError)):
        Runtime.load(swapped)


def test_latency_models_are_verified_under_a_store(bundles: dict[str, Path], keys: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRUST_ENV, str(make_store(tmp_path / "trust", [keys / "release.pub"])))
    rt = Runtime.load(bundles["release"])
    models = tmp_path / "models.json"
    models.write_text(json.dumps({"target": "dev", "models": {"numpy/t1": {"kind": "test"}}}))
    with pytest.raises(TrustError, match="unsigned"):
        rt.load_latency_models(models)
    Path(str(models) + ".sig").write_text(json.dumps(sign(models.read_bytes(), keys / "release")))
    rt.load_latency_models(models)
    assert "numpy/t1" in rt.latency_models
    models.write_text(models.read_text().replace("test", "evil"))  # tampered after signing
    with pytest.raises(TrustError, match="does not match"):
        rt.load_latency_models(models)


def test_agent_refuses_in_one_line_under_a_store(bundles: dict[str, Path], keys: Path, tmp_path: Path) -> None:
    import os
    env = {**os.environ, TRUST_ENV: str(make_store(tmp_path / "trust", [keys / "release.pub"]))}
    scen = tmp_path / "s.json"
    scen.write_text(json.dumps([{"id": "a", "classes": [1, 2], "budget_mflops": 1.0}]))
    agent = [sys.executable, "-m", "edge_eas.runtime", "--scenarios", str(scen), "--runs", "30", "--engine", "numpy"]
    bad = subprocess.run([*agent, "--bundle", str(bundles["unsigned"])], capture_output=True, text=True, env=env,
                         timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "not signed" in bad.stderr
    assert json.loads(bad.stdout.splitlines()[-1])["type"] == "fatal"
    good = subprocess.run([*agent, "--bundle", str(bundles["release"])], capture_output=True, text=True, env=env,
                          timeout=120)
    assert good.returncode == 0, good.stderr
