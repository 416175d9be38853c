"""Latency model, calibration and the SQLite measurement store."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_eas.cost.calibrate import accuracy_report, fit
from edge_eas.cost.latency import Hardware, LatencyModel
from edge_eas.cost.store import SCHEMA_VERSION, Measurement, MeasurementStore
from edge_eas.errors import UserError
from edge_eas.generator import ArchGenerator
from edge_eas.net.space import SearchSpace


def _m(i: int, **kw) -> Measurement:  # type: ignore[no-untyped-def]
    base = dict(measurement_id=f"id{i}", device_id="dev", target="local", engine="numpy", threads=1, batch_size=1,
                arch={"depths": [1, 1, 1]}, median_ms=1.0 + i, stats={"median_ms": 1.0 + i, "p90_ms": 2.0 + i},
                bench_run="run", scenario=f"s{i}")
    base.update(kw)
    return Measurement(**base)


def test_store_is_idempotent_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    with MeasurementStore(path) as st:
        assert st.insert(_m(0)) and not st.insert(_m(0))
        assert st.insert(_m(1))
        assert st.count() == 2 and st.scenarios_done("run", "dev") == {"s0", "s1"}
        assert st.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(UserError, match="newer than this edge_eas supports"):
        MeasurementStore(path)


def test_a_version_1_store_gains_the_prediction_column_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    with MeasurementStore(path) as st:
        st.insert(_m(0))
    db = sqlite3.connect(path)  # the store as version 1 wrote it: no prediction_json column
    db.execute("ALTER TABLE measurements DROP COLUMN prediction_json")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    target = {"min_accuracy": 0.9, "predicted_accuracy": 0.93, "predicted_interval": [0.91, 0.95],
              "predicted_accuracy_safe": 0.91}
    with MeasurementStore(path) as st:
        assert st.insert(_m(1, prediction=target))
        rows = {r["scenario"]: r for r in st.measurements()}
    assert rows["s0"]["prediction"] is None and rows["s1"]["prediction"] == target


WRITER = """
import sys, time
from edge_eas.cost.store import Measurement, MeasurementStore
st = MeasurementStore(sys.argv[1])
i = 0
while True:
    st.insert(Measurement(f"w{i}", "dev", "local", "numpy", 1, 1, {"d": i}, 1.0, {"median_ms": 1.0}, "run", f"s{i}"))
    i += 1
    if i == 100:
        print("writing", flush=True)  # well into its stream of commits: the test kills it now
