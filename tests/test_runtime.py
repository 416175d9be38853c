"""The on-device API end to end on a real bundle: specialise, predict, benchmark, errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_eas.net.arch import Arch
from edge_eas.host.rundir import RunDir, load_supernet
from edge_eas.runtime import Runtime
from edge_eas.runtime.engines import available_engines
from edge_eas.runtime.timing import MIN_WINDOW_S
from edge_eas.runtime.recalibrate import recalibrate
from edge_eas.net.slicing import slice_subnet
from edge_eas.net.space import SearchSpace
from edge_eas.net.subnet import conv_layers, subnet_layers, weight_names
from edge_eas.supernet import Supernet, recalibrate_bn


def test_slicing_yields_exactly_the_described_weights_and_fills_missing_bn_statistics() -> None:
    """A bundle carries the supernet without its BN running statistics; the device's slice of
    it must hold every tensor the sub-network description names, in its shape, and nothing else."""
    space = SearchSpace.preset("cifar")
    state = {k: v.numpy() for k, v in Supernet(space, 10).state_dict().items() if "running" not in k}
    rng = np.random.default_rng(0)
    for arch in (space.smallest(), space.largest(), *(space.sample(rng) for _ in range(3))):
        got = slice_subnet(state, space, arch, [1, 3])
        layers = subnet_layers(space, arch)
        assert sorted(got) == sorted(weight_names(layers))
        for conv in conv_layers(layers):
            assert got[conv.weight_name].shape == conv.weight_shape, conv.name
            assert np.array_equal(got[conv.bn_name("running_var")], np.ones(conv.out_channels, np.float32))
            assert np.array_equal(got[conv.bn_name("running_mean")], np.zeros(conv.out_channels, np.float32))
        assert np.array_equal(got["classifier.weight"], state["classifier.weight"][[1, 3]])


def test_numpy_recalibration_equals_torch() -> None:
    space = SearchSpace.preset("digits")
    net = Supernet(space, 10).eval()
    x = np.random.default_rng(1).normal(size=(64, *space.input_shape)).astype(np.float32)
    for arch in (space.smallest(), space.largest(), space.sample(np.random.default_rng(2))):
        sub = net.extract(arch)
        recalibrate_bn(sub, [torch.from_numpy(x)])
        ref = {k: v.numpy() for k, v in sub.state_dict().items() if "running" in k}
        got = recalibrate(net.extract_weights(arch), space, arch, x)
        for k in ref:
            assert np.allclose(ref[k], got[k], rtol=1e-4, atol=1e-6), k


def test_specialize_predict_and_match_host(tiny_run: Path, tiny_bundle: Path, digits_uint8) -> None:  # type: ignore[no-untyped-def]
    x, y = digits_uint8
    rt = Runtime.load(tiny_bundle)
    assert rt.classes == [str(i) for i in range(10)] and rt.space.name == "digits"
    m = rt.specialize(classes=[3, 5, 7], budget_mflops=1.0, engine="numpy")
    assert m.mflops <= 1.0 and m.classes == (3, 5, 7)
    sel = np.isin(y, [3, 5, 7])
    probs = m.predict(x[sel])
    assert probs.shape == (int(sel.sum()), 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (m.predict_classes(x[sel]) == y[sel]).mean() > 0.8
    # same arch, same weights on the host (torch, fp32 run) after recalibrating on the same images
    net, meta = load_supernet(RunDir(tiny_run))
    sub = net.extract(m.arch, classes=[3, 5, 7])
    imgs, _ = rt.bundle.calibration()
    recalibrate_bn(sub, [torch.from_numpy(rt.preprocess(imgs))])
    with torch.no_grad():
        host = torch.softmax(sub.eval()(torch.from_numpy(rt.preprocess(x[sel][:20]))), 1).numpy()
    assert np.abs(host - probs[:20]).max() < 0.05  # int8 weights on the device


def test_benchmark_protocol(tiny_bundle: Path) -> None:
    m = Runtime.load(tiny_bundle).specialize(classes=[0, 1], budget_mflops=0.5, engine="numpy")
    stats = m.benchmark(warmup=3, runs=30)
    # at least `runs` samples, spread over the protocol's window (runtime/timing.py)
    assert stats["runs"] >= 30 and stats["window_s"] >= 0.9 * MIN_WINDOW_S
    assert 0 < stats["latency_ms"] == stats["min_ms"] <= stats["median_ms"]
    assert stats["median_ms"] > 0 and stats["p90_ms"] >= stats["median_ms"]
    assert stats["environment"]["cores"] >= 1 and "numpy" in stats["environment"]["versions"]
    with pytest.raises(ValueError, match=">= 30"):
        m.benchmark(runs=10)


@pytest.mark.parametrize("kwargs, needle", [
    ({"classes": [1, 12], "budget_mflops": 1.0}, "out of range"),
    ({"classes": [1, 1], "budget_mflops": 1.0}, "more than once"),
    ({"classes": [], "budget_mflops": 1.0}, "empty"),
    ({"classes": [1, 2], "budget_mflops": 0.01}, "minimum feasible budget"),
    ({"classes": [1, 2]}, "exactly one budget"),
    ({"classes": [1, 2], "budget_ms": 1.0}, "no latency model"),
    ({"classes": [1, 2], "budget_mflops": 1.0, "engine": "cuda"}, "unknown engine"),
])
def test_clear_errors(tiny_bundle: Path, kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        Runtime.load(tiny_bundle).specialize(**kwargs)


HIDE_ENGINES = """
import sys
class HideEngines:  # as on a device without them: find_spec and import both fail
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "executorch", "ai_edge_litert", "tflite_runtime", "tensorflow",
                                    "onnxruntime"}:
            raise ImportError(name + " is not installed here")
