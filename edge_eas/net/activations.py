"""The activations a layer may apply, and how each engine expresses them: one registry.

Adding an activation is one `ActivationSpec` here: its numpy op (the numpy engine and BN
recalibration run it), the name of its torch module (resolved by `edge_eas.torchnet`, because
net/ never imports torch), its TFLite form (fused into the producing op, or an op of its own) and
its ONNX operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping, Optional

import numpy as np

__all__ = ["ACTIVATIONS", "ActivationSpec", "activation"]


def _none(y: np.ndarray) -> np.ndarray:
    return y


def _relu(y: np.ndarray) -> np.ndarray:
    np.maximum(y, 0.0, out=y)
    return y


def _relu6(y: np.ndarray) -> np.ndarray:
    np.clip(y, 0.0, 6.0, out=y)
    return y


def _hswish(y: np.ndarray) -> np.ndarray:
    """x * relu6(x + 3) / 6."""
    gate = y + 3.0
    np.clip(gate, 0.0, 6.0, out=gate)
    gate *= 1.0 / 6.0
    y *= gate
    return y


@dataclass(frozen=True)
class ActivationSpec:
    """One activation as every engine writes it."""

    name: str
    numpy: Callable[[np.ndarray], np.ndarray]  # applies it in place to a float32 array, returns it
    torch: str                                 # the torch.nn module class (torchnet resolves it)
    tflite_fused: str                          # ActivationFunctionType fused into the producing op
    onnx: str                                  # the ONNX operator ("" for none; Clip takes bounds 0 and 6)
    tflite_op: Optional[str] = None            # BuiltinOperator applied after it, when TFLite cannot fuse it
    extra_pass: bool = False                   # computes a gate tensor: one more pass over the activations


ACTIVATIONS: Mapping[str, ActivationSpec] = MappingProxyType({spec.name: spec for spec in (
    ActivationSpec("none", _none, "Identity", "NONE", ""),
    ActivationSpec("relu", _relu, "ReLU", "RELU", "Relu"),
    ActivationSpec("relu6", _relu6, "ReLU6", "RELU6", "Clip"),
    ActivationSpec("hswish", _hswish, "Hardswish", "NONE", "HardSwish", tflite_op="HARD_SWISH", extra_pass=True),
)})
"""name -> spec; iterating gives the names (the order layers' `act` fields are documented in)."""


def activation(name: str) -> ActivationSpec:
    """The spec for `name`, or ValueError naming the choices."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}") from None