"""


def test_store_survives_a_writer_killed_mid_write(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)  # at once: the writer is inside its insert loop, wherever it is
    proc.wait()
    with MeasurementStore(path) as st:
        n = st.count()
        assert n >= 100
        assert st.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = st.measurements(target="local")
        assert len({r["measurement_id"] for r in rows}) == n == len(rows)
        assert st.insert(_m(99))


def test_calibration_recovers_a_synthetic_device() -> None:
    space = SearchSpace.preset("digits")
    truth = LatencyModel("dev", "numpy", 1, coef=(2e-6, 3e-5, 1e-5, 4e-5, 1e-7, 0.004), const_ms=0.05)
    prior = LatencyModel("dev", "numpy", 1, hardware=Hardware(peak_gflops=5, memory_gbps=2))
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(120)]
    noise = rng.normal(1, 0.02, size=len(archs))
    measured = [truth.predict(space, a) * n for a, n in zip(archs, noise)]
    fitted = fit(prior, space, archs[:20], measured[:20])
    rep = accuracy_report([fitted.predict(space, a) for a in archs[20:]], measured[20:])
    before = accuracy_report([prior.predict(space, a) for a in archs[20:]], measured[20:])
    assert rep["within_10pct"] >= 0.95 and rep["kendall_tau"] >= 0.9
    assert rep["mape"] < before["mape"]
    assert LatencyModel.from_dict(json.loads(json.dumps(fitted.to_dict()))).predict(space, archs[0]) == \
        pytest.approx(fitted.predict(space, archs[0]))


def test_ms_budgets_are_repaired_and_minimum_is_named() -> None:
    import torch
    from edge_eas.host.generator_train import GeneratorNet
    space = SearchSpace.preset("digits")
    torch.manual_seed(0)
    net = GeneratorNet(10, space.decision_sizes(), 16)
    with torch.no_grad():
        net.fc2.weight.normal_()
    gen = ArchGenerator(space, 10, {k: v.numpy() for k, v in net.state_dict().items()})
    model = LatencyModel("dev", "numpy", 1)
    table = model.table(space)
    lo, hi = gen.bounds("ms", table)
    budgets = list(np.linspace(lo, hi, 30))
    for arch, b in zip(gen.generate([[1, 2]] * 30, budgets, "ms", table=table), budgets):
        assert model.predict(space, arch) <= b + 1e-9
    with pytest.raises(ValueError, match=f"minimum feasible budget is {lo:.6g}"):
        gen.generate([[1, 2]], [lo / 2], "ms", table=table)
    assert "ms" not in gen.cost_tables  # the table was passed for the call, not stored


def test_expected_latency_matches_prediction_for_one_hot() -> None:
    from edge_eas.supernet import SoftArch
    space = SearchSpace.preset("digits")
    model = LatencyModel("dev", "numpy", 1)
    arch = space.sample(np.random.default_rng(3))
    soft = SoftArch.from_arch(space, arch)
    expected = model.table(space).expected(space, soft.depth, soft.kernel, soft.expand)
    assert float(expected) == pytest.approx(model.predict(space, arch))


def test_specialize_cli_with_ms_budget_uses_the_targets_calibrated_model(tiny_run: Path, tmp_path: Path) -> None:
    """`--target local` has engine "auto": whichever engine was calibrated for its threads is used."""
    home = tmp_path / "home"
    (home / "latency-models").mkdir(parents=True)
    model = LatencyModel("local", "numpy", 1)
    (home / "latency-models" / "local.json").write_text(json.dumps({"target": "local",
                                                                    "models": {"numpy/t1": model.to_dict()}}))
    env = dict(os.environ, EDGE_EAS_HOME=str(home))
    space = SearchSpace.preset("digits")
    lo = model.predict(space, space.smallest())
    cli = [sys.executable, "-m", "edge_eas.cli", "specialize", str(tiny_run), "--classes", "1,2,3", "--target",
           "local", "--no-eval", "--json", "--budget-ms"]
    out = subprocess.run([*cli, str(lo * 3)], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["predicted_ms"] <= lo * 3
    low = subprocess.run([*cli, str(lo / 2)], capture_output=True, text=True, env=env, timeout=120)
    assert low.returncode == 2 and "minimum feasible budget" in low.stderr


# ---- the latency loop on a noisy machine (issue: calibration that never makes the model worse) ----

def _synthetic(n: int, seed: int = 0, noise: float = 0.02):  # type: ignore[no-untyped-def]
    space = SearchSpace.preset("digits")
    truth = LatencyModel("dev", "numpy", 1, coef=(2e-6, 3e-5, 1e-5, 4e-5, 1e-7, 0.004), const_ms=0.05)
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(n)]
    measured = [truth.predict(space, a) * f for a, f in zip(archs, rng.normal(1, noise, size=n))]
    return space, truth, archs, measured


def _rows(archs, measured):  # type: ignore[no-untyped-def]
    return [{"arch": a.to_dict(), "latency_ms": m, "stats": {"cv_trimmed": 0.02}} for a, m in zip(archs, measured)]


def test_huber_fit_shrugs_off_preempted_measurements() -> None:
    space, truth, archs, measured = _synthetic(80)
    spoilt = list(measured)
    for i in (2, 7, 11, 15):  # four of the 20 fit rows ran on a preempted core: 3x slower
        spoilt[i] *= 3.0
    prior = LatencyModel("dev", "numpy", 1, hardware=Hardware(peak_gflops=5, memory_gbps=2))
    fitted = fit(prior, space, archs[:20], spoilt[:20])
    rep = accuracy_report([fitted.predict(space, a) for a in archs[20:]], measured[20:])
    assert rep["within_10pct"] >= 0.9, rep
    assert fitted.fit["loss"] == "huber" and fitted.fit["downweighted"] >= 4


def test_held_out_predictions_never_see_their_own_architecture() -> None:
    """Leave one architecture out: a row's prediction comes from a fit without its arch, so an
    arch measured 3x slow (a spoilt measurement) is not predicted 3x slow, however often it
    was measured."""
    from edge_eas.cost.calibration import leave_one_arch_out
    space, truth, archs, measured = _synthetic(12)
    archs = archs + [archs[0]] * 5  # the first arch measured six times, all spoilt
    measured = [m * 3.0 if i == 0 else m for i, m in enumerate(measured)] + [measured[0] * 3.0] * 5
    prior = LatencyModel("dev", "numpy", 1, hardware=Hardware(peak_gflops=5, memory_gbps=2))
    idx = list(range(len(archs)))
    loo = leave_one_arch_out(prior, space, archs, measured, idx)
    true0 = truth.predict(space, archs[0])
    assert all(abs(loo[i] - true0) / true0 < 0.3 for i in (0, 12, 16)), [loo[i] / true0 for i in (0, 12, 16)]


def test_calibration_keeps_the_profiled_model_when_the_fit_would_be_worse() -> None:
    """The fit rows were measured while the machine was busy (all 40 % slow); the held-out rows
    were not. The fitted model would be worse on them, so the unfitted one is kept."""
    from edge_eas.cost.calibration import calibrate_rows
    space, truth, archs, measured = _synthetic(50)
    busy = [m * 1.4 if i < 20 else m for i, m in enumerate(measured)]
    kept, rep = calibrate_rows(truth, _rows(archs, busy), space, 20)
    assert rep["kept"] == truth.source and kept.coef == truth.coef
    assert rep["kept_within_10pct"] >= rep["after"]["within_10pct"]
    assert "had not seen" in kept.fit["reason"]


def test_calibration_is_kept_when_it_helps_and_ms_budgets_carry_its_margin() -> None:
    from edge_eas.cost.calibration import calibrate_rows
    space, truth, archs, measured = _synthetic(60, noise=0.05)
    prior = LatencyModel("dev", "numpy", 1, hardware=Hardware(peak_gflops=5, memory_gbps=2))
    kept, rep = calibrate_rows(prior, _rows(archs, measured), space, 20)
    assert rep["kept"] == "calibrated" and rep["held_n"] == 60 and rep["fit_archs"] == 20 and not rep["poor"]
    assert rep["after"]["within_10pct"] > rep["before"]["within_10pct"]
    assert 0 < kept.margin < 0.2 and rep["margin"] == kept.margin


def test_archs_seen_by_block_profiling_are_not_scored_and_noisy_rows_are_counted() -> None:
    """The profile's fixed term was estimated from some probe archs: the unfitted model has seen
    them, so their rows never count as held out. Noisy rows stay in the score, counted."""
    from edge_eas.cost.calibration import calibrate_rows, held_out_line
    space, truth, archs, measured = _synthetic(40)
    rows = _rows(archs, measured)
    rows[25]["stats"]["noisy"] = True
    seen = [archs[0].to_dict(), archs[30].to_dict()]
    _, rep = calibrate_rows(truth, rows, space, 20, seen_archs=seen)
    assert rep["held_n"] == 38 and rep["unscored_n"] == 2 and rep["held_noisy_n"] == 1
    assert rep["held_out_archs"] == 38 and rep["seen_by_profile_archs"] == 2
    assert "38 held-out measurements (38 archs, 1 of them noisy)" in held_out_line("numpy/t1", rep)


def test_a_calibration_with_nothing_held_out_gives_no_held_out_figure() -> None:
    """One arch measured over and over: every prediction would be of the fit set, so the report
    says so instead of printing a figure."""
    from edge_eas.cost.calibration import calibrate_rows, held_out_line
    space, truth, archs, measured = _synthetic(3)
    kept, rep = calibrate_rows(truth, _rows([archs[0]] * 6, [measured[0]] * 6), space, 20)
    assert rep["held_n"] == 0 and rep["before"] is None and rep["after"] is None
    assert rep["kept_within_10pct"] is None and kept.margin == 0.0
    assert "no held-out architecture" in held_out_line("numpy/t1", rep)
    # repair against predicted x (1 + margin): the held-out archs' measured times then fit their budgets
    gen = ArchGenerator(space, 10, {"fc1.weight": np.zeros((4, 14)), "fc1.bias": np.zeros(4),
                                    "fc2.weight": np.zeros((sum(space.decision_sizes()), 4)),
                                    "fc2.bias": np.zeros(sum(space.decision_sizes()))})
    table = kept.budget_table(space)
    lo, hi = gen.bounds("ms", table)
    budgets = list(np.geomspace(lo * 1.01, hi, 20))
    for arch, b in zip(gen.generate([[1, 2]] * 20, budgets, "ms", table=table), budgets):
        assert kept.predict(space, arch) * (1 + kept.margin) <= b + 1e-9
    assert LatencyModel.from_dict(json.loads(json.dumps(kept.to_dict()))).margin == kept.margin


def test_sub_millisecond_work_is_timed_in_repeated_samples() -> None:
    from edge_eas.runtime.timing import MIN_SAMPLE_S, measure
    x = np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32)
    stats = measure(lambda: x @ x, warmup=3, runs=30)
    assert stats["repeat"] > 1, stats  # a 16x16 matmul takes microseconds
    assert stats["sample_median_ms"] >= 0.5 * MIN_SAMPLE_S * 1000
    assert stats["median_ms"] == pytest.approx(stats["sample_median_ms"] / stats["repeat"])


def test_a_group_met_in_a_slow_stretch_is_timed_again() -> None:
    """The reference timed with a group shows the machine's state: 30 % above the best seen,
    the group is retimed; figures carry the reference they were taken with."""
    from edge_eas.runtime.timing import SpeedReference
    ref_ms = iter([0.010, 0.013, 0.0101])  # settle, then a slow stretch, then the usual speed

    def machine(fns, **protocol):  # type: ignore[no-untyped-def]
        r = next(ref_ms)
        return [{"latency_ms": r, "median_ms": r}] + [{"latency_ms": 0.05 * r / 0.01, "median_ms": 1.0}
                                                       for _ in fns[1:]]

    ref = SpeedReference(lambda: None, timer=machine, sleep=lambda s: None)
    assert ref.settle() == 0.010
    stats = ref.measure([lambda: None, lambda: None])
    assert [s["group_attempts"] for s in stats] == [2, 2]
    assert stats[0]["reference_ms"] == 0.0101 and stats[0]["latency_ms"] == pytest.approx(0.0505)


def test_a_group_slow_in_every_attempt_keeps_its_fastest_attempt() -> None:
    from edge_eas.runtime.timing import SpeedReference
    ref_ms = iter([0.010, 0.013, 0.0115, 0.012, 0.014, 0.013, 0.0125, 0.012, 0.016])  # settle, 8 slow attempts
    pauses: list[float] = []

    def machine(fns, **protocol):  # type: ignore[no-untyped-def]
        r = next(ref_ms)
        return [{"latency_ms": r}] + [{"latency_ms": 5 * r} for _ in fns[1:]]

    ref = SpeedReference(lambda: None, timer=machine, sleep=pauses.append)
    ref.settle()
    stats = ref.measure([lambda: None])
    assert stats[0]["group_attempts"] == ref.max_attempts == 8
    assert stats[0]["reference_ms"] == 0.0115 and stats[0]["latency_ms"] == pytest.approx(0.0575)
    # attempts are spaced ever wider, so a long slow stretch can pass
    assert pauses == [ref.pause_s * k for k in range(1, 8)]


def test_a_store_holding_two_spaces_calibrates_each_on_its_own(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Digits then mbv3 benched on one device: each calibration uses only its space's rows and
    fixed term, the models are filed per space, and a model of one space is never used for the
    other (a digits model predicted mbv3 networks ~80x off in an acceptance run)."""
    from edge_eas.cost.calibration import calibrate_target, prior_model
    from edge_eas.cost.latency_models import LatencyModels
    from edge_eas.cost.store import Measurement, MeasurementStore
    monkeypatch.setenv("EDGE_EAS_HOME", str(tmp_path / "home"))
    store_path = tmp_path / "m.sqlite"
    spaces = {"small": SearchSpace.preset("digits"), "big": SearchSpace.preset("digits").at_resolution(16)}
    prior = prior_model("local", "numpy", 1)
    with MeasurementStore(store_path) as store:
        for name, space in spaces.items():
            # the device: 1.5x slower than the local profile's prior, with its own constant per space
            truth = LatencyModel("local", "numpy", 1, coef=tuple(1.5 * c for c in prior.prior_coef()[0]),
                                 const_ms=0.05 if name == "small" else 0.5)
            store.put_bundle(name * 8, space.to_dict(), [str(i) for i in range(10)])
            rng = np.random.default_rng(len(name))
            for i in range(30):
                a = space.sample(rng)
                ms = truth.predict(space, a)
                store.insert(Measurement(f"{name}-{i}", "dev", "local", "numpy", 1, 1, a.to_dict(), ms,
                                         {"latency_ms": ms, "median_ms": ms}, bundle_sha256=name * 8))
    last = calibrate_target("local", store_path)  # the space measured last: big
    assert last["models"]["numpy/t1"]["space_digest"] == spaces["big"].digest()
    first = calibrate_target("local", store_path, space_digest=spaces["small"].digest())
    for name, rep in (("big", last), ("small", first)):
        r = rep["models"]["numpy/t1"]
        assert r["held_n"] == 30 and r["after"]["within_10pct"] >= 0.9, (name, r)  # mixed spaces: 50 %
    doc = json.loads(Path(first["model_file"]).read_text())
    for name, space in spaces.items():
        model = LatencyModels.from_dict(doc).for_space(space).get("numpy", 1)
        assert model is not None and model.space_digest == space.digest()
        assert model.made_for(space) and not model.made_for(spaces["small" if name == "big" else "big"])
    only_big = {"models": {"numpy/t1": doc["by_space"][spaces["big"].digest()]["numpy/t1"]}}
    assert LatencyModels.from_dict(only_big).for_space(spaces["small"]).get("numpy", 1) is None


