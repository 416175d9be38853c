"""What a latency number depends on, recorded next to it: CPU, cores, governor, temperature,
throttling hints and library versions. Reads only /proc and /sys; every field may be None."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

SYSFS_ROOT_ENV = "EDGE_EAS_SYSFS_ROOT"  # root of /proc, /sys, /etc (default /), as for firmware_scripts; tests fake a board


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_model() -> str | None:
    text = _read(Path("/proc/cpuinfo")) or ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            if line.lower().startswith(key.lower()) and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def temperature_c(sys_dir: Path) -> float | None:
    """Highest thermal-zone reading in degrees C (Pi and Jetson both expose these)."""
    temps = []
    for zone in sorted((sys_dir / "class/thermal").glob("thermal_zone*/temp")):
        raw = _read(zone)
        if raw and raw.lstrip("-").isdigit():
            temps.append(int(raw) / 1000.0)
    return max(temps) if temps else None


def library_versions() -> dict[str, str]:
    from importlib import metadata
    out = {}
    for dist in ("numpy", "threadpoolctl", "edge-eas", "ai-edge-litert", "tflite-runtime", "executorch", "torch",
                 "onnxruntime", "onnxruntime-gpu"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def describe(threads: int | None = None, threads_read_back: int | None = None) -> dict[str, Any]:
    """`threads`: what the measurement is filed under; `threads_read_back`: what the engine's
    library said it runs with (None: it cannot say)."""
    root = Path(os.environ.get(SYSFS_ROOT_ENV, "/"))
    sys_dir = root / "sys"
    cpu0 = sys_dir / "devices/system/cpu/cpu0/cpufreq"
    model = _read(root / "proc/device-tree/model")
    return {
        "hostname": platform.node(), "machine": platform.machine(), "system": platform.system(),
        "python": platform.python_version(), "cpu_model": cpu_model(), "cores": os.cpu_count(),
        "threads": threads, "threads_read_back": threads_read_back, "governor": _read(cpu0 / "scaling_governor"),
        "cpu_freq_khz": _read(cpu0 / "scaling_cur_freq"), "temperature_c": temperature_c(sys_dir),
        "throttled": _read(sys_dir / "devices/platform/soc/soc:firmware/get_throttled"),
        "board_model": model.replace("\0", "") if model else None,
        "versions": library_versions(),
    }
