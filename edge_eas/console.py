"""Terminal output helpers: JSON mode, rich tables and progress bars only on a terminal."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator, Sequence


def emit_json(doc: Any) -> None:
    """The one JSON document a `--json` command prints on stdout."""
    sys.stdout.write(json.dumps(doc, indent=2, default=_default) + "\n")


def _default(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # device side: plain text
        print(title)
        print("  ".join(columns))
        for row in rows:
            print("  ".join(str(c) for c in row))
        return
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for row in rows:
        table.add_row(*[str(c) for c in row])
    Console().print(table)


def info(msg: str) -> None:
    """Human progress messages go to stderr so stdout stays clean for --json."""
    print(msg, file=sys.stderr, flush=True)


class Progress:
    """A progress bar on a terminal (rich), silent otherwise. `advance(n, **fields)` updates it."""

    def __init__(self, total: int, description: str, enabled: bool | None = None) -> None:
        self.total, self.description = total, description
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress = None
        self._task = None

    def __enter__(self) -> "Progress":
        if self.enabled:
            try:
                from rich.console import Console
                from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
                                           TimeElapsedColumn, TimeRemainingColumn)
            except ImportError:
                self.enabled = False
                return self
            self._progress = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                          TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                          TextColumn("{task.fields[status]}"), console=Console(stderr=True),
                                          transient=False)
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, status="")
        return self

    def advance(self, n: int = 1, status: str = "") -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=n, status=status)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


@contextmanager
def progress(total: int, description: str) -> Iterator[Progress]:
    with Progress(total, description) as p:
        yield p
