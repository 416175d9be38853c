"""The engines registry: every engine's name, requirements, install hint, factory and rank for `auto`.

Everything that lists, checks, picks or creates engines reads `ENGINES`. Adding an engine is one
`EngineSpec` here plus its module; that module imports `base`, never this registry (which imports
it only when the engine is created), so the package has no import loop. Nothing heavy is imported
here: checking what is installed only looks packages up.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping, Optional

from edge_eas.runtime.engines.base import Calibration, Engine, EngineUnavailable
from edge_eas.runtime.engines.onnx_providers import PREFERENCE

if TYPE_CHECKING:
    from edge_eas.net.folded import FoldedNet


def split_engine(name: str) -> tuple[str, Optional[str]]:
    """"onnxruntime:cuda" -> ("onnxruntime", "cuda"); a name without a variant -> (name, None)."""
    base, sep, variant = name.partition(":")
    return base, (variant if sep else None)


def has_module(module: str) -> bool:
    """Installed? find_spec on a top-level name does not import the package."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class EngineSpec:
    """One engine. `factory` is "module:Class" in this package, imported when an engine is created;
    `requires` lists groups of top-level modules, each group satisfied by any one of them installed;
    `auto_rank` orders the engines `engine="auto"` may pick (None: never picked); `calibrated`
    engines take calibration images (int8 activation ranges); `slow_build` engines take seconds to
    build one (lowering), so benchmarks time one instance rather than several. `variants` are what
    may follow the name after a colon (onnxruntime:cuda: the execution provider), passed to the
    engine as `variant`; `resolver` ("module:function", variant -> full name) names the variant
    that will run, so that everything keyed by engine name files it under that."""

    name: str
    factory: str
    requires: tuple[tuple[str, ...], ...] = ()
    install_hint: str = ""
    auto_rank: Optional[int] = None
    calibrated: bool = False
    slow_build: bool = False
    variants: tuple[str, ...] = ()
    resolver: str = ""

    def available(self) -> bool:
        """Cheap check (nothing heavy is imported) that `create` can work."""
        return all(any(has_module(m) for m in group) for group in self.requires)

    def check_variant(self, variant: Optional[str]) -> None:
        if variant is not None and variant not in self.variants:
            choices = ", ".join(f"{self.name}:{v}" for v in self.variants) or f"{self.name} (it has no variants)"
            raise ValueError(f"unknown engine {self.name}:{variant}; choose from {choices}")

    def resolve(self, variant: Optional[str]) -> str:
        """The full name of what will run for `name[:variant]` (the name itself without variants)."""
        self.check_variant(variant)
        if not self.variants:
            return self.name
        return _load(self.resolver, self)(variant)  # type: ignore[no-any-return]

    def create(self, folded: "FoldedNet", batch_size: int = 1, threads: Optional[int] = None,
               calibration: Optional[Calibration] = None, variant: Optional[str] = None) -> Engine:
        """The engine for `folded`; a missing library raises EngineUnavailable with the install hint."""
        if self.calibrated and calibration is None:
            raise ValueError(f"the {self.name} engine needs calibration images for its activation ranges")
        self.check_variant(variant)
        extra: dict[str, object] = {"calibration": calibration} if self.calibrated else {}
        if self.variants:
            extra["variant"] = variant
        return _load(self.factory, self)(folded, batch_size=batch_size, threads=threads,  # type: ignore[no-any-return]
                                         **extra)