sys.meta_path.insert(0, HideEngines())
"""


def test_missing_engine_names_the_package(tiny_bundle: Path) -> None:
    """Engine libraries are hidden in a subprocess, so this checks the message whether or not
    they are installed here (CI installs them all)."""
    code = HIDE_ENGINES + f"""
from edge_eas.runtime import Runtime
from edge_eas.runtime.engines import EngineUnavailable, available_engines
assert available_engines() == ["numpy"], available_engines()
rt = Runtime.load({str(tiny_bundle)!r})
for name in ("tflite", "executorch", "torch", "onnxruntime", "onnxruntime:cuda"):
    try:
        rt.specialize(classes=[1, 2], budget_mflops=1.0, engine=name)
    except EngineUnavailable as exc:
        print(name, "pip install" in str(exc))
    else:
        print(name, "built")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["tflite", "True", "executorch", "True", "torch", "True", "onnxruntime", "True",
                                  "onnxruntime:cuda", "True"]


@pytest.mark.parametrize("engine", ["numpy", "tflite", "torch"])
def test_engines_agree_on_a_specialised_model(tiny_bundle: Path, digits_uint8, engine: str) -> None:  # type: ignore[no-untyped-def]
    if engine not in available_engines():
        pytest.skip(f"{engine} is not installed in this environment")
    x, _ = digits_uint8
    rt = Runtime.load(tiny_bundle)
    ref = rt.specialize(classes=[2, 4, 6, 8], budget_mflops=2.0, engine="numpy")
    other = rt.specialize(classes=[2, 4, 6, 8], arch=ref.arch, engine=engine)
    assert np.abs(ref.logits(x[:16]) - other.logits(x[:16])).max() < 1e-4


