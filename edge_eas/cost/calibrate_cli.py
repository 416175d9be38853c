"""Calibrate a target's latency models from the measurement store and write them out
(a cost-model file that deploy can push, and optionally into a run for export)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_json
from ..errors import UserError
from ..paths import models_dir
from ..space import Arch, SearchSpace
from ..targets import Target, load_target
from .calibrate import accuracy_report, fit
from .latency import LatencyModel, model_key, models_path
from .store import MeasurementStore


def prior_model(target: Target | str, engine: str, threads: int | None,
                store: MeasurementStore | None = None) -> LatencyModel:
    """The roofline prior from the target profile, with the store's profiled blocks if any."""
    target = load_target(target) if isinstance(target, str) else target
    model = LatencyModel(target=target.name, engine=engine, threads=threads, hardware=target.hardware)
    if store is not None:
        entries = store.block_profiles(target.name, engine, threads)
        fixed = entries.pop("fixed", None)
        model.entries.update(entries)
        if fixed is not None:
            model.fixed_ms = fixed
            model.const_ms = 0.0
            model.coef = tuple(model.prior_coef()[0])
        if model.entries:
            model.source = "profiled"
    return model


def calibrate_rows(model: LatencyModel, rows: list[dict[str, Any]], space: SearchSpace, n_fit: int) -> tuple[LatencyModel, dict[str, Any]]:
    """Fit on the first n_fit rows (arrival order), report before/after on the rest."""
    archs = [Arch.from_dict(r["arch"]) for r in rows]
    measured = [r["median_ms"] for r in rows]
    fit_idx = list(range(min(n_fit, len(rows))))
    held = list(range(len(fit_idx), len(rows))) or fit_idx
    fitted = fit(model, space, [archs[i] for i in fit_idx], [measured[i] for i in fit_idx])
    report = {"fit_n": len(fit_idx), "held_out_is_fit_set": len(rows) <= n_fit,
              "before": accuracy_report([model.predict(space, archs[i]) for i in held], [measured[i] for i in held]),
              "after": accuracy_report([fitted.predict(space, archs[i]) for i in held], [measured[i] for i in held])}
    return fitted, report


def calibrate_target(target_name: str, store_path: Path, engine: str | None = None, threads: int | None = None,
                     n_fit: int = 20, run_dir: Path | None = None, sign_key: Path | None = None) -> dict[str, Any]:
    target = load_target(target_name)
    if not Path(store_path).is_file():
        raise UserError(f"no measurement store at {store_path}: run `edge_eas bench --target {target.name}` first")
    store = MeasurementStore(store_path)
    models: dict[str, Any] = {}
    reports: dict[str, Any] = {}
    for tgt, eng, thr in store.iter_models():
        if tgt != target.name or (engine and eng != engine) or (threads is not None and thr != threads):
            continue
        rows = [r for r in store.measurements(target=tgt, engine=eng, threads=thr, batch_size=1) if not r["stats"].get("noisy")]
        if not rows:
            continue
        space_dict = store.bundle_space(rows[0]["bundle_sha256"])
        if space_dict is None:
            raise UserError(f"measurements of {tgt}/{eng} name bundle {rows[0]['bundle_sha256'][:12]} whose space is "
                            f"unknown to the store; rerun `edge_eas bench` with that bundle")
        space = SearchSpace.from_dict(space_dict)
        rows = [r for r in rows if store.bundle_space(r["bundle_sha256"]) == space_dict]
        fitted, rep = calibrate_rows(prior_model(target, eng, thr, store), rows, space, n_fit)
        key = model_key(eng, thr)
        models[key] = fitted.to_dict()
        reports[key] = rep
    store.close()
    if not models:
        raise UserError(f"no measurements for target {target.name!r}"
                        f"{' engine ' + engine if engine else ''} in {store_path}: run `edge_eas bench` first")
    doc = {"target": target.name, "models": models}
    out = models_dir() / f"{target.name}.json"
    atomic_write_json(out, doc)
    if sign_key:
        from ..runtime.signing import sign
        atomic_write_json(Path(str(out) + ".sig"), sign(out.read_bytes(), sign_key))
    if run_dir is not None:
        path = models_path(run_dir)
        existing = json.loads(path.read_text()) if path.is_file() else {}
        existing.setdefault(target.name, {}).update(models)
        atomic_write_json(path, existing)
    return {"target": target.name, "models": reports, "model_file": str(out)}
