"""Calibrate a target's latency models from the measurement store and write them out
(a cost-model file that deploy can push, and optionally into a run for export)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

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


POOR_WITHIN_10PCT = 0.80     # below this on held-out archs the quick start says the model is unreliable
MARGIN_QUANTILE = 90         # ms budgets hold as measured for this share of held-out archs


def per_arch(archs: list[Arch], measured: list[float], idx: list[int]) -> tuple[list[Arch], list[float]]:
    """One fit point per distinct arch (the median of its rows): an arch the generator chose
    twenty times must not outweigh the others twenty to one."""
    groups: dict[str, list[int]] = {}
    for i in idx:
        groups.setdefault(json.dumps(archs[i].to_dict(), sort_keys=True), []).append(i)
    return ([archs[g[0]] for g in groups.values()], [float(np.median([measured[i] for i in g])) for g in groups.values()])


def under_prediction_margin(predicted: list[float], measured: list[float]) -> float:
    """The MARGIN_QUANTILE-th percentile of relative under-prediction (0 when over-predicting)."""
    if not predicted:
        return 0.0
    rel = (np.asarray(measured) - np.asarray(predicted)) / np.asarray(predicted)
    return float(max(0.0, np.percentile(rel, MARGIN_QUANTILE)))


def leave_one_arch_out(model: LatencyModel, space: SearchSpace, archs: list[Arch], measured: list[float],
                       idx: list[int]) -> list[float]:
    """For every row in `idx`, the prediction of a model fitted on the other architectures only
    (one point per arch): what calibration does to an architecture it has not seen."""
    keys = [json.dumps(a.to_dict(), sort_keys=True) for a in archs]
    out = []
    cache: dict[str, LatencyModel] = {}
    for i in idx:
        if keys[i] not in cache:
            others = [j for j in idx if keys[j] != keys[i]]
            cache[keys[i]] = fit(model, space, *per_arch(archs, measured, others)) if others else model
        out.append(cache[keys[i]].predict(space, archs[i]))
    return out


def calibrate_rows(model: LatencyModel, rows: list[dict[str, Any]], space: SearchSpace,
                   n_fit: int) -> tuple[LatencyModel, dict[str, Any]]:
    """Decide on architectures the fit has not seen whether calibration helps, then fit.

    The rows of the first `n_fit` distinct archs are the calibration set. Each of its rows is
    predicted by a fit on the *other* archs (leave one architecture out: with the few archs a
    bench of 20 scenarios yields, holding a third out left fits that never saw a large network),
    and rows of later archs by the fit on all calibration archs. Whichever of the calibrated and
    the unfitted (block-profiled or prior) model predicts those held-out rows better is kept, so
    calibration never makes the model worse; the calibrated model is then fitted on every
    calibration arch. The kept model carries the margin ms budgets are repaired against: the
    90th-percentile under-prediction on the held-out rows."""
    archs = [Arch.from_dict(r["arch"]) for r in rows]
    measured = [r["latency_ms"] for r in rows]
    keys = [json.dumps(a.to_dict(), sort_keys=True) for a in archs]
    fit_keys = set(list(dict.fromkeys(keys))[:n_fit])
    fit_idx = [i for i, k in enumerate(keys) if k in fit_keys]
    later = [i for i, k in enumerate(keys) if k not in fit_keys]
    fitted = fit(model, space, *per_arch(archs, measured, fit_idx))
    n_archs = len(fit_keys)
    held_is_fit = n_archs < 2  # one arch has no other to be predicted from
    loo = ([fitted.predict(space, archs[i]) for i in fit_idx] if held_is_fit
           else leave_one_arch_out(model, space, archs, measured, fit_idx))
    check = fit_idx + later
    m_held = [measured[i] for i in check]
    pred = {"before": [model.predict(space, archs[i]) for i in check],
            "after": loo + [fitted.predict(space, archs[i]) for i in later]}
    before, after = (accuracy_report(pred[k], m_held) for k in ("before", "after"))
    better = (after["within_10pct"], -after["mape"]) >= (before["within_10pct"], -before["mape"])
    kept_name = "calibrated" if better else model.source
    kept = fitted if better else model
    reason = (f"on archs each fit had not seen: calibrated {after['within_10pct']:.0%} within ±10 % vs "
              f"{model.source} {before['within_10pct']:.0%} (MAPE {after['mape']:.1%} vs {before['mape']:.1%})")
    margin = under_prediction_margin(pred["after" if better else "before"], m_held)
    kept = replace(kept, margin=margin, fit={**kept.fit, "kept": kept_name, "reason": reason})
    cvs = [r["stats"].get("cv_trimmed", r["stats"].get("cv")) for r in rows if r.get("stats")]
    report = {"fit_n": len(fit_idx), "held_n": len(check), "held_out_is_fit_set": held_is_fit,
              "validation": "leave one architecture out", "fit_archs": n_archs,
              "before": before, "after": after, "kept": kept_name, "reason": reason, "margin": margin,
              "kept_within_10pct": (after if better else before)["within_10pct"],
              "poor": max(before["within_10pct"], after["within_10pct"]) < POOR_WITHIN_10PCT,
              "median_cv": float(np.median([c for c in cvs if c is not None])) if cvs else None,
              "load_average": list(os.getloadavg())}
    return kept, report


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
        # noisy rows stay: their figure is the fastest interleaved sample, which a noisy spread of
        # samples does not move (runtime/timing.py); dropping them emptied small benches
        rows = store.measurements(target=tgt, engine=eng, threads=thr, batch_size=1)
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
        from ..format.signing import sign
        atomic_write_json(Path(str(out) + ".sig"), sign(out.read_bytes(), sign_key))
    if run_dir is not None:
        path = models_path(run_dir)
        existing = json.loads(path.read_text()) if path.is_file() else {}
        existing.setdefault(target.name, {}).update(models)
        atomic_write_json(path, existing)
    return {"target": target.name, "models": reports, "model_file": str(out)}
