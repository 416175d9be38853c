"""The resource budget of a deployment scenario, as one value from the CLI down to the device
agent: `Budget.parse("ms=12")`, `"mflops=3.5"`, `"params=2e5"`.

Scenario files and agent messages carry it as `{"mflops": 3.5}` (`to_dict`). Files and lines
written before it existed spelled it `{"budget_mflops": 3.5}`; `from_dict` and `in_scenario`
still read that spelling, so stored scenarios and measurements keep loading.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Union

KINDS = ("mflops", "params", "ms")
"""The order is the generator's one-hot input order (archgen/generator.py): never reorder."""
UNITS = {"mflops": "MFLOPs", "params": "parameters", "ms": "ms"}
LEGACY_PREFIX = "budget_"  # `budget_mflops`: the spelling before Budget, in stored scenarios and lines


@dataclass(frozen=True)
class Budget:
    """What a generated sub-network must fit: `value` MFLOPs (millions of MACs), parameters or
    milliseconds (the last on a named device, through its latency model)."""

    kind: str
    value: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown budget kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if isinstance(self.value, bool) or not isinstance(self.value, numbers.Real):
            raise ValueError(f"budget {self.kind} must be a number, got {self.value!r}")
        if not (math.isfinite(self.value) and self.value > 0):
            raise ValueError(f"budget {self.kind}={self.value} must be a positive number")
        object.__setattr__(self, "value", float(self.value))

    @classmethod
    def parse(cls, text: str) -> "Budget":
        """`KIND=VALUE`, e.g. `ms=12`, `mflops=3.5`, `params=2e5`."""
        kind, sep, value = str(text).partition("=")
        kind = kind.strip().lower()
        if not sep or kind not in KINDS:
            raise ValueError(f"budget {text!r}: expected KIND=VALUE with KIND one of {', '.join(KINDS)} "
                             f"(e.g. ms=12, mflops=3.5, params=2e5)")
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"budget {text!r}: {value.strip()!r} is not a number") from None
        return cls(kind, number)

    @classmethod
    def of(cls, budget: "BudgetLike") -> "Budget":
        """A Budget from itself, its string (`"ms=12"`) or its dict (`{"ms": 12}`)."""
        if isinstance(budget, Budget):
            return budget
        if isinstance(budget, Mapping):
            return cls.from_dict(budget)
        if isinstance(budget, str):
            return cls.parse(budget)
        raise ValueError(f"a budget is a Budget, 'KIND=VALUE' or {{KIND: VALUE}}, got {budget!r}")

    @classmethod
    def given(cls, budget: "BudgetLike | None" = None, mflops: float | None = None, params: float | None = None,
              ms: float | None = None) -> "Budget | None":
        """The one budget given, as itself or in the older keyword spellings (`budget_mflops=`,
        `--budget-ms`); None when none is. More than one is an error."""
        given = [cls(k, v) for k, v in (("mflops", mflops), ("params", params), ("ms", ms)) if v is not None]
        given = ([cls.of(budget)] if budget is not None else []) + given
        if len(given) > 1:
            raise ValueError(f"give exactly one budget, not {len(given)}: {', '.join(map(str, given))}")
        return given[0] if given else None

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "Budget":
        """`{"ms": 12}`, or the older `{"budget_ms": 12}`."""
        found = _keyed(doc)
        if found is None:
            raise ValueError(f"no budget in {dict(doc)!r}: expected one of {', '.join(KINDS)}")
        return found

    @classmethod
    def in_scenario(cls, scenario: Mapping[str, Any]) -> "Budget | None":
        """A scenario's budget: its `budget` field (dict or string), or the older top-level
        `budget_mflops`/`budget_params`/`budget_ms`; None when it has none (a given arch)."""
        if scenario.get("budget") is not None:
            return cls.of(scenario["budget"])
        return _keyed({k: v for k, v in scenario.items() if k.startswith(LEGACY_PREFIX)})

    def to_dict(self) -> dict[str, float]:
        return {self.kind: self.value}

    @property
    def unit(self) -> str:
        return UNITS[self.kind]

    def __str__(self) -> str:
        return f"{self.kind}={_number(self.value)}"


BudgetLike = Union[Budget, str, Mapping[str, Any]]


def _keyed(doc: Mapping[str, Any]) -> Budget | None:
    """The one `{kind: value}` (or `{budget_kind: value}`) entry of `doc` with a value."""
    found = [Budget(k, doc[name]) for k in KINDS for name in (k, LEGACY_PREFIX + k) if doc.get(name) is not None]
    if len(found) > 1:
        raise ValueError(f"give exactly one budget, not {len(found)}: {', '.join(map(str, found))}")
    return found[0] if found else None


def _number(value: float) -> str:
    """The shortest spelling that reads back to the same float ("12", not "12.0")."""
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text