def _load(ref: str, spec: EngineSpec):  # type: ignore[no-untyped-def]
    """"module:attr" of this package, imported now; EngineUnavailable carries the install hint."""
    module, attr = ref.split(":")
    target = getattr(importlib.import_module(f"{__package__}.{module}"), attr)

    def call(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return target(*args, **kwargs)
        except EngineUnavailable as exc:
            raise EngineUnavailable(f"{exc}: {spec.install_hint}") from None
    return call


ENGINES: Mapping[str, EngineSpec] = MappingProxyType({spec.name: spec for spec in (
    EngineSpec("numpy", "numpy_engine:NumpyEngine", auto_rank=1),
    # building needs flatbuffers and a TFLite schema module: ai-edge-litert ships one; tflite-runtime
    # does not, so it takes tensorflow's or edge_eas_tflite_schema (which deploy ships)
    EngineSpec("tflite", "tflite_engine:TFLiteEngine",
               requires=(("flatbuffers",), ("ai_edge_litert", "tflite_runtime"),
                         ("ai_edge_litert", "tensorflow", "edge_eas_tflite_schema")),
               install_hint="pip install 'edge-eas[tflite]' (ai-edge-litert; or tflite-runtime where numpy<2)",
               auto_rank=0),
    # the same graph in full integer; its activation ranges come from calibration images
    EngineSpec("tflite-int8", "tflite_engine:TFLiteInt8Engine",
               requires=(("flatbuffers",), ("ai_edge_litert", "tflite_runtime"),
                         ("ai_edge_litert", "tensorflow", "edge_eas_tflite_schema")),
               install_hint="pip install 'edge-eas[tflite]' (ai-edge-litert; or tflite-runtime where numpy<2)",
               calibrated=True),
    EngineSpec("executorch", "executorch_engine:ExecuTorchEngine", requires=(("executorch",), ("torch",)),
               install_hint="pip install 'edge-eas[executorch]' (it also needs torch: pip install torch)",
               slow_build=True),
    # the same program PT2E-quantised to int8 for XNNPACK's QS8 kernels (the quantiser needs torch)
    EngineSpec("executorch-int8", "executorch_engine:ExecuTorchInt8Engine", requires=(("executorch",), ("torch",)),
               install_hint="pip install 'edge-eas[executorch]' (it also needs torch: pip install torch)",
               calibrated=True, slow_build=True),
    EngineSpec("torch", "torch_engine:TorchEngine", requires=(("torch",),), install_hint="pip install torch"),
    # the execution provider is the variant: onnxruntime:tensorrt, :cuda, :cpu (onnx_providers.py)
    EngineSpec("onnxruntime", "onnx_engine:OnnxRuntimeEngine", requires=(("onnxruntime",),),
               install_hint="pip install 'edge-eas[onnx]' (onnxruntime; on a Jetson, its JetPack's onnxruntime-gpu)",
               variants=PREFERENCE, resolver="onnx_engine:resolve_provider"),
)})
"""name -> spec, in the order `available_engines` lists them (numpy, which always works, first)."""

ENGINE_NAMES = tuple(ENGINES)
"""The engine names (derived from ENGINES; kept for callers that want a tuple)."""


def auto_engines() -> tuple[str, ...]:
    """The engines `engine="auto"` tries, best first."""
    ranked = sorted((spec for spec in ENGINES.values() if spec.auto_rank is not None), key=lambda s: s.auto_rank)
    return tuple(spec.name for spec in ranked)


def preferred_engines() -> tuple[str, ...]:
    """Every engine, those `auto` picks first (best first), then the others in registry order."""
    auto = auto_engines()
    return auto + tuple(name for name in ENGINES if name not in auto)


def engine_choices() -> tuple[str, ...]:
    """Every name an engine may be asked for by: the engines, then their variants."""
    return ENGINE_NAMES + tuple(f"{spec.name}:{v}" for spec in ENGINES.values() for v in spec.variants)


def engine_candidates(name: str) -> tuple[str, ...]:
    """The names a host looks measurements and latency models up by, best first, for what a device
    resolves `name` to: "auto" -> every engine in `preferred_engines` order; an engine with
    variants -> each variant ("onnxruntime" -> onnxruntime:tensorrt, :cuda, :cpu); else `name`."""
    if name == "auto":
        return preferred_engines()
    base, variant = split_engine(name)
    spec = ENGINES.get(base)
    if spec is None or variant is not None or not spec.variants:
        return (name,)
    return tuple(f"{base}:{v}" for v in spec.variants)


def engine_spec(name: str) -> EngineSpec:
    """The spec of engine `name` (a variant, "onnxruntime:cpu", names its engine's), or ValueError."""
    base, variant = split_engine(name)
    if base not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose from {', '.join(engine_choices())}")
    ENGINES[base].check_variant(variant)
    return ENGINES[base]


def engine_available(name: str) -> bool:
    """Cheap check (nothing heavy is imported) that `create_engine(name, ...)` can work."""
    return engine_spec(name).available()


def available_engines() -> list[str]:
    """Engines whose libraries are installed, in registry order."""
    return [name for name, spec in ENGINES.items() if spec.available()]


def pick_engine(name: str) -> str:
    """What will run for `name`, when it is installed: for "auto" the best installed engine; for an
    engine with variants the variant that will run ("onnxruntime" -> "onnxruntime:cuda" where
    CUDA is offered; a missing "onnxruntime:tensorrt" -> the next one down)."""
    if name == "auto":
        return next((n for n in auto_engines() if engine_available(n)), "numpy")
    if split_engine(name)[0] not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose from auto, {', '.join(engine_choices())}")
    spec = engine_spec(name)
    if not spec.available():
        raise EngineUnavailable(f"engine {name!r} is not installed here: {spec.install_hint}")
    return spec.resolve(split_engine(name)[1])


def engine_warning(asked: str, ran: str) -> str:
    """Why a measurement is filed under another engine variant than was asked for (as threads)."""
    return f"{asked} is not available here: ran {ran}, and its measurements are filed under {ran}"


def create_engine(name: str, folded: "FoldedNet", batch_size: int = 1, threads: Optional[int] = None,
                  calibration: Optional[Calibration] = None) -> Engine:
    """Build engine `name` for `folded`. `batch_size` is the batch it is prepared for (engines
    with static shapes re-plan on another batch); `threads=None` keeps the library default;
    `calibration`: images for engines that calibrate (others ignore it)."""
    spec = engine_spec(name)
    variant = split_engine(name)[1]
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1 or None, got {threads}")
    return spec.create(folded, batch_size=batch_size, threads=threads, calibration=calibration, variant=variant)
