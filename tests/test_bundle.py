"""Bundle integrity: every tampering, truncation and signature problem is refused clearly."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edge_eas.host.bundle import export_bundle
from edge_eas.format import safetensors_io
from edge_eas.format.bundle_reader import BundleError, open_bundle
from edge_eas.format.quant import compress, decompress
from edge_eas.format.signing import generate_keypair

CLI = [sys.executable, "-m", "edge_eas.cli"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("keys")
    generate_keypair(d / "good")
    generate_keypair(d / "other")
    return d


@pytest.fixture(scope="module")
def signed_bundle(tiny_run, keys, tmp_path_factory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("signed") / "signed.eas"
    export_bundle(tiny_run, out, sign_key=keys / "good")
    return out


def _rewrite(src: Path, dst: Path, member: str, mutate) -> None:  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            zout.writestr(info.filename, mutate(data) if info.filename == member else data)
        zout.comment = zin.comment


def _flip_middle(data: bytes) -> bytes:
    b = bytearray(data)
    b[len(b) // 2] ^= 0x01
    return bytes(b)


@pytest.mark.parametrize("member", ["supernet.safetensors", "generator.safetensors", "calibration.safetensors",
                                    "manifest.json"])
def test_tampering_any_member_is_refused(tiny_bundle: Path, tmp_path: Path, member: str) -> None:
    bad = tmp_path / "bad.eas"
    _rewrite(tiny_bundle, bad, member, _flip_middle)
    with pytest.raises(BundleError):
        open_bundle(bad)


def test_raw_byte_flip_anywhere_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    size = tiny_bundle.stat().st_size
    for pos in np.linspace(0, size - 1, 25).astype(int):
        bad = tmp_path / f"flip{pos}.eas"
        shutil.copy(tiny_bundle, bad)
        with open(bad, "r+b") as f:
            f.seek(int(pos))
            byte = f.read(1)
            f.seek(int(pos))
            f.write(bytes([byte[0] ^ 0xFF]))
        try:
            b = open_bundle(bad)
        except BundleError:
            continue
        # A flip inside zip bookkeeping that does not change any member's content is harmless:
        # the verified content must be identical to the original's.
        good = open_bundle(tiny_bundle)
        assert b.members == good.members


def test_truncated_bundle_gives_clear_error(tiny_bundle: Path, tmp_path: Path) -> None:
    data = tiny_bundle.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 5):
        bad = tmp_path / "trunc.eas"
        bad.write_bytes(data[:cut])
        with pytest.raises(BundleError, match="truncated|corrupt|not a readable"):
            open_bundle(bad)


def test_extra_member_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "extra.eas"
    shutil.copy(tiny_bundle, bad)
    with zipfile.ZipFile(bad, "a") as z:
        z.writestr("evil.py", b"print('hi')")
    with pytest.raises(BundleError, match="unexpected"):
        open_bundle(bad)


def test_signature_checks(tiny_bundle: Path, signed_bundle: Path, keys: Path) -> None:
    assert open_bundle(signed_bundle, trusted_keys=[keys / "good.pub"]).signed_by
    with pytest.raises(BundleError, match="not signed"):
        open_bundle(tiny_bundle, trusted_keys=[keys / "good.pub"])
    with pytest.raises(BundleError, match="does not match any trusted key"):
        open_bundle(signed_bundle, trusted_keys=[keys / "other.pub"])
    assert open_bundle(signed_bundle).signed_by is None  # no keys given: hashes only


def test_resigned_manifest_with_wrong_key_is_refused(signed_bundle: Path, keys: Path, tmp_path: Path) -> None:
    from edge_eas.format.signing import sign
    bad = tmp_path / "resigned.eas"
    with zipfile.ZipFile(signed_bundle) as z:
        manifest = z.read("manifest.json")
    forged = json.dumps(sign(manifest, keys / "other")).encode()
    _rewrite(signed_bundle, bad, "manifest.sig", lambda _: forged)
    with pytest.raises(BundleError, match="does not match any trusted key"):
        open_bundle(bad, trusted_keys=[keys / "good.pub"])


def test_int8_quantisation_round_trip_error_is_small() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 8, 3, 3)).astype(np.float32)
    back = decompress(compress({"w": w, "b": np.ones(16, np.float32)}, "int8"))
    err = np.abs(back["w"] - w).max(axis=(1, 2, 3)) / np.abs(w).max(axis=(1, 2, 3))
    assert (err <= 0.5 / 127 + 1e-3).all()
    assert np.allclose(back["b"], 1.0)


def test_safetensors_io_interoperates_with_the_library(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file
    rng = np.random.default_rng(0)
    t = {"a": rng.normal(size=(3, 4)).astype(np.float32), "b": np.arange(5, dtype=np.int8),
         "c": rng.normal(size=(2,)).astype(np.float16), "u": np.arange(6, dtype=np.uint8).reshape(2, 3)}
    (tmp_path / "ours.safetensors").write_bytes(safetensors_io.dumps(t))
    theirs = load_file(str(tmp_path / "ours.safetensors"))
    save_file(t, str(tmp_path / "lib.safetensors"))
    ours = safetensors_io.loads((tmp_path / "lib.safetensors").read_bytes())
    for k in t:
        assert np.array_equal(theirs[k], t[k]) and np.array_equal(ours[k], t[k])


def test_cli_export_sign_and_keygen(tiny_run: Path, tmp_path: Path) -> None:
    key = tmp_path / "k"
    out = subprocess.run([*CLI, "keygen", "--out", str(key), "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    key_id = json.loads(out.stdout)["key_id"]
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"
    again = subprocess.run([*CLI, "keygen", "--out", str(key)], capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr
    b = tmp_path / "m.eas"
    out = subprocess.run([*CLI, "export", str(tiny_run), "--out", str(b), "--sign", str(key), "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["signed_by"] == key_id
    assert open_bundle(b, trusted_keys=[Path(str(key) + ".pub")]).signed_by
    missing = subprocess.run([*CLI, "export", str(tiny_run), "--out", str(b), "--sign", "/no/key"],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_bundle_leaks_no_host_name_or_path_and_calibration_images_are_a_choice(
        tiny_run: Path, tmp_path: Path, digits_uint8) -> None:  # type: ignore[no-untyped-def]
    import json
    import platform
    import subprocess
    import sys
    import zipfile

    from edge_eas.runtime import Runtime
    out = tmp_path / "nocal.eas"
    res = subprocess.run([sys.executable, "-m", "edge_eas.cli", "export", str(tiny_run), "--out", str(out),
                          "--calibration-images", "0", "--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["calibration_images"] == 0 and summary["calibration_images_per_class"] == 0
    with zipfile.ZipFile(out) as zf:
        blob = b"".join(zf.read(n) for n in zf.namelist())
    for secret in {platform.node(), str(tiny_run), str(tiny_run.resolve()), str(Path.home())} - {"", "/"}:
        assert secret.encode() not in blob, f"the bundle carries {secret!r}"
    rt = Runtime.load(out)
    assert rt.bundle.calibration()[0].shape[0] == 0
    with pytest.raises(ValueError, match="carries no calibration images"):
        rt.specialize(classes=[1, 2], budget_mflops=1.0)
    x, y = digits_uint8
    mine = Runtime.load(out, calibration=x[:64])  # the user's own images
    m = mine.specialize(classes=[1, 2], budget_mflops=1.0)
    sel = np.isin(y, [1, 2])
    acc = float((m.predict_classes(x[sel]) == y[sel]).mean())
    assert acc > 0.9, acc
    np.save(tmp_path / "cal.npy", x[:64])
    again = Runtime.load(out, calibration=tmp_path / "cal.npy").specialize(classes=[1, 2], arch=m.arch)
    assert np.allclose(again.predict(x[sel][:8]), m.predict(x[sel][:8]), atol=1e-5)
    with pytest.raises(ValueError, match="at least 8"):
        Runtime.load(out, calibration=x[:3])
