"""The device agent's JSON-lines protocol, as dataclasses: one per message type.

The agent (`runtime/agent/main.py`) writes them, and the host reads them with `parse_line`: the
bench runner (`remote/bench.py`), block profiling and deploy's smoke run. Each line is
`{"type": TYPE, **fields}`. A reader ignores fields it does not know, so an older host can
read a newer agent. Lines that are not JSON objects are library chatter (for example
"INFO: Created TensorFlow Lite XNNPACK delegate"), and `parse_line` returns None for them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Dict, List, Optional, Type, Union

from edge_eas.net.budget import Budget


@dataclass(frozen=True)
class Hello:
    """First line once the bundle is loaded: who is measuring, with what."""

    TYPE: ClassVar[str] = "hello"
    runtime_version: str
    bundle_sha256: str
    environment: Dict[str, Any]
    scenarios: int
    trust: Any = None
    untrained: bool = False  # the bundle is an `edge_eas init` run: its figures are latencies only


@dataclass(frozen=True)
class MeasurementLine:
    """One scenario, specialised and timed (`stats` follows runtime/timing.py)."""

    TYPE: ClassVar[str] = "measurement"
    scenario: str
    measurement_id: str
    classes: List[int]
    budget: Dict[str, float]
    arch: Dict[str, Any]
    mflops: float
    params: int
    predicted_ms: Optional[float]
    engine: str
    threads: Optional[int]
    batch_size: int
    stats: Dict[str, Any]
    timings_ms: Dict[str, float]
    environment: Dict[str, Any]
    bundle_sha256: str
    runtime_version: str
    threads_requested: Optional[int] = None  # `threads` is what ran (read back from the engine)
    warnings: List[str] = field(default_factory=list)
    # the scenario's accuracy target (a fraction) if it had one, and the answer's prediction where the
    # bundle carries a predictor
    # (`Prediction.to_dict()`: predicted_accuracy, predicted_interval, predicted_accuracy_safe)
    min_accuracy: Optional[float] = None
    prediction: Optional[Dict[str, Any]] = None

    def scenario_budget(self) -> Optional[Budget]:
        """The scenario's budget; None for a given arch. `budget` is `Budget.to_dict()` (lines
        from agents before Budget spelled it {"budget_mflops": x}: read too)."""
        return Budget.from_dict(self.budget) if self.budget else None


@dataclass(frozen=True)
class ScenarioError:
    """One scenario failed; the others go on."""

    TYPE: ClassVar[str] = "error"
    scenario: str
    error: str


@dataclass(frozen=True)
class Fatal:
    """The agent refused its bundle, latency models or scenarios: retrying cannot help."""

    TYPE: ClassVar[str] = "fatal"
    error: str


@dataclass(frozen=True)
class BlockProfile:
    """One block configuration's time from `--profile-blocks` (block_key 'fixed': the rest)."""

    TYPE: ClassVar[str] = "block"
    block_key: str
    median_ms: float
    engine: str
    threads: Optional[int]
    with_block_ms: Optional[float] = None
    without_block_ms: Optional[float] = None
    reference_ms: Optional[float] = None      # the speed reference in the group it was timed in
    group_attempts: Optional[int] = None
    # the 'fixed' row only (runtime/agent/profile.fit_probes): the scale on the entries, the probe
    # archs it was fitted to, their measured latency and what the fit leaves
    entry_scale: Optional[float] = None     # the space's in-network scale on the block entries
    probe_archs: Optional[List[Dict[str, Any]]] = None
    probe_ms: Optional[List[float]] = None
    probe_residual_ms: Optional[List[float]] = None


@dataclass(frozen=True)
class Heartbeat:
    """Proof of life while nothing else is written (agent/output.py)."""

    TYPE: ClassVar[str] = "heartbeat"
    phase: str
    uptime_s: float


@dataclass(frozen=True)
class Adapted:
    """`--examples DIR`: a task head fitted on the device and saved beside the bundle."""

    TYPE: ClassVar[str] = "adapted"
    head: str                 # its name (scenarios time it as {"head": NAME})
    path: str
    labels: List[str]
    class_ids: List[Optional[int]]   # the bundle's class per label; None: a new class
    arch: Dict[str, Any]
    task_classes: List[int]
    mflops: float
    params: int
    predicted_ms: Optional[float]
    fit: Dict[str, Any]
    timings_ms: Dict[str, float]
    bundle_sha256: str
    runtime_version: str


@dataclass(frozen=True)
class Done:
    """Last line: every scenario was handled, `failed` of them with an error."""

    TYPE: ClassVar[str] = "done"
    failed: int


Message = Union[Hello, MeasurementLine, ScenarioError, Fatal, BlockProfile, Heartbeat, Adapted, Done]
MESSAGE_TYPES: Dict[str, Type[Any]] = {cls.TYPE: cls for cls in (Hello, MeasurementLine, ScenarioError, Fatal,
                                                                  BlockProfile, Heartbeat, Adapted, Done)}


def to_dict(msg: Message) -> Dict[str, Any]:
    """The message as the JSON object on the wire."""
    return {"type": msg.TYPE, **asdict(msg)}


def to_line(msg: Message) -> str:
    return json.dumps(to_dict(msg), separators=(",", ":"))


def from_dict(doc: Dict[str, Any]) -> Optional[Message]:
    """The message a wire object holds; None for an unknown type. A missing field raises
    ValueError naming it."""
    cls = MESSAGE_TYPES.get(str(doc.get("type")))
    if cls is None:
        return None
    known = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in doc.items() if k in known})  # type: ignore[no-any-return]
    except TypeError as exc:
        raise ValueError(f"agent {cls.TYPE!r} line is incomplete: {exc}") from None


def parse_line(raw: str) -> Optional[Message]:
    """One line of agent output as a message; None for chatter, bad JSON or unknown types."""
    raw = raw.strip()
    if not raw.startswith("{"):
        return None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return from_dict(doc) if isinstance(doc, dict) else None
