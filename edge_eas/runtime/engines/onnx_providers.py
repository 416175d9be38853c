"""Which ONNX Runtime execution provider runs a network, and how that is named and filed.

The provider is part of what a measurement is filed under, like threads: the engine's name is
`onnxruntime:<provider that ran>` (onnxruntime:tensorrt, :cuda, :cpu), so the measurement store,
the latency models and ms budgets keep each provider apart with no field of their own.
`onnxruntime` alone takes the best the device's onnxruntime offers: TensorRT, then CUDA, then
the CPU. A pinned provider that is missing falls to the next one down; the warning says so and
the measurement is filed under what ran. Pure functions of a provider list (tests give fake ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import List, Mapping, Optional, Sequence, Tuple

BASE = "onnxruntime"
PROVIDERS: Mapping[str, str] = MappingProxyType({
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
})
"""Short name (what engine names carry) -> onnxruntime's provider name, best first."""
PREFERENCE: Tuple[str, ...] = tuple(PROVIDERS)


def engine_name(provider: str) -> str:
    return f"{BASE}:{provider}"


def short_name(ort_provider: str) -> str:
    """onnxruntime's provider name -> its short name (an unknown provider keeps a lower-case stem)."""
    for short, full in PROVIDERS.items():
        if full == ort_provider:
            return short
    return ort_provider.replace("ExecutionProvider", "").lower()


@dataclass(frozen=True)
class ProviderChoice:
    """What was asked (None: the best available), what will run, and why they differ."""

    asked: Optional[str]
    chosen: str
    warning: Optional[str] = None


def choose_provider(asked: Optional[str], available: Sequence[str]) -> ProviderChoice:
    """The provider to run, given onnxruntime's `get_available_providers()` list."""
    if asked is not None and asked not in PROVIDERS:
        raise ValueError(f"unknown onnxruntime provider {asked!r}; choose from {', '.join(PREFERENCE)}")
    have = [short for short in PREFERENCE if PROVIDERS[short] in available] or ["cpu"]
    if asked is None:
        return ProviderChoice(None, have[0])
    if asked in have:
        return ProviderChoice(asked, asked)
    below = [p for p in have if PREFERENCE.index(p) > PREFERENCE.index(asked)] or ["cpu"]
    return ProviderChoice(asked, below[0], provider_warning(asked, below[0], available))


def provider_chain(chosen: str) -> List[str]:
    """onnxruntime's `providers=` list: the chosen one, then the CPU for the nodes it cannot take."""
    return [PROVIDERS[chosen]] + ([PROVIDERS["cpu"]] if chosen != "cpu" else [])


def provider_warning(asked: str, ran: str, available: Optional[Sequence[str]] = None) -> str:
    """Why a measurement is filed under another provider than was asked for."""
    offered = f" (this onnxruntime offers {', '.join(available)})" if available is not None else ""
    return f"onnxruntime: asked for the {asked} provider, ran on {ran}{offered}; filed under {engine_name(ran)}"
