"""Where edge_eas keeps per-user state: the measurement store and calibrated latency models.
$EDGE_EAS_HOME overrides the default ~/.local/share/edge_eas (tests and quickstart use it)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    env = os.environ.get("EDGE_EAS_HOME")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "edge_eas"


def default_store() -> Path:
    return home() / "measurements.sqlite"


def models_dir() -> Path:
    return home() / "latency-models"


def models_file(target: str) -> Path:
    """A target's calibrated latency models (cost/latency_models.py reads and writes them)."""
    return models_dir() / f"{target}.json"


def targets_dir() -> Path:
    """Where `edge_eas provision` writes the targets it sets up (searched before the shipped ones)."""
    return home() / "targets"
