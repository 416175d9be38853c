"""The on-device API end to end on a real bundle: specialise, predict, benchmark, errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_eas.rundir import RunDir, load_supernet
from edge_eas.runtime import EngineUnavailable, Runtime
from edge_eas.runtime.engines import available_engines
from edge_eas.runtime.timing import MIN_WINDOW_S
from edge_eas.runtime.recalibrate import recalibrate
from edge_eas.runtime.slicing import slice_subnet
from edge_eas.space import SearchSpace
from edge_eas.supernet import Supernet, recalibrate_bn


def test_numpy_slicing_equals_torch_extraction() -> None:
    space = SearchSpace.preset("cifar")
    net = Supernet(space, 10)
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    rng = np.random.default_rng(0)
    for _ in range(5):
        arch = space.sample(rng)
        ref = net.extract_weights(arch, [1, 3])
        got = slice_subnet(state, space, arch, [1, 3])
        assert ref.keys() == got.keys() and all(np.array_equal(ref[k], got[k]) for k in ref)


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


def test_missing_engine_names_the_package(tiny_bundle: Path) -> None:
    rt = Runtime.load(tiny_bundle)
    for name in ("tflite", "executorch", "torch"):
        if name not in available_engines():
            with pytest.raises(EngineUnavailable, match="pip install"):
                rt.specialize(classes=[1, 2], budget_mflops=1.0, engine=name)


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

    from edge_eas.runtime.agent_output import AgentOutput
    buf = io.StringIO()
    with AgentOutput(buf, heartbeat_s=0.001) as out:
        workers = [threading.Thread(target=lambda i=i: [out.emit({"type": "x", "i": i, "pad": "y" * 500})
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
    assert sum(e["type"] == "x" for e in lines) == 800
    assert lines[0]["type"] == "heartbeat" and any(e.get("phase") == "idle" for e in lines)
