"""Calibrate a target's latency models from the measurement store and write them out
(a cost-model file that deploy can push, and optionally into a run for export)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_eas.common.fileio import atomic_write_json
from edge_eas.errors import UserError
from edge_eas.common.paths import models_file
from edge_eas.net.space import Arch, SearchSpace
from edge_eas.devices.targets import Target, load_target
from edge_eas.cost.calibrate import accuracy_report, fit
from edge_eas.cost.latency import LatencyModel, model_key
from edge_eas.cost.latency_models import LatencyModels
from edge_eas.cost.store import MeasurementStore
from edge_eas.devices.boards import board_profiles
from edge_eas.format.signing import sign


def prior_model(target: Target | str, engine: str, threads: int | None,
                store: MeasurementStore | None = None, space_digest: str | None = None) -> LatencyModel:
    """The roofline prior from the target profile, with the store's profiled blocks if any (and
    the fixed term profiled for the space `space_digest`)."""
    target = load_target(target) if isinstance(target, str) else target
    model = LatencyModel(target=target.name, engine=engine, threads=threads, hardware=target.hardware,
                         space_digest=space_digest)
    if store is not None:
        entries = store.block_profiles(target.name, engine, threads, space_digest)
        fixed = entries.pop("fixed", None)
        scale = 1.0
        if fixed is not None and space_digest is not None:  # the space's in-network scale (profile.fit_probes)
            scale = float(store.fixed_profile(target.name, engine, threads, space_digest).get("entry_scale") or 1.0)
        model.entries.update({k: v * scale for k, v in entries.items()})
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
                       idx: list[int], pool: list[int] | None = None) -> list[float]:
    """For every row in `idx`, the prediction of a model fitted on the rows of `pool` (default
    `idx`) of the other architectures only (one point per arch): what calibration does to an
    architecture it has not seen."""
    pool = idx if pool is None else pool
    keys = [json.dumps(a.to_dict(), sort_keys=True) for a in archs]
    out = []
    cache: dict[str, LatencyModel] = {}
    for i in idx:
        if keys[i] not in cache:
            others = [j for j in pool if keys[j] != keys[i]]
            cache[keys[i]] = fit(model, space, *per_arch(archs, measured, others)) if others else model
        out.append(cache[keys[i]].predict(space, archs[i]))
    return out


def calibrate_rows(model: LatencyModel, rows: list[dict[str, Any]], space: SearchSpace, n_fit: int,
                   seen_archs: Sequence[dict[str, Any]] = ()) -> tuple[LatencyModel, dict[str, Any]]:
    """Decide on architectures the fit has not seen whether calibration helps, then fit.

    The rows of the first `n_fit` distinct archs are the calibration set. Each of its rows is
    predicted by a fit on the *other* archs (leave one architecture out: with the few archs a
    bench of 20 scenarios yields, holding a third out left fits that never saw a large network),
    and rows of later archs by the fit on all calibration archs. Rows of `seen_archs` (the
    probes block profiling estimated its fixed term from) are never scored: the unfitted model
    has seen them. Whichever of the calibrated and the unfitted (block-profiled or prior) model
    predicts the scored rows better is kept, so calibration never makes the model worse; the
    calibrated model is then fitted on every calibration arch. The kept model carries the margin
    ms budgets are repaired against: the 90th-percentile under-prediction on the scored rows.
    With no row left to score (one arch, or only seen ones) the report gives no held-out figure
    and the calibrated model is kept unvalidated."""
    archs = [Arch.from_dict(r["arch"]) for r in rows]
    measured = [r["latency_ms"] for r in rows]
    keys = [json.dumps(a.to_dict(), sort_keys=True) for a in archs]
    seen = {json.dumps(Arch.from_dict(a).to_dict(), sort_keys=True) for a in seen_archs}
    fit_keys = set(list(dict.fromkeys(keys))[:n_fit])
    fit_idx = [i for i, k in enumerate(keys) if k in fit_keys]
    later = [i for i, k in enumerate(keys) if k not in fit_keys and k not in seen]
    fitted = fit(model, space, *per_arch(archs, measured, fit_idx))
    n_archs = len(fit_keys)
    loo_idx = [i for i in fit_idx if keys[i] not in seen] if n_archs >= 2 else []
    check = loo_idx + later
    noisy = [bool((rows[i].get("stats") or {}).get("noisy")) for i in check]
    cvs = [r["stats"].get("cv_trimmed", r["stats"].get("cv")) for r in rows if r.get("stats")]
    report: dict[str, Any] = {
        "fit_n": len(fit_idx), "held_n": len(check), "held_noisy_n": int(sum(noisy)),
        "unscored_n": len(rows) - len(check), "validation": "leave one architecture out", "fit_archs": n_archs,
        "held_out_archs": len({keys[i] for i in check}), "seen_by_profile_archs": len(seen),
        "median_cv": float(np.median([c for c in cvs if c is not None])) if cvs else None,
        "load_average": list(os.getloadavg())}
    if not check:
        reason = (f"no held-out architecture to score ({n_archs} calibration arch(s), {len(seen)} seen by block "
                  f"profiling): the calibrated model is kept unvalidated")
        kept = replace(fitted, margin=0.0, fit={**fitted.fit, "kept": "calibrated", "reason": reason})
        return kept, {**report, "before": None, "after": None, "kept": "calibrated", "reason": reason,
                      "margin": 0.0, "kept_within_10pct": None, "poor": False}
    loo = leave_one_arch_out(model, space, archs, measured, loo_idx, pool=fit_idx)
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
    return kept, {**report, "before": before, "after": after, "kept": kept_name, "reason": reason, "margin": margin,
                  "kept_within_10pct": (after if better else before)["within_10pct"],
                  "poor": max(before["within_10pct"], after["within_10pct"]) < POOR_WITHIN_10PCT}


def held_out_line(key: str, cal: dict[str, Any]) -> str:
    """One line on how a calibration did on held-out archs, or why it has no such figure."""
    if cal.get("after") is None:
        return f"{key}: {cal['reason']}"
    b, a = cal["before"], cal["after"]
    noisy = f", {cal['held_noisy_n']} of them noisy" if cal.get("held_noisy_n") else ""
    return (f"{key}: on {cal['held_n']} held-out measurements ({cal.get('held_out_archs', '?')} archs{noisy}) within "
            f"±10% {100 * b['within_10pct']:.0f}% -> {100 * a['within_10pct']:.0f}%, MAPE {100 * b['mape']:.1f}% -> "
            f"{100 * a['mape']:.1f}%, tau {b['kendall_tau']:.2f} -> {a['kendall_tau']:.2f}; kept {cal['kept']}, "
            f"ms-budget margin +{100 * cal['margin']:.1f}%")


def measured_board(family: Target, stored_targets: Sequence[str], store_path: Path) -> Target:
    """The one board of a family target (`--target jetson`) that the store holds measurements of.
    Bench files rows under the board's own profile (boards.resolve_board), so that is what is
    calibrated; with several boards measured, which one is the user's to say."""
    profiles = {p.name: p for p in board_profiles() if p.board_family == family.board_detect}
    unknown = f"{family.board_fallback}-" if family.board_fallback else None  # boards no profile names
    found = [n for n in stored_targets if n in profiles or (unknown and n.startswith(unknown))]
    if not found:
        raise UserError(f"no measurements of any {family.board_detect} board in {store_path}: run "
                        f"`edge_eas bench --target {family.name}` first")
    if len(found) > 1:
        raise UserError(f"target {family.name} names a board family and {store_path} holds measurements of "
                        f"{len(found)} of its boards ({', '.join(found)}): calibrate one by name, e.g. "
                        f"`edge_eas calibrate --target {found[0]}`")
    name = found[0]
    return profiles[name] if name in profiles else replace(load_target(str(family.board_fallback)), name=name)


