"""Training end to end on the real digits data: resume after a kill, torchrun with 2 processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_eas.host.checkpoint import load_tensors

pytestmark = pytest.mark.slow  # trains models / builds and boots a device (see pyproject markers)

CLI = [sys.executable, "-m", "edge_eas.cli"]


def _state(run: Path) -> dict:
    return json.loads((run / "checkpoint" / "state.json").read_text())


def test_kill_mid_training_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [*CLI, "train", "--data", "digits", "--out", str(run), "--epochs", "4", "--no-generator"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            state = run / "checkpoint" / "state.json"
            if state.is_file() and _state(run)["epoch"] >= 1:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        else:
            pytest.fail("no checkpoint within the deadline")
        # the first epoch's checkpoint is complete (state.json is written last): kill at once, so the
        # process dies inside epoch 2 on any machine, however fast or slow
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = _state(run)["epoch"]
    assert 1 <= killed_at < 4 and not (run / "run.json").exists()

    refused = subprocess.run(args, capture_output=True, text=True)
    assert refused.returncode == 2 and "--resume" in refused.stderr

    done = subprocess.run([*args, "--resume", "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    meta = json.loads((run / "run.json").read_text())
    assert [h["epoch"] for h in meta["history"]] == [1, 2, 3, 4]

    # the same seed without the kill: resuming must restore weights, optimiser and RNG exactly
    ref = tmp_path / "ref"
    straight = subprocess.run([*CLI, "train", "--data", "digits", "--out", str(ref), "--epochs", "4",
                               "--no-generator", "--json"], capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr
    ref_meta = json.loads((ref / "run.json").read_text())
    resumed = load_tensors(run / "supernet.safetensors", meta["weights_sha256"])
    uninterrupted = load_tensors(ref / "supernet.safetensors", ref_meta["weights_sha256"])
    assert resumed.keys() == uninterrupted.keys()
    differ = [k for k in resumed if not np.array_equal(resumed[k], uninterrupted[k])]
    assert not differ, f"resumed weights differ from an uninterrupted run: {differ[:5]}"
    assert [h["loss"] for h in meta["history"]] == [h["loss"] for h in ref_meta["history"]]
    for part in ("optimizer", "rng"):  # the last checkpoint: optimiser moments and RNG streams
        assert ((run / "checkpoint" / f"{part}.safetensors").read_bytes()
                == (ref / "checkpoint" / f"{part}.safetensors").read_bytes()), part


def test_torchrun_two_processes(tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "edge_eas.cli", "train", "--data", "digits", "--out", str(run), "--epochs", "2",
                          "--no-generator"], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    meta = json.loads((run / "run.json").read_text())
    assert meta["throughput"]["world_size"] == 2
    assert meta["throughput"]["ranks_in_sync"] is True  # both ranks' parameter digests, gathered after training
    assert len(meta["history"]) == 2
    state = _state(run)
    assert state["epoch"] == 2
    weights = load_tensors(run / "supernet.safetensors", meta["weights_sha256"])
    assert "classifier.weight" in weights


def test_bad_data_spec_is_one_line_error(tmp_path: Path) -> None:
    out = subprocess.run([*CLI, "train", "--data", "cifar10:/no/such/dir", "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_train_on_a_grey_28px_folder_follows_the_data(tmp_path: Path) -> None:
    """A new user's folder of 28x28 grey PNGs in train/ and test/: 1 channel at 28 px (never the
    3-channel cifar stem, never shrunk to 8 px), no flips, the split folders as the split."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 4)):
        for c in ("zero", "one", "two"):
            (tmp_path / "ds" / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(tmp_path / "ds" / split / c / f"{i}.png")
    run = tmp_path / "run"
    out = subprocess.run([*CLI, "train", "--data", f"folder:{tmp_path / 'ds'}", "--out", str(run), "--epochs", "1",
                          "--batch-size", "8", "--no-generator", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    meta = json.loads((run / "run.json").read_text())
    assert (meta["space"]["name"], meta["space"]["in_channels"], meta["space"]["resolution"]) == ("fashion", 1, 28)
    assert meta["augmentation"] == {"flip": False, "crop_padding": 3}
    assert meta["splits"] == {"train": 32, "val": 4, "test": 12} and meta["class_groups"] == {}
