"""IDX / Fashion-MNIST files, image folders as users really lay them out, class groups and the
augmentation choice. Fixtures are tiny real files in the exact on-disk formats, written here."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_eas.data import load_dataset, read_idx
from edge_eas.data import idx as idx_source
from edge_eas.errors import UserError

from .test_data import make_cifar100


def write_idx(path: Path, array: np.ndarray) -> Path:
    """The IDX format byte for byte: 0, 0, type code, ndim, big-endian dims, big-endian data."""
    code = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}[array.dtype]
    blob = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    blob += array.tobytes()
    path.write_bytes(gzip.compress(blob) if path.suffix == ".gz" else blob)
    return path


def make_idx_dir(root: Path, n_train: int = 60, n_test: int = 20, classes: int = 10, side: int = 28,
                 gz: bool = True, test_prefix: str = "t10k") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    for prefix, n in (("train", n_train), (test_prefix, n_test)):
        write_idx(root / f"{prefix}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, side, side), dtype=np.uint8))
        write_idx(root / f"{prefix}-labels-idx1-ubyte{ext}", (np.arange(n) % classes).astype(np.uint8))
    return root


# --------------------------------------------------------------------------- IDX and Fashion-MNIST
def test_idx_reader_round_trips_and_refuses_garbage(tmp_path: Path) -> None:
    a = np.arange(24, dtype=">i4").reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a.idx", a)), a)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(UserError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    blob = (tmp_path / "a.idx").read_bytes()
    (tmp_path / "short").write_bytes(blob[:-4])
    with pytest.raises(UserError, match="does not match"):
        read_idx(tmp_path / "short")


def test_idx_train_and_test_pairs_keep_the_official_split(tmp_path: Path) -> None:
    root = make_idx_dir(tmp_path / "mnistlike", n_train=100, n_test=30, classes=5, side=20, gz=False,
                        test_prefix="test")
    d = load_dataset(f"idx:{root}")
    assert d.name == "idx:mnistlike" and d.class_names == [str(i) for i in range(5)]
    assert len(d.y_test) == 30 and len(d.y_train) + len(d.y_val) == 100 and len(d.y_val) == 10
    assert d.x_train.shape[1:] == (1, 20, 20) and d.preprocess.resolution == 20
    assert not d.flip and d.crop_padding == 2  # digits-like data: no flips unless asked


def test_idx_single_pair_is_split_70_10_20(tmp_path: Path) -> None:
    root = tmp_path / "one"
    root.mkdir()
    rng = np.random.default_rng(1)
    write_idx(root / "images-idx3-ubyte", rng.integers(0, 256, (50, 12, 12), dtype=np.uint8))
    write_idx(root / "labels-idx1-ubyte", (np.arange(50) % 2).astype(np.uint8))
    d = load_dataset(f"idx:{root}")
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (35, 5, 10)


def test_idx_errors_are_one_line_and_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no IDX image/label pair"):
        load_dataset(f"idx:{tmp_path}")
    root = make_idx_dir(tmp_path / "x", n_train=10, n_test=5)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))  # 4 labels for 5 images
    with pytest.raises(UserError, match="t10k-labels.*expected 5 integer labels"):
        load_dataset(f"idx:{root}")


def test_fashion_from_a_directory_has_names_groups_and_flips(tmp_path: Path) -> None:
    root = make_idx_dir(tmp_path / "fm", n_train=200, n_test=50)
    d = load_dataset(f"fashion-mnist:{root}")
    assert d.name == "fashion-mnist" and d.class_names[0] == "T-shirt/top" and d.class_names[9] == "Ankle boot"
    assert d.class_groups == {"tops": (0, 2, 4, 6), "footwear": (5, 7, 9), "other": (1, 3, 8)}
    assert len(d.y_test) == 50 and len(d.y_val) == 20 and d.flip
    assert not set(d.y_val.tolist()) - set(range(10)) and len(np.unique(d.y_val)) == 10  # stratified


def test_missing_fashion_package_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(idx_source, "FASHION_DIR", tmp_path / "not-installed")
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


def test_debian_fashion_mnist_package() -> None:
    if not idx_source.FASHION_DIR.is_dir():
        if os.environ.get("CI"):  # tests/run.sh installs it: missing in CI is a broken set-up, not a skip
            pytest.fail("dataset-fashion-mnist is not installed")
        pytest.skip("dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)")
    d = load_dataset("fashion-mnist")
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (54000, 6000, 10000)
    assert d.x_test.shape[1:] == (1, 28, 28) and np.bincount(d.y_test).tolist() == [1000] * 10


# --------------------------------------------------------------------------- folders as users lay them out
def _grey_pngs(root: Path, classes: tuple[str, ...], per_class: int, side: int = 28) -> None:
    rng = np.random.default_rng(4)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(root / c / f"{i}.png")


def test_grey_folder_at_28px_keeps_its_size_and_channel_and_the_space_follows(tmp_path: Path) -> None:
    from edge_eas.host.space_rule import space_for
    _grey_pngs(tmp_path / "digits28", tuple("0123"), 10)
    d = load_dataset(f"folder:{tmp_path / 'digits28'}")
    assert d.x_train.shape[1:] == (1, 28, 28) and not d.flip
    space = space_for(d, None)
    assert (space.name, space.in_channels, space.resolution) == ("fashion", 1, 28)
    forced = space_for(d, "digits")  # --space picks the layout; size and channels still follow the data
    assert (forced.name, forced.in_channels, forced.resolution) == ("digits", 1, 28)


def test_train_and_test_folders_are_the_split(tmp_path: Path) -> None:
    _grey_pngs(tmp_path / "ds" / "train", ("cat", "dog"), 20, side=16)
    _grey_pngs(tmp_path / "ds" / "test", ("cat", "dog"), 5, side=16)
    d = load_dataset(f"folder:{tmp_path / 'ds'}")
    assert d.class_names == ["cat", "dog"] and len(d.y_test) == 10
    assert len(d.y_train) + len(d.y_val) == 40 and len(d.y_val) == 4


@pytest.mark.parametrize("layout,match", [
    (("training", "validation"), "looks like split folders"),
    (("train", "valid"), "looks like split folders"),
])
def test_split_looking_layout_is_a_clear_error(tmp_path: Path, layout: tuple[str, ...], match: str) -> None:
    for split in layout:
        _grey_pngs(tmp_path / "ds" / split, ("a", "b"), 2, side=8)
    with pytest.raises(UserError, match=match):
        load_dataset(f"folder:{tmp_path / 'ds'}")


def test_nested_folders_are_not_classes(tmp_path: Path) -> None:
    _grey_pngs(tmp_path / "ds" / "animals", ("cat", "dog"), 2, side=8)
    _grey_pngs(tmp_path / "ds" / "plants", ("fern", "moss"), 2, side=8)
    with pytest.raises(UserError, match="holds folders .* not images"):
        load_dataset(f"folder:{tmp_path / 'ds'}")


def test_augment_flag_replaces_the_default(tmp_path: Path) -> None:
    _grey_pngs(tmp_path / "ds", ("a", "b"), 5, side=16)
    d = load_dataset(f"folder:{tmp_path / 'ds'}", augment="flip,crop")
    assert d.flip and d.crop_padding == 2
    d = load_dataset(f"folder:{tmp_path / 'ds'}", augment="none")
    assert not d.flip and d.crop_padding == 0
    with pytest.raises(UserError, match="unknown augmentation 'rotate'"):
        load_dataset(f"folder:{tmp_path / 'ds'}", augment="flip,rotate")


def test_cifar100_coarse_labels_become_class_groups(tmp_path: Path) -> None:
    root = make_cifar100(tmp_path)
    d = load_dataset(f"cifar100:{root}")
    assert len(d.class_groups) == 20 and d.class_groups["s0"] == tuple(range(0, 100, 20))
    assert sorted(c for g in d.class_groups.values() for c in g) == list(range(100))