def test_block_entries_are_shared_by_spaces_and_the_fixed_term_is_not(tmp_path: Path) -> None:
    from edge_eas.cost.store import fixed_key
    with MeasurementStore(tmp_path / "m.sqlite") as store:
        store.put_block_profile("local", "tflite", 1, "i16-o24-k3-e3-s2-r112", 0.5)
        store.put_block_profile("local", "tflite", 1, "fixed", 9.0)  # from before spaces were told apart
        for digest, ms in (("a" * 16, 1.0), ("b" * 16, 2.0)):
            store.put_block_profile("local", "tflite", 1, fixed_key(digest), ms, {"probe_archs": [{"d": digest}]})
        assert store.block_profiles("local", "tflite", 1, "a" * 16) == {"i16-o24-k3-e3-s2-r112": 0.5, "fixed": 1.0}
        assert store.block_profiles("local", "tflite", 1, "b" * 16)["fixed"] == 2.0
        assert store.block_profiles("local", "tflite", 1, "c" * 16) == {"i16-o24-k3-e3-s2-r112": 0.5}
        assert store.fixed_probe_archs("local", "tflite", 1, "b" * 16) == [{"d": "b" * 16}]


def test_probe_fit_recovers_fixed_and_scale_and_falls_back_without_spread() -> None:
    from edge_eas.runtime.agent.profile import fit_probes
    sums = [9.0, 35.5, 142.8, 25.0, 62.1]
    fixed, scale = fit_probes(sums, [5.0 + 1.02 * x for x in sums])
    assert fixed == pytest.approx(5.0) and scale == pytest.approx(1.02)
    assert fit_probes([9.0, 9.0], [14.0, 15.0]) == (pytest.approx(5.5), 1.0)  # one size: the median residual


