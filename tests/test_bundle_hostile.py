"""Hostile archives in place of a bundle: refused from the archive's directory, before anything
is inflated. The zip bomb is real: a 10 MiB file whose one member inflates to 10 GiB of zeros
(deflate, zip64), made by repeating one fully-flushed deflate block, with its true CRC."""

from __future__ import annotations

import json
import stat
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest

from edge_eas.format.bundle_reader import BundleError, open_bundle

GiB = 1 << 30


def write_zip64_bomb(path: Path, inflated: int = 10 * GiB, name: str = "supernet.safetensors") -> int:
    """One deflated member of `inflated` zero bytes; returns the file size. Deflate after a full
    flush forgets its history, so every 1 MiB block of zeros compresses to the same bytes."""
    block = 1 << 20
    assert inflated % block == 0
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(block)
    first = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    repeat = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    tail = comp.flush(zlib.Z_FINISH)
    n = inflated // block
    crc, chunk = 0, bytes(64 << 20)
    for _ in range(inflated // len(chunk)):
        crc = zlib.crc32(chunk, crc)
    csize = len(first) + (n - 1) * len(repeat) + len(tail)
    fname = name.encode()
    local_extra = struct.pack("<HHQQ", 1, 16, inflated, csize)
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 8, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                            len(fname), len(local_extra)) + fname + local_extra)
        f.write(first)
        for _ in range(n - 1):
            f.write(repeat)
        f.write(tail)
        cd_offset = f.tell()
        cd_extra = struct.pack("<HHQQQ", 1, 24, inflated, csize, 0)
        f.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 8, 0, 0x21, crc, 0xFFFFFFFF,
                            0xFFFFFFFF, len(fname), len(cd_extra), 0, 0, 0, 0, 0xFFFFFFFF) + fname + cd_extra)
        cd_size = f.tell() - cd_offset
        eocd64 = f.tell()
        f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, 1, 1, cd_size, cd_offset))
        f.write(struct.pack("<IIQI", 0x07064B50, 0, eocd64, 1))
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
    return path.stat().st_size


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "model.eas"
    size = write_zip64_bomb(path)
    assert 9 << 20 < size < 12 << 20  # ~10 MiB on disk
    with zipfile.ZipFile(path) as zf:  # a well-formed archive, as the standard library reads it
        assert zf.infolist()[0].file_size == 10 * GiB
    return path


# Linux keeps ru_maxrss across execve, so a child forked from this (large) pytest process would report
# pytest's own size. A small launcher runs the reader as its child and reports RUSAGE_CHILDREN: the
# peak RSS of the process that opened the bomb, bounded below only by the small launcher it forked from.
_READER = ("import json, sys, time\n"
           "from edge_eas.format.bundle_reader import BundleError, open_bundle\n"
           "t = time.perf_counter()\n"
           "try:\n    open_bundle(sys.argv[1])\n    err = None\n"
           "except BundleError as exc:\n    err = str(exc)\n"
           "print(json.dumps({'seconds': time.perf_counter() - t, 'error': err}))\n")
_LAUNCHER = ("import json, resource, subprocess, sys\n"
             "out = subprocess.run([sys.executable, '-c', sys.argv[1], sys.argv[2]], capture_output=True, text=True)\n"
             "res = json.loads(out.stdout)\n"
             "res['max_rss_mib'] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
             "print(json.dumps(res))\n")


def test_zip_bomb_is_refused_fast_with_bounded_memory(bomb: Path) -> None:
    out = subprocess.run([sys.executable, "-c", _LAUNCHER, _READER, str(bomb)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["error"] and "zip bomb" in res["error"] and "10,240 MiB" in res["error"], res
    assert res["seconds"] < 1.0 and res["max_rss_mib"] < 200, res


def test_the_limit_can_be_raised_but_the_manifest_still_bounds_each_member(bomb: Path) -> None:
    from edge_eas.format.archive import Limits
    with pytest.raises(BundleError, match="no manifest.json"):  # past the size caps, still nothing inflated
        open_bundle(bomb, limits=Limits.with_total_mib(20 * 1024))


def _zip(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in members:
            zf.writestr(info, data)
    return path


def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize("members,match", [
    ([("manifest.json", b"{}"), ("/etc/passwd", b"x")], "outside the archive"),
    ([("manifest.json", b"{}"), ("../escape", b"x")], "outside the archive"),
    ([("manifest.json", b"{}"), ("dir/x", b"x")], "bundles are flat"),
    ([("manifest.json", b"{}"), (_symlink("supernet.safetensors"), b"/etc/shadow")], "symbolic link"),
    ([(f"m{i}", b"") for i in range(40)], "more than the 16 allowed"),
], ids=["absolute", "dotdot", "nested", "symlink", "too-many"])
def test_hostile_member_lists_are_refused(tmp_path: Path, members: list, match: str) -> None:
    with pytest.raises(BundleError, match=match):
        open_bundle(_zip(tmp_path / "x.eas", members))


def test_duplicate_member_names_are_refused(tmp_path: Path) -> None:
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is told to write
        path = _zip(tmp_path / "dup.eas", [("manifest.json", b"{}"), ("manifest.json", b"{}")])
    with pytest.raises(BundleError, match="duplicate member name"):
        open_bundle(path)


def test_member_larger_than_its_manifest_says_is_refused_before_reading(tiny_bundle: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(tiny_bundle) as zf:
        items = [(i, zf.read(i.filename)) for i in zf.infolist()]
        comment = zf.comment
    out = tmp_path / "grown.eas"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_LZMA) as zf:
        for info, data in items:
            zf.writestr(info.filename, data + bytes(1 << 20) if info.filename == "calibration.safetensors" else data)
        zf.comment = comment
    with pytest.raises(BundleError, match="calibration.safetensors.*manifest says"):
        open_bundle(out)
