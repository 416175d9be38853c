"""The architecture generator, as the host loads it: from a run directory or a bundle. Its
inference (numpy, torch-free) lives in archgen/generator.py, which the device runs too; the names
are re-exported here, where scripts and benchmarks have always found them."""

from __future__ import annotations

import json
from pathlib import Path

from edge_eas.errors import UserError
from edge_eas.archgen.generator import (RESOURCE_KINDS, UNITS, ArchGenerator, budget_features,  # noqa: F401
                                        default_cost_tables, from_bundle, from_meta, generator_inputs)
from edge_eas.format.bundle_reader import open_bundle

__all__ = ["RESOURCE_KINDS", "UNITS", "ArchGenerator", "budget_features", "default_cost_tables", "from_meta",
           "generator_inputs", "load"]


def load(path: str | Path, name: str = "generator") -> ArchGenerator:
    """The generator of a run directory (`edge_eas train` output) or of a deployment bundle.
    `name` picks one of a run's generators: "generator" (task-specialised, the one bundles ship)
    or "generator-agnostic" (the baseline `train-generator --task-agnostic` writes)."""
    p = Path(path)
    if p.is_dir():
        return _load_from_run(p, name)
    if p.is_file():
        if name != "generator":
            raise UserError(f"{p} is a bundle: it holds only the task-specialised generator, not {name}")
        return from_bundle(open_bundle(p))
    raise UserError(f"{p} is neither a run directory nor a bundle file")


def _load_from_run(run_dir: Path, name: str) -> ArchGenerator:
    # lazy: safetensors is a host extra; the device reads generators from bundles only
    from safetensors.numpy import load_file

    meta_path, weights_path = run_dir / f"{name}.json", run_dir / f"{name}.safetensors"
    if not weights_path.is_file() or not meta_path.is_file():
        flag = " --task-agnostic" if name == "generator-agnostic" else ""
        raise UserError(f"{run_dir} has no trained {name}; run `edge_eas train-generator {run_dir}{flag}`")
    meta = json.loads(meta_path.read_text())
    run_meta = json.loads((run_dir / "run.json").read_text())
    return from_meta(run_meta["space"], len(run_meta["class_names"]), load_file(str(weights_path)), meta)
