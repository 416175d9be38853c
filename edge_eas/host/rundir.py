"""A run directory: what `edge_eas train` writes and every later command reads.

    RUN/run.json                 space, data spec, classes, preprocessing, config, metrics
    RUN/supernet.safetensors     final supernet weights
    RUN/checkpoint/              resumable training state (see checkpoint.py)
    RUN/generator.safetensors    architecture generator (after generator training)
    RUN/generator.json           its config and metrics
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_eas.errors import UserError
from edge_eas.net.space import SearchSpace


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def meta_path(self) -> Path:
        return self.path / "run.json"

    @property
    def weights_path(self) -> Path:
        return self.path / "supernet.safetensors"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoint"

    @property
    def generator_path(self) -> Path:
        return self.path / "generator.safetensors"

    @property
    def generator_meta_path(self) -> Path:
        return self.path / "generator.json"

    @property
    def accuracy_path(self) -> Path:
        """The accuracy predictor's weights (`edge_eas fit-accuracy`)."""
        return self.path / "accuracy.safetensors"

    @property
    def accuracy_meta_path(self) -> Path:
        return self.path / "accuracy.json"

    @property
    def accuracy_measurements_path(self) -> Path:
        """What the predictor was fitted on: each measured arch's right answers per task."""
        return self.path / "accuracy_measurements.safetensors"

    def is_complete(self) -> bool:
        return self.meta_path.is_file() and self.weights_path.is_file()

    def meta(self) -> dict[str, Any]:
        if not self.path.exists():
            raise UserError(f"run directory {self.path} does not exist (train one with `edge_eas train --out {self.path}`)")
        if not self.is_complete():
            raise UserError(f"{self.path} is not a finished training run (no run.json / supernet.safetensors); "
                            f"finish it with `edge_eas train ... --out {self.path} --resume`")
        try:
            return json.loads(self.meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{self.meta_path} is not valid JSON: {exc.msg}") from None

    def space(self) -> SearchSpace:
        return SearchSpace.from_dict(self.meta()["space"])


def load_supernet(run: RunDir, device: str = "cpu"):  # type: ignore[no-untyped-def]
    """The trained supernet of a run, in eval mode, and the run's metadata."""
    # lazy: loads safetensors, torch only on this path, not when rundir is imported
    from edge_eas.host.checkpoint import load_tensors
    # lazy: loads torch only on this path, not when rundir is imported
    from edge_eas.supernet import Supernet

    meta = run.meta()
    net = Supernet(SearchSpace.from_dict(meta["space"]), num_classes=len(meta["class_names"]))
    net.load_state_dict(load_tensors(run.weights_path, meta.get("weights_sha256")))
    return net.to(device).eval(), meta
