"""`edge_eas pareto` and edge_eas.host.pareto: the generator's picks along a ladder of MFLOPs
budgets, scored on the val split, as JSON, a table and a PNG; `is_rising` on hand-made fronts."""

from __future__ import annotations

import json

import pytest

from edge_eas.cli import main
from edge_eas.host.pareto import ParetoPoint, budget_ladder, is_rising, span_pp
from edge_eas.net.arch import Arch

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _point(budget: float, accuracy: float) -> ParetoPoint:
    return ParetoPoint(budget, Arch((1,), ((3,),), ((3,),)), budget * 0.9, 1000, accuracy)


def test_cli_json_front(tiny_run, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    plot = tmp_path / "front.png"
    assert main(["pareto", str(tiny_run), "--steps", "3", "--plot", str(plot), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["split"] == "val" and doc["steps"] == 3
    assert doc["classes"] == list(range(10))  # digits: all classes by default
    pts = doc["points"]
    assert len(pts) == 3
    budgets = [p["budget_mflops"] for p in pts]
    assert budgets == sorted(budgets) and len(set(budgets)) == 3
    for p in pts:
        assert p["mflops"] <= p["budget_mflops"] + 1e-9
        assert 0.0 <= p["accuracy"] <= 1.0
        assert p["ms"] is None and p["params"] > 0
        Arch.from_dict(p["arch"])
    assert isinstance(doc["rising"], bool) and doc["span_pp"] >= 0.0
    assert doc["plot"] == str(plot)
    assert plot.read_bytes()[:8] == PNG_MAGIC


def test_cli_table_default_plot_path(tiny_run, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["pareto", str(tiny_run), "--classes", "6,0", "--steps", "2", "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "MFLOPs" in out
    plot = tiny_run / "pareto-0_6-test.png"
    assert plot.read_bytes()[:8] == PNG_MAGIC
    plot.unlink()  # the run is shared with other tests


def test_target_without_latency_model_goes_on_without_ms(tiny_run, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    plot = tmp_path / "front.png"
    assert main(["pareto", str(tiny_run), "--classes", "1,2", "--steps", "1", "--target", "raspberry-pi",
                 "--plot", str(plot), "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert [p["ms"] for p in doc["points"]] == [None] and doc["target"] is None
    assert len(captured.err.strip().splitlines()) == 1 and "without ms" in captured.err


@pytest.mark.parametrize("classes", ["0,10", "3,3", "a"])
def test_bad_classes_is_one_line(tiny_run, capsys, classes: str) -> None:  # type: ignore[no-untyped-def]
    assert main(["pareto", str(tiny_run), "--classes", classes, "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge_eas pareto: error:")


def test_missing_run_and_missing_generator_are_one_line(tiny_run, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["pareto", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("run.json", "supernet.safetensors"):
        (bare / name).write_bytes((tiny_run / name).read_bytes())
    assert main(["pareto", str(bare), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "generator" in err[0]


def test_budget_ladder() -> None:
    ladder = budget_ladder(1.0, 8.0, 4)
    assert ladder[0] == pytest.approx(1.001) and ladder[-1] == pytest.approx(8.0)
    assert ladder[1] / ladder[0] == pytest.approx(ladder[2] / ladder[1])
    assert budget_ladder(1.0, 8.0, 1) == [8.0]
    with pytest.raises(ValueError):
        budget_ladder(1.0, 8.0, 0)


def test_is_rising() -> None:
    assert is_rising([_point(1, 0.80), _point(2, 0.90), _point(4, 0.95)])
    assert is_rising([_point(1, 0.90), _point(2, 0.90)])  # flat is not falling
    assert is_rising([_point(4, 0.95), _point(1, 0.80), _point(2, 0.90)])  # ordered by budget, not by position
    assert not is_rising([_point(1, 0.90), _point(2, 0.80)])
    # within the slack (0.2 pp by default) a dip is noise; beyond it, not
    assert is_rising([_point(1, 0.900), _point(2, 0.899)])
    assert not is_rising([_point(1, 0.900), _point(2, 0.895)])
    assert is_rising([_point(1, 0.900), _point(2, 0.895)], slack_pp=1.0)
    # measured against the best smaller budget, not only the previous one: a slow slide is caught
    assert not is_rising([_point(1, 0.900), _point(2, 0.8985), _point(3, 0.897)])
    assert is_rising([])


def test_span_pp() -> None:
    assert span_pp([_point(1, 0.80), _point(2, 0.95)]) == pytest.approx(15.0)
    assert span_pp([]) == 0.0


def test_library_front_with_latency_scores_each_arch_once(tiny_run, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from edge_eas.cost.calibration import prior_model
    from edge_eas.host.evaluate import TaskEvaluator
    from edge_eas.host.pareto import pareto_front
    from edge_eas.host.rundir import RunDir

    scored = []
    accuracy = TaskEvaluator.accuracy

    def counting(self, arch, task, recalibrate=True):  # type: ignore[no-untyped-def]
        scored.append(arch)
        return accuracy(self, arch, task, recalibrate)

    monkeypatch.setattr(TaskEvaluator, "accuracy", counting)
    latency = prior_model("raspberry-pi", "numpy", 1)
    points = pareto_front(RunDir(tiny_run), [0, 6], steps=4, latency=latency, progress=False)
    assert len(points) == 4
    assert len(scored) == len(set(scored)) == len({p.arch for p in points})  # a repeated pick is scored once
    for p in points:
        assert p.ms is not None and p.ms > 0
        assert p.ms == pytest.approx(latency.predict(RunDir(tiny_run).space(), p.arch))


def test_untrained_run_is_refused_in_one_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from edge_eas.host.untrained import init_run
    from edge_eas.net.space import SearchSpace

    init_run(SearchSpace.preset("digits"), tmp_path / "untrained", num_classes=10)
    assert main(["pareto", str(tmp_path / "untrained")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "untrained" in err[0]
