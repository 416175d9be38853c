"""The device agent's stdout: one JSON object per line, written whole (thread-safe), plus an
optional heartbeat.

Why a heartbeat: the host treats a long silence on the SSH channel as a dead link or a hung
device. A slow board (a Raspberry Pi 3B, a loaded machine) can stay silent for seconds while
it loads a bundle, extracts a sub-network, builds an engine or runs thousands of timed runs.
With `--heartbeat S` a background thread writes a `Heartbeat` message whenever nothing
else was written for S seconds, so silence really means the link or the device is gone.
The host ignores heartbeat lines except as proof of life.
"""

from __future__ import annotations

import threading
import time
from typing import IO, Any

from edge_eas.runtime.agent.messages import Heartbeat, Message, to_line


class AgentOutput:
    """Writes JSON lines to `stream`; with `heartbeat_s`, beats while nothing else is written.
    Use as a context manager so the heartbeat thread stops with the agent."""

    def __init__(self, stream: IO[str], heartbeat_s: float | None = None) -> None:
        if heartbeat_s is not None and heartbeat_s <= 0:
            raise ValueError(f"heartbeat interval must be positive, got {heartbeat_s}")
        self._stream = stream
        self._interval = heartbeat_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last = time.monotonic()
        self._started = self._last
        self._phase = "starting"
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "AgentOutput":
        if self._interval is not None:
            self.heartbeat()  # first sign of life as soon as the agent runs, before the bundle loads
            self._thread = threading.Thread(target=self._beat, name="agent-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def phase(self, name: str) -> None:
        """What the agent is doing now; heartbeats carry it (useful when a device is slow)."""
        self._phase = name

    def emit(self, msg: Message) -> None:
        line = to_line(msg) + "\n"
        with self._lock:
            self._stream.write(line)
            self._stream.flush()
            self._last = time.monotonic()

    def heartbeat(self) -> None:
        self.emit(Heartbeat(self._phase, round(time.monotonic() - self._started, 3)))

    def _beat(self) -> None:
        assert self._interval is not None
        while not self._stop.wait(min(self._interval, max(0.0, self._last + self._interval - time.monotonic()))):
            if time.monotonic() - self._last >= self._interval:
                try:
                    self.heartbeat()
                except (OSError, ValueError):  # stdout closed: the host went away
                    return
