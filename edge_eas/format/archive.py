"""Bounded reading of a zip archive that may be hostile (numpy-free, stdlib only).

A bundle arrives from the network and its runtime directory may be writable by others, so
nothing is decompressed before it is known to be small enough: the member list, names and
the sizes in the central directory are checked first (count, duplicates, absolute paths,
`..`, symlinks, per-member and total size caps), and each member is then streamed with its
size enforced while it is read. A zip bomb is refused from its central directory, in
milliseconds and without inflating a byte.
"""

from __future__ import annotations

import hashlib
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20


class ArchiveError(ValueError):
    """The archive is malformed, hostile or over a limit; the message says which."""


@dataclass(frozen=True)
class Limits:
    """Caps on what reading an archive may cost. `max_member_bytes` and `max_total_bytes` are
    uncompressed sizes; raise them (`Runtime.load(max_bundle_mib=...)`, the agent's
    `--max-bundle-mib`) for a legitimately huge bundle."""
    max_members: int = 16
    max_member_bytes: int = 1024 * MiB
    max_total_bytes: int = 2048 * MiB
    max_archive_bytes: int = 2048 * MiB

    @classmethod
    def with_total_mib(cls, mib: float) -> "Limits":
        total = int(mib * MiB)
        return cls(max_member_bytes=total, max_total_bytes=total, max_archive_bytes=total)


class BoundedArchive:
    """A zip archive whose directory has passed the checks; members are read one at a time,
    never past their recorded size or a caller's limit."""

    def __init__(self, path: Path, limits: Limits = Limits()) -> None:
        self.path, self.limits = path, limits
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ArchiveError(f"cannot read {path}: {exc.strerror or exc}") from None
        if size > limits.max_archive_bytes:
            raise ArchiveError(f"{path} is {size / MiB:.0f} MiB, over the {limits.max_archive_bytes / MiB:.0f} MiB "
                               f"limit")
        try:
            self._zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise ArchiveError(f"{path} is not a readable archive (truncated or corrupt): {exc}") from None
        except (zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise ArchiveError(f"{path}: cannot read the archive directory: {exc}") from None
        try:
            self._infos = self._checked_directory()
        except ArchiveError:
            self._zf.close()
            raise

    def __enter__(self) -> "BoundedArchive":
        return self

    def __exit__(self, *exc: object) -> None:
        self._zf.close()

    @property
    def comment(self) -> bytes:
        return self._zf.comment

    @property
    def names(self) -> list[str]:
        return list(self._infos)

    def size(self, name: str) -> int:
        return self._infos[name].file_size

    def _checked_directory(self) -> dict[str, zipfile.ZipInfo]:
        infos = self._zf.infolist()
        lim, p = self.limits, self.path
        if len(infos) > lim.max_members:
            raise ArchiveError(f"{p} has {len(infos)} members, more than the {lim.max_members} allowed")
        out: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in infos:
            name = info.filename
            if name in out:
                raise ArchiveError(f"{p}: duplicate member name {name!r} (tampered archive)")
            parts = name.replace("\\", "/").split("/")
            if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
                raise ArchiveError(f"{p}: member name {name!r} points outside the archive (absolute path or ..)")
            if info.is_dir() or len(parts) != 1:
                raise ArchiveError(f"{p}: unexpected directory entry {name!r}: bundles are flat")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ArchiveError(f"{p}: member {name!r} is a symbolic link")
            if info.file_size > lim.max_member_bytes:
                raise ArchiveError(f"{p}: member {name!r} inflates to {info.file_size / MiB:,.0f} MiB, over the "
                                   f"{lim.max_member_bytes / MiB:,.0f} MiB limit (a zip bomb, or raise the limit)")
            total += info.file_size
            if total > lim.max_total_bytes:
                raise ArchiveError(f"{p}: members inflate to more than {lim.max_total_bytes / MiB:,.0f} MiB in all "
                                   f"(a zip bomb, or raise the limit)")
            out[name] = info
        return out

    def read(self, name: str, max_bytes: int, expected_size: int | None = None) -> tuple[bytes, str]:
        """(content, SHA-256) of one member, streamed: refused before reading if its recorded size
        exceeds `max_bytes` or differs from `expected_size`, and never read past either."""
        info = self._infos.get(name)
        if info is None:
            raise ArchiveError(f"{self.path} has no member {name!r}")
        if info.file_size > max_bytes:
            raise ArchiveError(f"{self.path}: member {name!r} is {info.file_size:,} bytes, over its limit of "
                               f"{max_bytes:,}")
        if expected_size is not None and info.file_size != expected_size:
            raise ArchiveError(f"{self.path}: member {name!r} is {info.file_size:,} bytes but the manifest says "
                               f"{expected_size:,} (tampered or corrupt)")
        h = hashlib.sha256()
        chunks = []
        got = 0
        try:
            with self._zf.open(info) as f:
                while chunk := f.read(MiB):
                    got += len(chunk)
                    if got > info.file_size:  # zipfile stops at the recorded size; never trust it alone
                        raise ArchiveError(f"{self.path}: member {name!r} is longer than recorded")
                    h.update(chunk)
                    chunks.append(chunk)
        except ArchiveError:
            raise
        except Exception as exc:  # zlib/lzma errors, CRC mismatch, truncation: many exception types
            raise ArchiveError(f"{self.path}: corrupt member {name!r} ({type(exc).__name__}: {exc})") from None
        return b"".join(chunks), h.hexdigest()
