"""Pack a trained run into one deployable `.eas` file (host side); see format/bundle_reader.py
for the format and its verification on the device."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edge_eas import __version__
from edge_eas.common.fileio import atomic_write_bytes
from edge_eas.errors import UserError
from edge_eas.host.rundir import RunDir
from edge_eas.format import safetensors_io
from edge_eas.format.manifest import (MANIFEST, MANIFEST_DIGEST_PREFIX, SIGNATURE, CalibrationInfo, Created,
                                      GeneratorMeta, Manifest, Member, Weights)
from edge_eas.format.quant import compress
from edge_eas.format.signing import sign
from edge_eas.data import run_dataset


# The supernet's running BN statistics are an average over all archs seen in training and fit
# no single sub-network (measured on digits: 22-64 % vs 98-99 % accuracy after recalibration),
# so bundles leave them out and the device always re-estimates them for the extracted arch.
SHARED_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


DEFAULT_CALIBRATION_PER_CLASS = 32
"""Training images per class a bundle carries unless told otherwise: BN statistics on the device,
and the int8 engines' activation ranges (export-subnet --int8 calibrates on the same)."""


def calibration_set(run_meta: dict[str, Any], per_class: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A few uint8 training images per class, for BN recalibration on the device. With 0 the
    bundle carries none (empty arrays): the device then recalibrates on the user's images."""
    space = run_meta["space"]
    if per_class == 0:
        shape = (0, space["in_channels"], space["resolution"], space["resolution"])
        return {"images": np.zeros(shape, np.uint8), "labels": np.zeros(0, np.int64)}
    data = run_dataset(run_meta, resolution=space["resolution"])
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.permutation(np.nonzero(data.y_train == c)[0])[:per_class]
                          for c in range(data.num_classes)])
    return {"images": data.x_train[idx].astype(np.uint8), "labels": data.y_train[idx].astype(np.int64)}


def data_label(spec: str) -> str:
    """The data set as the bundle names it: the kind and a folder's own name, never a path of
    the machine that trained it (`folder:/home/alice/photos` -> `folder:photos`)."""
    kind, sep, arg = spec.partition(":")
    return f"{kind}:{Path(arg.rstrip('/')).name}" if sep and arg else kind


def export_bundle(run_dir: Path, out: Path, dtype: str = "int8", sign_key: Path | None = None,
                  calib_per_class: int = DEFAULT_CALIBRATION_PER_CLASS, cost_models: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write `out` atomically; returns a summary (size, digests, signer)."""
    run = RunDir(run_dir)
    meta = run.meta()
    if not run.generator_path.is_file():
        raise UserError(f"{run_dir} has no trained generator; run `edge_eas train-generator {run_dir}` first")
    # lazy: loads safetensors, torch only on this path, not when bundle is imported
    from edge_eas.host.checkpoint import load_tensors
    state = {k: v.float().numpy() if v.is_floating_point() else v.numpy()
             for k, v in load_tensors(run.weights_path, meta.get("weights_sha256")).items()
             if not k.endswith(SHARED_BN_STATS)}
    gen_meta = json.loads(run.generator_meta_path.read_text())
    gen_w = {k: v.half().numpy() for k, v in load_tensors(run.generator_path).items()}
    if calib_per_class < 0:
        raise UserError("--calibration-images must be >= 0")
    untrained = bool(meta.get("untrained"))
    if untrained:  # no data set behind it: nothing to recalibrate on, nor a reason to (latency work)
        calib_per_class = 0
    calib = calibration_set(meta, calib_per_class)
    members = {
        "supernet.safetensors": safetensors_io.dumps(compress(state, dtype)),
        "generator.safetensors": safetensors_io.dumps(gen_w),
        "calibration.safetensors": safetensors_io.dumps(calib),
    }
    accuracy = None
    if run.accuracy_path.is_file() and run.accuracy_meta_path.is_file():
        from edge_eas.host.accuracy_fit import errors_of, read_fit  # lazy: the predictor's fitting code, host only
        acc_meta, acc_weights = read_fit(run)
        members["accuracy.safetensors"] = safetensors_io.dumps(acc_weights)
        accuracy = errors_of(acc_meta)
    # What leaves this machine: weights, the generator, the calibration images asked for, and
    # facts about the model. No host name, user name or path of this machine.
    manifest = Manifest(
        created=Created(dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), __version__),
        space=meta["space"], class_names=meta["class_names"], preprocess=meta["preprocess"],
        data=data_label(meta["data"]) if meta.get("data") else None,
        weights=Weights(dtype, "symmetric per-output-channel" if dtype == "int8" else None),
        generator=GeneratorMeta(cost_tables=gen_meta["cost_tables"], budget_bounds=gen_meta["budget_bounds"]),
        cost_models=cost_models or {}, untrained=untrained, accuracy=accuracy,
        calibration=CalibrationInfo(images_per_class=calib_per_class, images=int(len(calib["labels"]))),
        members={n: Member.of(b) for n, b in members.items()},
    )
    manifest_bytes = manifest.to_bytes()
    signature = sign(manifest_bytes, sign_key) if sign_key else None
    buf = io.BytesIO()
    # deflate: as small as LZMA on int8 weights (an mbv3 supernet: 7.55 vs 7.57 MB) and ~10x
    # faster to unpack, which a device pays on every Runtime.load (0.54 s -> 0.03 s for mbv3)
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr(MANIFEST, manifest_bytes)
        if signature:
            zf.writestr(SIGNATURE, json.dumps(signature))
        for name, data in members.items():
            zf.writestr(name, data)
        # Detects a corrupted manifest in unsigned bundles; only a signature defends against
        # deliberate tampering (anyone can recompute a digest).
        zf.comment = MANIFEST_DIGEST_PREFIX + hashlib.sha256(manifest_bytes).hexdigest().encode()
    atomic_write_bytes(out, buf.getvalue())
    return {"bundle": str(out), "bytes": len(buf.getvalue()), "dtype": dtype,
            "sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
            "signed_by": signature["key_id"] if signature else None,
            "calibration_images": int(len(calib["labels"])), "calibration_images_per_class": calib_per_class,
            "untrained": untrained,
            "members": manifest.to_dict()["members"]}
