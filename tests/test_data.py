"""Datasets (digits, CIFAR pickles, image folders), Preprocess and augmentation.

CIFAR and folder fixtures are tiny real files in the exact on-disk formats, built in tmp_path.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_eas.data import Dataset, augment, iterate_batches, load_dataset
from edge_eas.errors import UserError
from edge_eas.net.preprocess import Preprocess, resize_bilinear

# --------------------------------------------------------------------------- fixtures


def _dump(path: Path, obj: object, legacy_numpy_path: bool = False) -> None:
    """Protocol-2 pickle like the original (Python 2) CIFAR files; optionally with the
    pre-numpy-2 module path ``numpy.core.multiarray`` those files reference."""
    blob = pickle.dumps(obj, protocol=2)
    if legacy_numpy_path:
        blob = blob.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    path.write_bytes(blob)


def _batch(rng: np.random.Generator, n: int, num_classes: int, label_key: bytes) -> dict:
    return {b"batch_label": b"fixture",
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            label_key: [int(i % num_classes) for i in range(n)],
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


def make_cifar10(parent: Path, per_batch: int = 20, legacy: bool = False) -> Path:
    root = parent / "cifar-10-batches-py"
    root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(1, 6):
        _dump(root / f"data_batch_{i}", _batch(rng, per_batch, 10, b"labels"), legacy)
    _dump(root / "test_batch", _batch(rng, per_batch, 10, b"labels"), legacy)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer",
             b"dog", b"frog", b"horse", b"ship", b"truck"]
    _dump(root / "batches.meta", {b"label_names": names, b"num_vis": 3072}, legacy)
    return root


def make_cifar100(parent: Path) -> Path:
    root = parent / "cifar-100-python"
    root.mkdir(parents=True)
    rng = np.random.default_rng(2)
    train = _batch(rng, 200, 100, b"fine_labels")
    train[b"coarse_labels"] = [i % 20 for i in range(200)]
    _dump(root / "train", train)
    _dump(root / "test", _batch(rng, 40, 100, b"fine_labels"))
    _dump(root / "meta", {b"fine_label_names": [f"c{i:02d}".encode() for i in range(100)],
                          b"coarse_label_names": [f"s{i}".encode() for i in range(20)]})
    return root


def make_folder(parent: Path, per_class: int = 5, modes: tuple[str, ...] = ("L",),
                classes: tuple[str, ...] = ("zebra", "apple"), size: tuple[int, int] = (12, 10)) -> Path:
    """Class folders of small images; ``modes`` cycles over images (e.g. ("L", "RGB"))."""
    root = parent / "imgs"
    rng = np.random.default_rng(3)
    k = 0
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            mode = modes[k % len(modes)]
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            img = Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8))
            img.save(root / c / f"{i}.{'PNG' if i % 2 else 'png'}")
            k += 1
    return root


# --------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def test_digits_shapes_and_splits(digits: Dataset) -> None:
    n = len(digits.y_train) + len(digits.y_val) + len(digits.y_test)
    assert n == 1797
    assert digits.x_train.shape[1:] == (1, 8, 8) and digits.x_train.dtype == np.uint8
    assert digits.y_train.dtype == np.int64
    assert abs(len(digits.y_train) / n - 0.7) < 0.01
    assert abs(len(digits.y_val) / n - 0.1) < 0.01
    assert abs(len(digits.y_test) / n - 0.2) < 0.01
    assert digits.class_names == [str(i) for i in range(10)] and digits.num_classes == 10
    assert digits.x_train.max() == 255 and digits.x_train.min() == 0
    assert not digits.flip and digits.crop_padding == 1
    assert digits.preprocess.channels == 1 and digits.preprocess.resolution == 8
    assert digits.preprocess.mean[0] == pytest.approx(digits.x_train.mean() / 255)
    assert digits.preprocess.std[0] == pytest.approx((digits.x_train / 255).std())
    x, y = digits.split("val")
    assert x is digits.x_val and y is digits.y_val
    with pytest.raises(ValueError):
        digits.split("holdout")


def test_digits_stratified(digits: Dataset) -> None:
    for name in ("train", "val", "test"):
        _, y = digits.split(name)
        counts = np.bincount(y, minlength=10)
        assert (counts > 0).all()
        # Stratified: every class close to a tenth of the split.
        assert counts.max() - counts.min() <= max(3, len(y) // 50)


def test_digits_deterministic_by_seed(digits: Dataset) -> None:
    again = load_dataset("digits", seed=0)
    np.testing.assert_array_equal(again.x_train, digits.x_train)
    np.testing.assert_array_equal(again.y_test, digits.y_test)
    other = load_dataset("digits", seed=1)
    assert not np.array_equal(other.y_test, digits.y_test)


def test_digits_resolution_only_changes_preprocess() -> None:
    d = load_dataset("digits", resolution=16)
    assert d.x_train.shape[1:] == (1, 8, 8)
    assert d.preprocess.resolution == 16
    assert d.preprocess(d.x_val[:3]).shape == (3, 1, 16, 16)


# --------------------------------------------------------------------------- CIFAR


def test_cifar10_loads_folder_and_parent(tmp_path: Path) -> None:
    root = make_cifar10(tmp_path)
    d = load_dataset(f"cifar10:{root}")
    assert d.name == "cifar10" and d.class_names[0] == "airplane" and d.num_classes == 10
    assert d.x_train.shape == (90, 3, 32, 32) and d.x_val.shape == (10, 3, 32, 32)
    assert d.x_test.shape == (20, 3, 32, 32) and d.x_train.dtype == np.uint8
    assert set(d.y_val.tolist()) == set(range(10))          # stratified 10 %
    assert d.flip and d.crop_padding == 4
    assert d.preprocess.channels == 3 and d.preprocess.resolution == 32
    # Row-major CHW pixel layout, and test = test_batch in order.
    with open(root / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    np.testing.assert_array_equal(d.x_test[3], raw[b"data"][3].reshape(3, 32, 32))
    np.testing.assert_array_equal(d.y_test, raw[b"labels"])
    for c in range(3):
        assert d.preprocess.mean[c] == pytest.approx(d.x_train[:, c].mean() / 255)
    from_parent = load_dataset(f"cifar10:{tmp_path}", resolution=64)
    np.testing.assert_array_equal(from_parent.x_train, d.x_train)
    assert from_parent.preprocess.resolution == 64


def test_cifar10_legacy_numpy_pickle_path(tmp_path: Path) -> None:
    root = make_cifar10(tmp_path, legacy=True)
    assert b"numpy.core.multiarray" in (root / "data_batch_1").read_bytes()
    assert load_dataset(f"cifar10:{root}").x_test.shape == (20, 3, 32, 32)


def test_cifar100_loads(tmp_path: Path) -> None:
    make_cifar100(tmp_path)
    d = load_dataset(f"cifar100:{tmp_path}", seed=5)
    assert d.name == "cifar100" and d.num_classes == 100 and d.class_names[7] == "c07"
    assert len(d.y_train) + len(d.y_val) == 200 and len(d.y_val) == 20
    assert d.x_test.shape == (40, 3, 32, 32)
    # 2 images per class is too few for sklearn's stratifier: fallback keeps every class in train.
    assert set(d.y_train.tolist()) == set(range(100))
    assert not set(d.y_val.tolist()) - set(range(100))


def test_cifar_missing_file_names_it(tmp_path: Path) -> None:
    root = make_cifar10(tmp_path)
    (root / "data_batch_3").unlink()
    with pytest.raises(UserError, match="data_batch_3"):
        load_dataset(f"cifar10:{tmp_path}")


def test_cifar_corrupt_pickle_names_file(tmp_path: Path) -> None:
    root = make_cifar10(tmp_path)
    (root / "data_batch_2").write_bytes(b"\x80\x02}q\x00garbage, not a pickle\xff" * 3)
    with pytest.raises(UserError, match="data_batch_2") as info:
        load_dataset(f"cifar10:{root}")
    assert "\n" not in str(info.value)


def test_cifar_wrong_shape_names_file(tmp_path: Path) -> None:
    root = make_cifar10(tmp_path)
    _dump(root / "test_batch", {b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 3]})
    with pytest.raises(UserError, match=r"test_batch.*\(N, 3072\)"):
        load_dataset(f"cifar10:{root}")


def test_cifar_pickle_with_code_is_refused(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (os.getcwd, ())
    root = make_cifar10(tmp_path)
    _dump(root / "batches.meta", {b"label_names": Payload()})
    with pytest.raises(UserError, match=r"batches\.meta.*refusing"):
        load_dataset(f"cifar10:{root}")


@pytest.mark.parametrize("spec, match", [
    ("mnist", "valid forms"),
    ("digits:foo", "valid forms"),
    ("cifar10:", "needs a directory"),
    ("cifar100:/nonexistent/dir/xyz", "not found"),
    ("folder:/nonexistent/dir/xyz", "not found"),
])
def test_bad_specs(spec: str, match: str) -> None:
    with pytest.raises(UserError, match=match):
        load_dataset(spec)


def test_bad_resolution() -> None:
    with pytest.raises(UserError, match="resolution"):
        load_dataset("digits", resolution=0)


# --------------------------------------------------------------------------- folders


def test_folder_grey(tmp_path: Path) -> None:
    root = make_folder(tmp_path, per_class=10)
    (root / "zebra" / "notes.txt").write_text("ignored")
    d = load_dataset(f"folder:{root}", resolution=16)
    assert d.name == "folder:imgs" and d.class_names == ["apple", "zebra"]
    assert d.x_train.shape[1:] == (1, 16, 16) and d.x_train.dtype == np.uint8
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 20
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (14, 2, 4)
    for name in ("train", "val", "test"):
        assert set(d.split(name)[1].tolist()) == {0, 1}
    assert not d.flip and d.crop_padding == 2 and d.preprocess.resolution == 16  # flips only when asked
    again = load_dataset(f"folder:{root}", resolution=16)
    np.testing.assert_array_equal(again.x_test, d.x_test)


def test_folder_rgb_when_any_image_has_colour(tmp_path: Path) -> None:
    root = make_folder(tmp_path, modes=("L", "L", "L", "RGB"))
    d = load_dataset(f"folder:{root}")
    assert d.x_train.shape[1:] == (3, 12, 12) and d.preprocess.channels == 3  # one shared size: kept (larger side)
    assert d.crop_padding == 1


def test_folder_resize_matches_pillow(tmp_path: Path) -> None:
    root = make_folder(tmp_path, per_class=1, modes=("RGB",), size=(20, 14))
    d = load_dataset(f"folder:{root}", resolution=8)
    img = Image.open(root / "apple" / "0.png").resize((8, 8), Image.Resampling.BILINEAR)
    expected = np.asarray(img).transpose(2, 0, 1)
    assert any(np.array_equal(x, expected) for x in d.x_train)


def test_folder_tiny_classes_fallback(tmp_path: Path) -> None:
    root = make_folder(tmp_path, per_class=2, classes=("a", "b", "c"))
    d = load_dataset(f"folder:{root}", seed=3)
    assert set(d.y_train.tolist()) == {0, 1, 2}
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 6


def test_folder_sixteen_bit_grey_is_scaled(tmp_path: Path) -> None:
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(tmp_path / c / "x.png")
    d = load_dataset(f"folder:{tmp_path}", resolution=8)
    assert d.preprocess.channels == 1 and (d.x_train == 255).all()


def test_folder_corrupt_image_names_file(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    (root / "apple" / "broken.jpg").write_bytes(b"not really a jpeg")
    with pytest.raises(UserError, match="broken.jpg"):
        load_dataset(f"folder:{root}")


def test_folder_needs_two_classes_with_images(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="at least 2 classes"):
        load_dataset(f"folder:{tmp_path}")
    root = make_folder(tmp_path, classes=("only",))
    with pytest.raises(UserError, match="at least 2 classes"):
        load_dataset(f"folder:{root}")
    (root / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        load_dataset(f"folder:{root}")


# --------------------------------------------------------------------------- Preprocess


def test_preprocess_uint8_and_float_agree_and_normalise_exactly() -> None:
    pre = Preprocess(channels=3, resolution=4, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 2.0))
    x = np.random.default_rng(0).integers(0, 256, size=(2, 3, 4, 4), dtype=np.uint8)
    out = pre(x)
    assert out.dtype == np.float32 and out.shape == (2, 3, 4, 4)
    expected = (x / 255.0 - np.array(pre.mean)[None, :, None, None]) / np.array(pre.std)[None, :, None, None]
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(pre(x.astype(np.float32) / 255), out, atol=1e-6)
    np.testing.assert_allclose(pre(x[0]), out[:1], atol=1e-6)           # CHW


def test_preprocess_grey_layouts_and_json_roundtrip() -> None:
    pre = Preprocess(channels=1, resolution=8, mean=[0.1], std=[0.2])
    x = np.random.default_rng(1).integers(0, 256, size=(5, 8, 8), dtype=np.uint8)
    np.testing.assert_array_equal(pre(x), pre(x[:, None]))              # NHW == NCHW
    assert pre(x[:1]).shape == (1, 1, 8, 8)
    back = Preprocess.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert back == pre and isinstance(back.mean, tuple)


def test_preprocess_resizes_to_resolution() -> None:
    pre = Preprocess(channels=1, resolution=16, mean=(0.0,), std=(1.0,))
    x = np.random.default_rng(2).random((2, 1, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(pre(x), resize_bilinear(x, 16), atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (1, 8, 8), (2, 4, 8, 8), (8, 8), (1, 2, 3, 8, 8)])
def test_preprocess_wrong_shape_raises(shape: tuple[int, ...]) -> None:
    pre = Preprocess(channels=3, resolution=8, mean=(0.5,) * 3, std=(0.5,) * 3)
    with pytest.raises(ValueError, match=r"expected \(N, 3, H, W\).*got"):
        pre(np.zeros(shape, np.uint8))


def test_preprocess_rejects_ambiguous_dtype_and_bad_config() -> None:
    pre = Preprocess(channels=1, resolution=8, mean=(0.5,), std=(0.5,))
    with pytest.raises(ValueError, match="dtype"):
        pre(np.zeros((1, 1, 8, 8), np.int32))
    with pytest.raises(ValueError):
        Preprocess(channels=2, resolution=8, mean=(0.5,) * 2, std=(0.5,) * 2)
    with pytest.raises(ValueError):
        Preprocess(channels=1, resolution=8, mean=(0.5,), std=(0.0,))


@pytest.mark.parametrize("hw, size", [((8, 8), 32), ((5, 7), 16), ((3, 3), 4), ((1, 1), 3)])
def test_resize_upsampling_matches_torch(hw: tuple[int, int], size: int) -> None:
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(4).random((2, 3, *hw), dtype=np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(x), size=(size, size), mode="bilinear",
                                          align_corners=False, antialias=False).numpy()
    np.testing.assert_allclose(resize_bilinear(x, size), ref, atol=1e-5)


@pytest.mark.parametrize("antialias", [False, True])
def test_resize_downsampling_matches_torch(antialias: bool) -> None:
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(5).random((2, 1, 30, 21), dtype=np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(x), size=(8, 8), mode="bilinear",
                                          align_corners=False, antialias=antialias).numpy()
    np.testing.assert_allclose(resize_bilinear(x, 8, antialias=antialias), ref, atol=1e-5)


# --------------------------------------------------------------------------- augmentation


def _images(n: int = 16) -> np.ndarray:
    return np.random.default_rng(6).integers(1, 256, size=(n, 3, 6, 7), dtype=np.uint8)


def test_augment_shape_dtype_and_identity() -> None:
    x = _images()
    out = augment(x, np.random.default_rng(0), crop_padding=2, flip=True)
    assert out.shape == x.shape and out.dtype == np.uint8
    same = augment(x, np.random.default_rng(0), crop_padding=0, flip=False)
    np.testing.assert_array_equal(same, x)
    assert same is not x
    np.testing.assert_array_equal(out, augment(x, np.random.default_rng(0), 2, True))


def test_augment_flip_flips() -> None:
    x = _images(64)
    out = augment(x, np.random.default_rng(1), crop_padding=0, flip=True)
    flipped = np.array([np.array_equal(o, i[..., ::-1]) for o, i in zip(out, x)])
    kept = np.array([np.array_equal(o, i) for o, i in zip(out, x)])
    assert (flipped | kept).all() and flipped.any() and kept.any()


def test_augment_crop_is_a_shifted_window() -> None:
    x = _images(32)
    p = 2
    out = augment(x, np.random.default_rng(2), crop_padding=p, flip=False)
    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    offsets = set()
    for o, pad in zip(out, padded):
        match = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                 if np.array_equal(o, pad[:, dy:dy + 6, dx:dx + 7])]
        assert match
        offsets.add(match[0])
    assert len(offsets) > 1                                             # per-image offsets


def test_iterate_batches() -> None:
    rng = np.random.default_rng(0)
    batches = list(iterate_batches(10, 4, rng))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    assert [len(b) for b in iterate_batches(10, 4, rng, drop_last=True)] == [4, 4]
    plain = list(iterate_batches(5, 2, rng, shuffle=False))
    assert np.concatenate(plain).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        list(iterate_batches(5, 0, rng))
