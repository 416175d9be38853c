"""Terminal output helpers: JSON mode, rich tables and progress bars only on a terminal."""

from __future__ import annotations

import json
import sys
import time
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
    """A progress bar on a terminal (rich). Not on a terminal (a log file, nohup, CI) it writes a
    plain line every `log_every_s` seconds instead, so long jobs still show where they are;
    `enabled=False` silences both. `advance(n, status)` updates it."""

    def __init__(self, total: int, description: str, enabled: bool | None = None, log_every_s: float = 60.0) -> None:
        self.total, self.description = total, description
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._plain = enabled is None and not self.enabled
        self._progress = None
        self._task = None
        self._done = 0
        self._start = self._last_log = time.monotonic()
        self._log_every = log_every_s

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
        self._done += n
        if self._progress is not None:
            self._progress.update(self._task, advance=n, status=status)
        elif self._plain and n and (time.monotonic() - self._last_log >= self._log_every or self._done >= self.total):
            self._last_log = now = time.monotonic()
            elapsed = now - self._start
            eta = elapsed / self._done * (self.total - self._done) if self._done else float("nan")
            info(f"{self.description}: {self._done}/{self.total} ({100 * self._done / max(1, self.total):.0f}%) "
                 f"elapsed {elapsed:.0f} s, eta {eta:.0f} s" + (f", {status}" if status else ""))

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


@contextmanager
def progress(total: int, description: str) -> Iterator[Progress]:
    with Progress(total, description) as p:
        yield p
