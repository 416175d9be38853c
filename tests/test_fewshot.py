"""Your own classes: task heads fitted from examples (runtime/head_fit.py, examples.py, adapt.py),
saved beside the bundle, reloaded, exported; and every bad input answered in one line with
nothing on the device lost. The held-out-classes acceptance runs torch-free in tests/device."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_eas.data import load_dataset
from edge_eas.runtime import Runtime
from edge_eas.runtime.head_fit import HeadFitConfig, fit_head, start_head

CLI = [sys.executable, "-m", "edge_eas.cli"]


def _shots(digits_uint8, classes: dict, k: int = 10, seed: int = 0) -> dict:  # type: ignore[no-untyped-def]
    x, y = digits_uint8
    rng = np.random.default_rng(seed)
    return {label: x[rng.permutation(np.where(y == c)[0])[:k]] for label, c in classes.items()}


def _write_folder(root: Path, shots: dict) -> Path:  # type: ignore[type-arg]
    from PIL import Image
    for label, images in shots.items():
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        for i, im in enumerate(images):
            Image.fromarray(im[0]).save(root / str(label) / f"{i}.png")
    return root


# ---- the fit ------------------------------------------------------------------------------------

def test_fit_reaches_the_optimum_of_its_objective_and_a_strong_pull_keeps_the_start() -> None:
    rng = np.random.default_rng(0)
    f = np.abs(rng.normal(size=(40, 16)))
    y = np.repeat(np.arange(4), 10)
    f[np.arange(40), y] += 2.0  # separable-ish
    w0, b0 = start_head(f, y, rng.normal(size=(6, 16)), np.zeros(6), [None, 2, None, 5])
    cfg = HeadFitConfig(pull=1e-3, steps=600)
    head = fit_head(f, y, w0, b0, cfg)
    # the gradient of the objective at the answer is ~0 (module docstring's objective)
    w, b = head.weight.astype(np.float64), head.bias.astype(np.float64)
    z = f @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(40), y] -= 1
    s2 = np.mean((f * f).sum(1))
    gw = p.T @ f / 40 + cfg.pull * s2 * (w - w0)
    assert np.abs(gw).max() < 1e-4
    assert head.train_accuracy == 1.0 and head.loss < 0.5
    kept = fit_head(f, y, w0, b0, HeadFitConfig(pull=1e6))
    assert np.abs(kept.weight - w0).max() < 1e-3
    # the known rows start as the shared rows; imprinted rows share one norm
    assert np.allclose(w0[1], start_head(f, y, w0[[0, 1, 2, 3, 0, 1]], np.zeros(6), [None, 1, None, 3])[0][1])
    norms = np.linalg.norm(w0[[0, 2]], axis=1)
    assert np.allclose(norms, norms[0])


# ---- the runtime: adapt, save, restart, export ---------------------------------------------------

def test_adapted_head_is_saved_reloaded_after_a_restart_and_exported_as_the_runtime_runs_it(
        tiny_bundle: Path, digits_uint8, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "model.eas"
    bundle.write_bytes(tiny_bundle.read_bytes())
    x, y = digits_uint8
    rt = Runtime.load(bundle)
    # two known classes (an id and a name) and one new name for digit 7's images
    shots = {0: _shots(digits_uint8, {0: 0})[0], "6": _shots(digits_uint8, {6: 6})[6],
             "lucky": _shots(digits_uint8, {7: 7})[7]}
    m = rt.specialize(budget="mflops=1.0", examples=shots, engine="numpy")
    assert m.class_names == ["0", "6", "lucky"] and m.classes == (0, 6, -1)
    assert m.head_path == tmp_path / "model.heads" / "0-6-lucky.safetensors" and m.head_path.is_file()
    assert m.head.task_classes == tuple(range(10))  # the "all" rule: a new label gets the all-class vector
    sel = np.isin(y, [0, 6, 7])
    truth = np.asarray(["0", "6", "lucky"])[np.searchsorted([0, 6, 7], y[sel])]
    assert np.mean(np.asarray(m.predict_labels(x[sel])) == truth) > 0.8
    with pytest.raises(ValueError, match="new classes"):
        m.predict_classes(x[:2])
    # a restart: a fresh process loads it by name and answers exactly as before
    code = ("import sys, numpy as np; from edge_eas.runtime import Runtime; rt = Runtime.load(sys.argv[1]); "
            "m = rt.load_head('0-6-lucky', engine='numpy'); print(rt.heads()); "
            "np.save(sys.argv[2], m.predict(np.load(sys.argv[3])))")
    np.save(tmp_path / "x.npy", x[sel])
    res = subprocess.run([sys.executable, "-c", code, str(bundle), str(tmp_path / "p.npy"), str(tmp_path / "x.npy")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "0-6-lucky" in res.stdout
    assert np.abs(np.load(tmp_path / "p.npy") - m.predict(x[sel])).max() < 1e-6
    # export-subnet --head: a plain LiteRT app gets the runtime's answers and the new label
    out = tmp_path / "mine.tflite"
    res = subprocess.run([*CLI, "export-subnet", str(bundle), "--head", str(m.head_path), "--format", "tflite",
                          "--out", str(out), "--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["labels"] == ["0", "6", "lucky"] and doc["class_ids"] == [0, 6, None]
    from ai_edge_litert.interpreter import Interpreter
    runner = Interpreter(model_path=str(out)).get_signature_runner()
    probs = np.concatenate([runner(image=im[None].transpose(0, 2, 3, 1))["probabilities"] for im in x[sel]])
    assert np.array_equal(probs.argmax(1), m.predict(x[sel]).argmax(1))
    assert np.abs(probs - m.predict(x[sel])).max() < 1e-4


def test_specialize_examples_on_the_cli_saves_the_head_and_says_where(tiny_bundle: Path, digits_uint8,
                                                                      tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "model.eas"
    bundle.write_bytes(tiny_bundle.read_bytes())
    folder = _write_folder(tmp_path / "mine", _shots(digits_uint8, {"a-seven": 7, "1": 1}))
    res = subprocess.run([*CLI, "specialize", str(bundle), "--examples", str(folder), "--budget", "mflops=1",
                          "--head-name", "mine", "--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["labels"] == ["1", "a-seven"] and doc["head"]["class_ids"] == [1, None]
    assert Path(doc["head"]["path"]) == tmp_path / "model.heads" / "mine.safetensors"
    assert doc["head"]["fit"]["train_accuracy"] >= doc["head"]["fit"]["start_accuracy"]
    res = subprocess.run([*CLI, "specialize", str(tiny_bundle.parent), "--examples", str(folder), "--budget",
                          "mflops=1"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "export one first" in res.stderr


# ---- bad input: one line each, nothing lost -----------------------------------------------------

def _bad_folders(root: Path, digits_uint8) -> dict[str, tuple[Path, str]]:  # type: ignore[no-untyped-def]
    from PIL import Image
    shots = _shots(digits_uint8, {"a": 1, "b": 2}, k=3)
    cases = {}
    one = _write_folder(root / "one", {"a": shots["a"][:1], "b": shots["b"]})
    cases["one image"] = (one, "label 'a' has 1 example: give at least 2")
    rgb = _write_folder(root / "rgb", shots)
    Image.new("RGB", (8, 8), (200, 10, 10)).save(rgb / "a" / "colour.png")
    cases["channels"] = (rgb, "is a colour image but the network takes grey")
    wide = _write_folder(root / "wide", shots)
    Image.new("L", (16, 8)).save(wide / "b" / "wide.png")
    cases["size"] = (wide, "an image is 8x16; examples must be square")
    corrupt = _write_folder(root / "corrupt", shots)
    (corrupt / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    cases["corrupt"] = (corrupt, "cannot read image")
    empty = _write_folder(root / "empty", shots)
    (empty / "c").mkdir()
    cases["empty folder"] = (empty, "label folder .*/c has no images")
    many = root / "many"
    for i in range(500):
        (many / f"class{i}").mkdir(parents=True)
    cases["500 classes"] = (many, "500 labels: a task head fitted on the device takes at most 64")
    nothing = root / "nothing"
    nothing.mkdir()
    cases["no label folders"] = (nothing, "has no label folders")
    return cases


def test_every_bad_input_gets_one_line_and_the_saved_head_survives(tiny_bundle: Path, digits_uint8,
                                                                    tmp_path: Path, env) -> None:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "model.eas"
    bundle.write_bytes(tiny_bundle.read_bytes())
    rt = Runtime.load(bundle)
    good = rt.specialize(budget="mflops=1", examples=_shots(digits_uint8, {"a": 1, "b": 2}), engine="numpy")
    saved = good.head_path.read_bytes()
    for name, (folder, message) in _bad_folders(tmp_path / "bad", digits_uint8).items():
        with pytest.raises(ValueError, match=message):
            rt.specialize(budget="mflops=1", examples=folder, engine="numpy")
        res = subprocess.run([*CLI, "specialize", str(bundle), "--examples", str(folder), "--budget", "mflops=1"],
                             capture_output=True, text=True, timeout=300, env=env)
        assert res.returncode == 2, (name, res.stderr)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in res.stderr, (name, res.stderr)
        assert good.head_path.read_bytes() == saved, name
    # arrays: wrong channels, a class id the bundle lacks, two labels for one class, no budget
    x = _shots(digits_uint8, {"a": 1, "b": 2})
    for examples, message in (({"a": np.repeat(x["a"], 3, axis=1), "b": x["b"]}, r"3 channel\(s\), the network takes 1"),
                              ({12: x["a"], "b": x["b"]}, "12 is not a class id"),
                              ({1: x["a"], "1": x["b"]}, "names the same class"),
                              ({"a": x["a"]}, "only one label")):
        with pytest.raises(ValueError, match=message):
            rt.specialize(budget="mflops=1", examples=examples, engine="numpy")
    with pytest.raises(ValueError, match="give exactly one budget"):
        rt.specialize(examples=x, engine="numpy")
    with pytest.raises(ValueError, match="accuracy target needs classes the bundle knows"):
        rt.specialize(min_accuracy=0.9, examples=x, engine="numpy")
    assert good.head_path.read_bytes() == saved
    assert rt.heads() == [good.head.name]


def test_a_head_fitted_on_another_bundle_is_refused(tiny_bundle: Path, digits_uint8, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from edge_eas.runtime.adapted_head import AdaptedHead
    bundle = tmp_path / "model.eas"
    bundle.write_bytes(tiny_bundle.read_bytes())
    rt = Runtime.load(bundle)
    m = rt.specialize(budget="mflops=1", examples=_shots(digits_uint8, {"a": 1, "b": 2}), engine="numpy",
                      head_name="ab")
    assert rt.load_head(m.head_path).class_names == ["a", "b"]
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(replace(AdaptedHead.from_bytes(m.head_path.read_bytes()), bundle_sha256="0" * 64).to_bytes())
    with pytest.raises(ValueError, match="was fitted on bundle 000000000000, not on this one"):
        rt.load_head(foreign)
    with pytest.raises(ValueError, match="no adapted head 'nope' .*saved: ab"):
        rt.load_head("nope")


def test_hold_out_classes_removes_them_from_every_split_and_renumbers_the_rest() -> None:
    full = load_dataset("digits", seed=0)
    held = load_dataset("digits", seed=0, hold_out=(3, 8))
    assert held.class_names == [c for i, c in enumerate(full.class_names) if i not in (3, 8)]
    for split in ("train", "val", "test"):
        xf, yf = full.split(split)
        xh, yh = held.split(split)
        keep = ~np.isin(yf, [3, 8])
        assert np.array_equal(xh, xf[keep])
        assert np.array_equal(np.asarray(held.class_names)[yh], np.asarray(full.class_names)[yf[keep]])
    assert held.preprocess.mean != full.preprocess.mean
