"""Host side of the torch-free device tests: train a tiny digits run and export bundles that
tests/device/ then load in a virtual environment without torch.

    python -m tests.device.make_bundle OUT_DIR
"""

import sys
from pathlib import Path

import numpy as np

from edge_eas.host.bundle import export_bundle
from edge_eas.host.generator_train import GeneratorConfig, train_generator
from edge_eas.host.rundir import RunDir
from edge_eas.format.signing import generate_keypair
from edge_eas.host.train import TrainConfig, train_supernet


HELD_OUT = (3, 8)     # digits the held-out run never sees (chosen before any result: 3 and 8 look alike)
HELD_OUT_EPOCHS = 10  # 3 epochs leave features too weak for any head to beat raw pixels on 8x8 digits


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    run = out / "run"
    if not (run / "generator.safetensors").is_file():
        train_supernet(TrainConfig(epochs=3, train_generator=False), run, resume=(run / "checkpoint/state.json").is_file())
        train_generator(RunDir(run), GeneratorConfig(steps=30, scenarios_per_step=4, images_per_scenario=32))
    if not (out / "key").exists():
        generate_keypair(out / "key")
    export_bundle(run, out / "model.eas", sign_key=out / "key")
    # a supernet that never saw two digits, for the adapted-head test (tests/device/test_own_classes.py)
    held = out / "held-out-run"
    if not (held / "generator.safetensors").is_file():
        train_supernet(TrainConfig(epochs=HELD_OUT_EPOCHS, train_generator=False, hold_out_classes=HELD_OUT), held)
        train_generator(RunDir(held), GeneratorConfig(steps=30, scenarios_per_step=4, images_per_scenario=32))
    export_bundle(held, out / "held-out.eas")
    # host reference logits for a fixed arch, so the device test can check agreement
    from sklearn.datasets import load_digits
    d = load_digits()
    np.savez(out / "digits.npz", x=np.round(d.images * 255 / 16).astype(np.uint8)[:, None], y=d.target)
    print(out / "model.eas")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
