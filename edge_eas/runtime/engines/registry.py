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

if TYPE_CHECKING:
    from edge_eas.net.folded import FoldedNet


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
    build one (lowering), so benchmarks time one instance rather than several."""

    name: str
    factory: str
    requires: tuple[tuple[str, ...], ...] = ()
    install_hint: str = ""
    auto_rank: Optional[int] = None
    calibrated: bool = False
    slow_build: bool = False

    def available(self) -> bool:
        """Cheap check (nothing heavy is imported) that `create` can work."""
        return all(any(has_module(m) for m in group) for group in self.requires)

    def create(self, folded: "FoldedNet", batch_size: int = 1, threads: Optional[int] = None,
               calibration: Optional[Calibration] = None) -> Engine:
        """The engine for `folded`; a missing library raises EngineUnavailable with the install hint."""
        module, cls = self.factory.split(":")
        if self.calibrated and calibration is None:
            raise ValueError(f"the {self.name} engine needs calibration images for its activation ranges")
        extra = {"calibration": calibration} if self.calibrated else {}
        try:
            engine = getattr(importlib.import_module(f"{__package__}.{module}"), cls)
            return engine(folded, batch_size=batch_size, threads=threads, **extra)  # type: ignore[no-any-return]
        except EngineUnavailable as exc:
            raise EngineUnavailable(f"{exc}: {self.install_hint}") from None


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


def engine_spec(name: str) -> EngineSpec:
    """The spec of engine `name`, or ValueError naming the choices."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINE_NAMES)}")
    return ENGINES[name]


def engine_available(name: str) -> bool:
    """Cheap check (nothing heavy is imported) that `create_engine(name, ...)` can work."""
    return engine_spec(name).available()


def available_engines() -> list[str]:
    """Engines whose libraries are installed, in registry order."""
    return [name for name, spec in ENGINES.items() if spec.available()]


def pick_engine(name: str) -> str:
    """`name` when it is installed; for "auto" the best installed engine."""
    if name == "auto":
        return next((n for n in auto_engines() if engine_available(n)), "numpy")
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose from auto, {', '.join(ENGINE_NAMES)}")
    if not engine_available(name):
        raise EngineUnavailable(f"engine {name!r} is not installed here: {ENGINES[name].install_hint}")
    return name


def create_engine(name: str, folded: "FoldedNet", batch_size: int = 1, threads: Optional[int] = None,
                  calibration: Optional[Calibration] = None) -> Engine:
    """Build engine `name` for `folded`. `batch_size` is the batch it is prepared for (engines
    with static shapes re-plan on another batch); `threads=None` keeps the library default;
    `calibration`: images for engines that calibrate (others ignore it)."""
    spec = engine_spec(name)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1 or None, got {threads}")
    return spec.create(folded, batch_size=batch_size, threads=threads, calibration=calibration)
