"""ExecuTorch engine: torch.export the folded module, lower it to XNNPACK, run the .pte in-process.

Lowering needs torch + executorch (host or Jetson); the resulting .pte bytes only need the
ExecuTorch runtime. `export_pte` writes the same program to a file for `export-subnet --format pte`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np

from edge_eas.net.folded import FoldedNet
from edge_eas.runtime.app_io import AppIO
from edge_eas.runtime.engines.base import Calibration, EngineUnavailable, as_input, calibration_subset, static_batches
from edge_eas.runtime.engines.torch_engine import build_app_module, build_module, import_torch


def _import_lowering():  # type: ignore[no-untyped-def]
    """(torch, to_edge_transform_and_lower, XnnpackPartitioner) or EngineUnavailable."""
    torch = import_torch()
    try:
        # lazy: an optional extra (executorch), heavy to import
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
    except ImportError as exc:
        raise EngineUnavailable(f"the executorch engine needs ExecuTorch ({exc})") from None
    return torch, to_edge_transform_and_lower, XnnpackPartitioner


def _import_runtime():  # type: ignore[no-untyped-def]
    try:
        from executorch.runtime import Runtime  # lazy: an optional extra (executorch)
    except ImportError as exc:
        raise EngineUnavailable(f"running a .pte needs the ExecuTorch runtime ({exc})") from None
    return Runtime


def pte_bytes(folded: FoldedNet, batch_size: int = 1, app: Optional[AppIO] = None,
              calibration: Optional[np.ndarray] = None) -> bytes:
    """Lower `folded` for a fixed (batch_size, C, H, W) float32 input to an XNNPACK .pte program;
    with `app` (a standalone export) for a (batch_size, H, W, C) uint8 image, normalised inside,
    softmax out (runtime/app_io.py). With `calibration` (NCHW float images) the program is
    quantised first: XNNPACK's quantiser, int8 per-channel symmetric weights and int8 activations
    observed on those images (torchao's PT2E flow), then lowered to XNNPACK's QS8 kernels."""
    torch, to_edge_transform_and_lower, XnnpackPartitioner = _import_lowering()
    if app is None:
        # quantised: convs keep their own padding - XNNPACK rejects a QS8 constant pad node
        # ("StaticConstantPad ... xnn_status_invalid_parameter", ExecuTorch 1.5.1)
        module = build_module(folded, xnnpack=calibration is None)
        example = (torch.zeros((batch_size, *folded.input_shape), dtype=torch.float32),)
    else:
        c, h, w = folded.input_shape
        module = build_app_module(folded, app, xnnpack=True)
        example = (torch.zeros((batch_size, h, w, c), dtype=torch.uint8),)
    with warnings.catch_warnings():  # export/lowering internals warn about their own deprecations
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        exported = torch.export.export(module, example)
        if calibration is not None:
            exported = torch.export.export(_quantised(exported, calibration, batch_size), example)
        program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()
    return bytes(program.buffer)


def _quantised(exported, images: np.ndarray, batch_size: int):  # type: ignore[no-untyped-def]
    """The exported float module, PT2E-quantised for XNNPACK on `images` (fed in static batches)."""
    torch = import_torch()
    try:
        # lazy: heavy; torchao comes with executorch
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                               get_symmetric_quantization_config)
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError as exc:
        raise EngineUnavailable(f"the executorch-int8 engine needs ExecuTorch's quantiser ({exc})") from None
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(exported.module(), quantizer)
    for chunk in static_batches(calibration_subset(np.asarray(images, np.float32)), batch_size):
        prepared(torch.from_numpy(chunk))
    return convert_pt2e(prepared)


def export_pte(folded: FoldedNet, path: Union[str, os.PathLike], batch_size: int = 1,
               app: Optional[AppIO] = None) -> Path:
    """Write the .pte for `folded` to `path` (atomically: a temp file renamed into place)."""
    path = Path(path)
    data = pte_bytes(folded, batch_size, app)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _set_threads(threads: Optional[int]) -> Optional[int]:
    """ExecuTorch's XNNPACK threadpool is process-wide; resize it when asked, report its size."""
    try:
        from executorch.extension.pybindings import portable_lib  # lazy: an optional extra (executorch)
    except ImportError:
        return threads
    if threads is not None and hasattr(portable_lib, "_unsafe_reset_threadpool"):
        portable_lib._unsafe_reset_threadpool(threads)
    if hasattr(portable_lib, "_threadpool_get_thread_count"):
        return int(portable_lib._threadpool_get_thread_count())
    return threads


class ExecuTorchEngine:
    """Runs the lowered program; another batch size than the one lowered for is re-lowered once
    (the exported graph has a static batch dimension) and cached."""

    name = "executorch"

    def __init__(self, folded: FoldedNet, batch_size: int = 1, threads: Optional[int] = None,
                 program: Optional[bytes] = None) -> None:
        self.folded = folded
        self.batch_size = batch_size
        self._runtime = _import_runtime().get()
        self._torch = import_torch()
        self.threads = _set_threads(threads)
        self._methods: dict[int, tuple[object, object]] = {}
        self._programs: dict[int, bytes] = {}
        if program is not None:
            self._programs[batch_size] = program
        self._method(batch_size)

    @property
    def model_bytes(self) -> bytes:
        """The .pte program for the build-time batch size."""
        return self._programs[self.batch_size]

    def _lower(self, batch: int) -> bytes:
        return pte_bytes(self.folded, batch)

    def _method(self, batch: int):  # type: ignore[no-untyped-def]
        if batch not in self._methods:
            if batch not in self._programs:
                self._programs[batch] = self._lower(batch)
            program = self._runtime.load_program(self._programs[batch])
            # keep the Program alive as long as its Method
            self._methods[batch] = (program, program.load_method("forward"))
        return self._methods[batch][1]

    def run(self, x: np.ndarray) -> np.ndarray:
        x = as_input(x, self.folded)
        (out,) = self._method(x.shape[0]).execute([self._torch.from_numpy(x)])
        return out.numpy().copy()


class ExecuTorchInt8Engine(ExecuTorchEngine):
    """The same program quantised to int8 (XNNPACK's quantiser; PT2E observers on the
    calibration images), so it runs XNNPACK's QS8 kernels. Random (synthetic) images serve
    latency work, as for tflite-int8."""

    name = "executorch-int8"

    def __init__(self, folded: FoldedNet, batch_size: int = 1, threads: Optional[int] = None, *,
                 calibration: Calibration) -> None:
        self._images = calibration.images
        super().__init__(folded, batch_size, threads)

    def _lower(self, batch: int) -> bytes:
        return pte_bytes(self.folded, batch, calibration=self._images)