def test_runtime_import_does_not_import_torch() -> None:
    code = ("import sys; import edge_eas.runtime, edge_eas.generator; "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_agent_output_lines_stay_whole_under_concurrent_heartbeats() -> None:
    import io
    import json
    import threading
    import time

    from edge_eas.runtime.agent.output import AgentOutput
    from edge_eas.runtime.agent.messages import ScenarioError
    buf = io.StringIO()
    with AgentOutput(buf, heartbeat_s=0.001) as out:
        workers = [threading.Thread(target=lambda i=i: [out.emit(ScenarioError(str(i), "y" * 500))
                                                          for _ in range(200)]) for i in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        out.phase("idle")
        deadline = time.monotonic() + 30
        while '"phase":"idle"' not in buf.getvalue():  # nothing else writes now: a heartbeat must come
            assert time.monotonic() < deadline
            threading.Event().wait(0.001)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert sum(e["type"] == "error" for e in lines) == 800
    assert lines[0]["type"] == "heartbeat" and any(e.get("phase") == "idle" for e in lines)


def test_agent_messages_round_trip_and_tolerate_chatter_and_new_fields() -> None:
    from edge_eas.runtime.agent.messages import Done, Heartbeat, ScenarioError, parse_line, to_line
    for msg in (ScenarioError("3", "ValueError: no"), Done(2), Heartbeat("loading", 0.5)):
        assert parse_line(to_line(msg)) == msg
    assert parse_line("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.") is None
    assert parse_line('{"type": "from-a-newer-agent", "x": 1}') is None
    assert parse_line('{"type": "done", "failed": 0, "added_later": true}') == Done(0)
    with pytest.raises(ValueError, match="'error' line is incomplete"):
        parse_line('{"type": "error", "scenario": "1"}')


def test_block_profile_times_every_config_beside_its_baseline(tiny_bundle: Path) -> None:
    from edge_eas.cost.latency import block_key
    from edge_eas.runtime.agent.profile import CONFIGS_PER_GROUP, distinct_blocks, fit_probes, fixed_probes, profile_blocks
    from edge_eas.runtime.timing import SpeedReference
    rt = Runtime.load(tiny_bundle)
    engine = "tflite" if "tflite" in available_engines() else "numpy"  # the same protocol; tflite is quicker
    rows = list(profile_blocks(rt, engine=engine, threads=1, warmup=1, runs=30))
    assert [r.block_key for r in rows] == [block_key(c) for c in distinct_blocks(rt.space)] + ["fixed"]
    for r in rows[:-1]:
        assert r.with_block_ms is not None and r.without_block_ms is not None and r.reference_ms is not None
        assert r.median_ms == max(0.0, r.with_block_ms - r.without_block_ms)
        assert 1 <= (r.group_attempts or 0) <= SpeedReference.max_attempts
    # configs sharing an input were timed CONFIGS_PER_GROUP at a time, each group beside its baseline
    baselines: dict[str, list[float]] = {}
    for r in rows[:-1]:
        key = r.block_key.split("-o")[0] + r.block_key.split("-s")[1][1:]  # input channels and size
        baselines.setdefault(key, []).append(r.without_block_ms)
    for times in baselines.values():
        assert len(set(times)) == -(-len(times) // CONFIGS_PER_GROUP)
    # the fixed term and the entries' scale: fitted to the probe archs, none pinned
    fixed = rows[-1]
    probes = [Arch.from_dict(a) for a in fixed.probe_archs or []]
    assert probes == fixed_probes(rt.space) and rt.space.smallest() in probes and rt.space.largest() in probes
    entries = {r.block_key: r.median_ms for r in rows[:-1]}
    sums = [sum(entries[block_key(c)] for c in rt.space.active_blocks(a)) for a in probes]
    assert (fixed.median_ms, fixed.entry_scale) == pytest.approx(fit_probes(sums, fixed.probe_ms or []))
    assert fixed.median_ms >= 0 and (fixed.entry_scale or 0) > 0
    residual = [ms - fixed.median_ms - (fixed.entry_scale or 0) * x for x, ms in zip(sums, fixed.probe_ms or [])]
    assert residual == pytest.approx(fixed.probe_residual_ms)