def test_a_run_that_starts_slow_is_compared_with_the_devices_best() -> None:
    """A slow stretch can outlast a whole run, its reference's own best included: with the
    device's earlier best as a hint, its groups are retimed; and if the device really got slower
    (two groups slow through every attempt), its present speed is taken as the norm."""
    from edge_eas.runtime.timing import SpeedReference
    level = {"ms": 0.014}

    def machine(fns, **protocol):  # type: ignore[no-untyped-def]
        return [{"latency_ms": level["ms"]}] + [{"latency_ms": 5 * level["ms"]} for _ in fns[1:]]

    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        level["ms"] = 0.010  # the slow stretch passes while the reference waits

    ref = SpeedReference(lambda: None, timer=machine, sleep=sleep)
    assert ref.settle(hint_ms=0.010) == 0.010    # the run started slow (14 us) but the device's best is 10
    stats = ref.measure([lambda: None])
    assert stats[0]["group_attempts"] == 2 and stats[0]["latency_ms"] == pytest.approx(0.05)
    level["ms"], waits[:] = 0.013, []
    ref.sleep = lambda s: waits.append(s)  # now the device stays 30 % slower
    ref.measure([lambda: None])
    ref.measure([lambda: None])
    assert ref.best_ms == 0.013 and len(waits) == 2 * (ref.max_attempts - 1)
    assert ref.measure([lambda: None])[0]["group_attempts"] == 1


def test_the_store_gives_each_engines_fastest_reference_for_a_bundle(tmp_path: Path) -> None:
    from edge_eas.cost.store import Measurement
    from edge_eas.remote.bench import reference_args
    arch = SearchSpace.preset("digits").smallest().to_dict()
    with MeasurementStore(tmp_path / "m.sqlite") as store:
        for i, (engine, sha, ref) in enumerate([("tflite", "a", 0.0141), ("tflite", "a", 0.0139), ("numpy", "a", 0.05),
                                                 ("tflite", "b", 0.001)]):
            store.insert(Measurement(f"m{i}", "dev", "local", engine, 1, 1, arch, 0.1,
                                     {"latency_ms": 0.1, "reference_ms": ref}, bundle_sha256=sha))
        hints = store.reference_hints("local", "a", 1)
    assert hints == {"tflite": 0.0139, "numpy": 0.05}
    assert reference_args(hints) == ["--reference-ms", "numpy=0.05", "--reference-ms", "tflite=0.0139"]