def calibrate_target(target_name: str | Target, store_path: Path, engine: str | None = None, threads: int | None = None,
                     n_fit: int = 20, run_dir: Path | None = None, sign_key: Path | None = None,
                     space_digest: str | None = None) -> dict[str, Any]:
    """Fit the target's models for one search space: `space_digest`, or by default the space of
    the bundle measured last. Rows of bundles of other spaces are left out (a model fitted on
    digits networks predicts mbv3 ones wrongly), and the models are filed under the space."""
    target = load_target(target_name) if isinstance(target_name, str) else target_name
    if not Path(store_path).is_file():
        raise UserError(f"no measurement store at {store_path}: run `edge_eas bench --target {target.name}` first")
    store = MeasurementStore(store_path)
    family = target.name if target.board_detect else None
    if target.board_detect:
        try:
            target = measured_board(target, sorted({t for t, _, _ in store.iter_models()}), store_path)
        except UserError:
            store.close()
            raise
    models: dict[str, Any] = {}
    reports: dict[str, Any] = {}
    spaces: dict[str, SearchSpace] = {}

    def space_of(sha: str) -> SearchSpace:
        if sha not in spaces:
            space_dict = store.bundle_space(sha)
            if space_dict is None:
                raise UserError(f"measurements of {target.name} name bundle {sha[:12]} whose space is unknown to the "
                                f"store; rerun `edge_eas bench` with that bundle")
            spaces[sha] = SearchSpace.from_dict(space_dict)
        return spaces[sha]

    for tgt, eng, thr in store.iter_models():
        # an engine named without its variant ("onnxruntime") covers each (onnxruntime:cuda, :cpu)
        if tgt != target.name or (engine and eng != engine and not eng.startswith(engine + ":")) or \
                (threads is not None and thr != threads):
            continue
        # noisy rows stay: their figure is the fastest interleaved sample, which a noisy spread of
        # samples does not move (runtime/timing.py); dropping them emptied small benches
        rows = store.measurements(target=tgt, engine=eng, threads=thr, batch_size=1)
        if not rows:
            continue
        digests = {sha: space_of(sha).digest() for sha in {r["bundle_sha256"] for r in rows}}  # once per bundle
        digest = space_digest or digests[rows[-1]["bundle_sha256"]]  # rows come oldest first
        rows = [r for r in rows if digests[r["bundle_sha256"]] == digest]
        if not rows:
            continue
        space = space_of(rows[0]["bundle_sha256"])
        fitted, rep = calibrate_rows(prior_model(target, eng, thr, store, digest), rows, space, n_fit,
                                     seen_archs=store.fixed_probe_archs(tgt, eng, thr, digest))
        key = model_key(eng, thr)
        models[key] = replace(fitted, space_digest=digest).to_dict()
        reports[key] = {**rep, "space": space.name, "space_digest": digest}
    store.close()
    if not models:
        raise UserError(f"no measurements for target {target.name!r}"
                        f"{' engine ' + engine if engine else ''} in {store_path}"
                        f"{' of this bundle' + chr(39) + 's space' if space_digest else ''}: run `edge_eas bench` first")
    digest = next(iter(models.values()))["space_digest"]
    out = models_file(target.name)
    doc = LatencyModels.read(out)
    doc.add(models, digest, target.name)
    doc.write(out)
    if sign_key:
        atomic_write_json(Path(str(out) + ".sig"), sign(out.read_bytes(), sign_key))
    if run_dir is not None:
        run_space = json.loads((Path(run_dir) / "run.json").read_text())["space"]  # (rundir.py needs torch)
        if SearchSpace.from_dict(run_space).digest() != digest:
            raise UserError(f"the measurements calibrated are of another search space than run {run_dir}'s: bench "
                            f"that run's bundle to calibrate it")
        LatencyModels.save_to_run(run_dir, target.name, models)
    return {"target": target.name, "resolved_from": family, "models": reports, "model_file": str(out)}
