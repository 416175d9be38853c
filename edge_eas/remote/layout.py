"""Where things live on a device (under the target's runtime_dir), and file hashes to check
what is there against what we ship."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class DeviceLayout:
    """Where things live under the target's runtime_dir on the device."""
    root: str

    @property
    def venv_python(self) -> str:
        return f"{self.root}/venv/bin/python"

    @property
    def current(self) -> str:
        return f"{self.root}/current"

    @property
    def previous(self) -> str:
        return f"{self.root}/previous"

    @property
    def bundle(self) -> str:
        return f"{self.root}/current/model.eas"

    def release(self, sha: str) -> str:
        return f"{self.root}/releases/{sha[:16]}"
