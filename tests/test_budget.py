"""One Budget value from the CLI to the device agent, and one LatencyModels owning the latency
models' files (issue #30): parsing, round trips, the older spellings stored data still has,
ms budgets in `specialize` and `bench`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_eas.cost.latency import LatencyModel
from edge_eas.cost.latency_models import LatencyModels
from edge_eas.errors import UserError
from edge_eas.net.budget import Budget
from edge_eas.net.space import SearchSpace
from edge_eas.runtime import Runtime

CLI = [sys.executable, "-m", "edge_eas.cli"]


# ---- Budget -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, kind, value, spelled", [
    ("ms=12", "ms", 12.0, "ms=12"), ("mflops=3.5", "mflops", 3.5, "mflops=3.5"),
    ("params=2e5", "params", 2e5, "params=200000"), (" MFLOPS = 0.25 ", "mflops", 0.25, "mflops=0.25"),
    ("ms=0.1", "ms", 0.1, "ms=0.1"), ("params=1e20", "params", 1e20, "params=1e+20"),
])
def test_parse_and_spell_back(text: str, kind: str, value: float, spelled: str) -> None:
    b = Budget.parse(text)
    assert (b.kind, b.value) == (kind, value) and str(b) == spelled
    assert Budget.parse(str(b)) == b and Budget.from_dict(b.to_dict()) == b == Budget.of(b.to_dict())
    assert b.to_dict() == {kind: value} and json.loads(json.dumps(b.to_dict())) == b.to_dict()


@pytest.mark.parametrize("text, needle", [
    ("12", "expected KIND=VALUE"), ("flops=3", "expected KIND=VALUE"), ("ms=", "is not a number"),
    ("ms=fast", "is not a number"), ("ms=-1", "positive"), ("ms=0", "positive"), ("mflops=nan", "positive"),
    ("ms=inf", "positive"),
])
def test_bad_budgets_say_why_in_one_line(text: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle) as err:
        Budget.parse(text)
    assert "\n" not in str(err.value)


def test_older_spellings_still_read() -> None:
    """Scenario files and measurement lines stored before Budget spelled it `budget_mflops`."""
    assert Budget.from_dict({"budget_ms": 4}) == Budget("ms", 4.0)
    assert Budget.in_scenario({"id": "a", "classes": [1], "budget_mflops": 1.5}) == Budget("mflops", 1.5)
    assert Budget.in_scenario({"id": "a", "classes": [1], "budget": {"params": 2e5}}) == Budget("params", 2e5)
    assert Budget.in_scenario({"id": "a", "classes": [1], "budget": "ms=3"}) == Budget("ms", 3.0)
    assert Budget.in_scenario({"id": "a", "classes": [1], "arch": {}}) is None
    with pytest.raises(ValueError, match="exactly one budget"):
        Budget.in_scenario({"budget_mflops": 1.0, "budget_ms": 2.0})
    with pytest.raises(ValueError, match="no budget"):
        Budget.from_dict({"seconds": 1})


def test_given_takes_one_budget_in_any_spelling() -> None:
    assert Budget.given("ms=4") == Budget.given(ms=4.0) == Budget.given(Budget("ms", 4)) == Budget("ms", 4.0)
    assert Budget.given() is None
    with pytest.raises(ValueError, match="exactly one budget, not 2"):
        Budget.given("ms=4", mflops=1.0)


# ---- LatencyModels ------------------------------------------------------------------------------

def _model(space: SearchSpace | None, scale: float = 1.0) -> dict:
    prior = LatencyModel("dev", "numpy", 1)
    coef = tuple(scale * c for c in prior.prior_coef()[0])
    return LatencyModel("dev", "numpy", 1, coef=coef, const_ms=0.01,
                        space_digest=space.digest() if space else None).to_dict()


def test_models_file_round_trip_and_space_lookup(tmp_path: Path) -> None:
    small, big = SearchSpace.preset("digits"), SearchSpace.preset("digits").at_resolution(16)
    models = LatencyModels()
    models.add({"numpy/t1": _model(small)}, small.digest(), "dev")
    models.add({"numpy/t1": _model(big, 2.0)}, big.digest(), "dev")
    path = tmp_path / "dev.json"
    models.write(path)
    doc = json.loads(path.read_text())
    assert list(doc) == ["target", "models", "by_space"] and doc["models"]["numpy/t1"]["space_digest"] == big.digest()
    back = LatencyModels.read(path)
    assert back == models and "numpy/t1" in back and "tflite/t1" not in back
    for space in (small, big):
        got = back.for_space(space).get("numpy", 1)
        assert got is not None and got.space_digest == space.digest()
    assert back.for_space(small).get("tflite", 1) is None and back.for_space(small).get("numpy", 2) is None
    assert back.for_space(small).first(("tflite", "numpy"), 1) is not None
    only_big = LatencyModels.from_dict({"models": {"numpy/t1": _model(big)}})
    assert only_big.for_space(small).get("numpy", 1) is None  # never a model of another space
    assert not LatencyModels.read(tmp_path / "missing.json")


def test_run_models_and_a_bundles_cost_models(tmp_path: Path) -> None:
    space = SearchSpace.preset("digits")
    LatencyModels.save_to_run(tmp_path, "dev", {"numpy/t1": _model(space)})
    LatencyModels.save_to_run(tmp_path, "other", {"numpy/t2": _model(None)})
    doc = LatencyModels.run_document(tmp_path)
    assert set(doc) == {"dev", "other"} and LatencyModels.run_path(tmp_path).is_file()
    # a run's per-target entry (as a bundle's cost_models carries it) reads as the latest models
    assert LatencyModels.of_run(tmp_path, "dev").for_space(space).get("numpy", 1) is not None
    assert LatencyModels.of_run(tmp_path, "other").for_space(space).get("numpy", 2) is not None  # no digest: any
    assert LatencyModels.beside(tmp_path / "rel" / "model.eas") == tmp_path / "rel" / "latency_models.json"


# ---- the runtime, the CLI and bench with budgets --------------------------------------------------

def test_runtime_takes_a_budget_in_every_spelling(tiny_bundle: Path) -> None:
    rt = Runtime.load(tiny_bundle)
    archs = {rt.specialize([1, 2, 3], b, engine="numpy").arch
             for b in ("mflops=1.0", Budget("mflops", 1.0), {"mflops": 1.0})}
    archs.add(rt.specialize([1, 2, 3], budget_mflops=1.0, engine="numpy").arch)
    assert len(archs) == 1
    with pytest.raises(ValueError, match="no latency model"):
        rt.specialize([1, 2], "ms=1", engine="numpy", threads=1)
    rt.add_latency_models({"numpy/t1": _model(rt.space)})
    lo = LatencyModel.from_dict(_model(rt.space)).predict(rt.space, rt.space.smallest())
    m = rt.specialize([1, 2], Budget("ms", 3 * lo), engine="numpy", threads=1)
    assert m.predicted_ms is not None and m.predicted_ms <= 3 * lo
    with pytest.raises(ValueError, match="exactly one budget"):
        rt.specialize([1, 2], "ms=1", budget_mflops=1.0)


def _home_with_model(tmp_path: Path, space: SearchSpace) -> dict[str, str]:
    home = tmp_path / "home"
    models = LatencyModels()
    models.add({"numpy/t1": _model(space)}, space.digest(), "local")
    models.write(home / "latency-models" / "local.json")
    return dict(os.environ, EDGE_EAS_HOME=str(home))


def test_specialize_cli_budget_flag_and_its_aliases(tiny_bundle: Path, tmp_path: Path) -> None:
    space = SearchSpace.preset("digits")
    env = _home_with_model(tmp_path, space)
    lo = LatencyModel.from_dict(_model(space)).predict(space, space.smallest())
    base = [*CLI, "specialize", str(tiny_bundle), "--classes", "1,2,3", "--json"]
    docs = [json.loads(subprocess.run([*base, *flags], capture_output=True, text=True, env=env, timeout=120,
                                      check=True).stdout)
            for flags in (["--budget", "mflops=1"], ["--budget-mflops", "1"])]
    assert docs[0]["budget"] == docs[1]["budget"] == {"mflops": 1.0} and docs[0]["arch"] == docs[1]["arch"]
    ms = subprocess.run([*base, "--budget", f"ms={3 * lo}", "--target", "local"], capture_output=True, text=True,
                        env=env, timeout=120)
    assert ms.returncode == 0, ms.stderr
    doc = json.loads(ms.stdout)
    assert doc["budget"] == {"ms": 3 * lo} and doc["predicted_ms"] <= 3 * lo
    for flags, needle in ((["--budget", "ms=soon"], "is not a number"), (["--budget", "ms=1"], "needs --target")):
        bad = subprocess.run([*base, *flags], capture_output=True, text=True, env=env, timeout=120)
        assert bad.returncode == 2 and needle in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_bench_with_ms_budgets_on_the_local_target(tiny_bundle: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Budgets spread over the range the target's model predicts; the local agent reads the
    host's models file, generates within them and reports the budget as {"ms": x}."""
    from edge_eas.cost.store import MeasurementStore
    from edge_eas.remote.fleet import BenchRequest, run_bench
    space = SearchSpace.preset("digits")
    monkeypatch.setenv("EDGE_EAS_HOME", _home_with_model(tmp_path, space)["EDGE_EAS_HOME"])
    store = tmp_path / "m.sqlite"
    result = run_bench(BenchRequest(target="local", bundle=tiny_bundle, scenarios=3, runs=30, warmup=1, store=store,
                                    engine="numpy", threads=1, budget_kind="ms"))
    rows = result["devices"][0]["rows"]
    assert len(rows) == 3 and not result["failed_devices"]
    model = LatencyModel.from_dict(_model(space))
    lo, hi = (model.predict(space, a) for a in (space.smallest(), space.largest()))
    for r in rows:
        assert lo < r["budget_ms"] <= hi and r["predicted_ms"] <= r["budget_ms"] + 1e-9
        assert r["in_budget"] == (r["measured_ms"] <= r["budget_ms"] + 1e-9)
    with MeasurementStore(store) as st:
        assert len(st.measurements(target="local")) == 3
    with pytest.raises(UserError, match="calibrated latency model"):
        monkeypatch.setenv("EDGE_EAS_HOME", str(tmp_path / "empty-home"))
        run_bench(BenchRequest(target="local", bundle=tiny_bundle, scenarios=1, store=store, engine="numpy",
                               threads=1, budget_kind="ms"))


def test_agent_reads_both_scenario_spellings(tiny_bundle: Path, tmp_path: Path) -> None:
    scen = tmp_path / "s.json"
    scen.write_text(json.dumps([{"id": "old", "classes": [1, 2], "budget_mflops": 1.0},
                                {"id": "new", "classes": [1, 2], "budget": {"mflops": 1.0}},
                                {"id": "text", "classes": [1, 2], "budget": "mflops=1"}]))
    res = subprocess.run([sys.executable, "-m", "edge_eas.runtime", "--bundle", str(tiny_bundle), "--scenarios",
                          str(scen), "--runs", "30", "--warmup", "1", "--engine", "numpy"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    meas = [x for x in lines if x["type"] == "measurement"]
    assert [m["scenario"] for m in meas] == ["old", "new", "text"]
    assert all(m["budget"] == {"mflops": 1.0} for m in meas) and len({json.dumps(m["arch"]) for m in meas}) == 1
