#!/usr/bin/env bash
# Create the on-device runtime venv and install numpy, an inference engine and edge-eas.
#
#   setup_device.sh --runtime-dir DIR [--python PY] [--wheels DIR]
#                   [--engine auto|tflite-runtime|ai-edge-litert|none]
#
# - DIR/venv is created with PY (default python3) only if it does not exist yet.
# - With --wheels, everything is installed offline: pip install --no-index --find-links WHEELS.
#   Without it, packages come from the registry.
# - --engine auto tries ai-edge-litert, then tflite-runtime. An engine that cannot be installed is
#   a warning, not an error: the numpy engine of edge-eas always works.
# - edge-eas itself is installed from WHEELS when an edge_eas-*.whl is there.
# - Idempotent: packages that already import are not installed again and the venv is reused.
#
# Environment: EDGE_EAS_SYSFS_ROOT (default /) is where board detection looks for /proc and /etc.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    echo "usage: $(basename "$0") --runtime-dir DIR [--python PY] [--wheels DIR] [--engine auto|tflite-runtime|ai-edge-litert|none]" >&2
}
say() { printf 'setup_device: %s\n' "$*"; }
warn() { printf 'setup_device: warning: %s\n' "$*" >&2; }
die() { printf 'setup_device: error: %s\n' "$*" >&2; exit 1; }

RUNTIME_DIR=""
PY="python3"
WHEELS=""
ENGINE="auto"
need_value() { [ "$#" -ge 2 ] && [ -n "$2" ] || { usage; die "$1 needs a value"; }; }
while [ "$#" -gt 0 ]; do
    case "$1" in
        --runtime-dir) need_value "$@"; RUNTIME_DIR="$2"; shift ;;
        --python) need_value "$@"; PY="$2"; shift ;;
        --wheels) need_value "$@"; WHEELS="$2"; shift ;;
        --engine) need_value "$@"; ENGINE="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage; die "unknown argument: $1" ;;
    esac
    shift
done
[ -n "$RUNTIME_DIR" ] || { usage; die "--runtime-dir is required"; }
case "$ENGINE" in
    auto|tflite-runtime|ai-edge-litert|none) ;;
    *) die "unknown engine '$ENGINE' (expected auto, tflite-runtime, ai-edge-litert or none)" ;;
esac
if [ -n "$WHEELS" ] && [ ! -d "$WHEELS" ]; then
    die "wheels directory not found: $WHEELS"
fi

BOARD="$(detect_board)"
say "board: $BOARD"

VENV="$RUNTIME_DIR/venv"
VPY="$VENV/bin/python"
if [ -x "$VPY" ]; then
    say "venv already exists: $VENV"
else
    command -v "$PY" >/dev/null 2>&1 || die "python interpreter not found: $PY"
    mkdir -p -- "$RUNTIME_DIR"
    say "creating venv $VENV with $PY"
    "$PY" -m venv -- "$VENV" || die "could not create venv $VENV with $PY (is python3-venv installed?)"
fi

# pip arguments for the package source, as an array (never a shell string).
PIP_SOURCE=()
if [ -n "$WHEELS" ]; then
    PIP_SOURCE=(--no-index --find-links "$WHEELS")
fi
pip_install() {
    "$VPY" -m pip install --disable-pip-version-check ${PIP_SOURCE[@]+"${PIP_SOURCE[@]}"} "$@"
}
has_module() {
    "$VPY" -c 'import importlib, sys; importlib.import_module(sys.argv[1])' "$1" >/dev/null 2>&1
}
module_for() {
    case "$1" in
        ai-edge-litert) echo "ai_edge_litert" ;;
        tflite-runtime) echo "tflite_runtime" ;;
    esac
}

if has_module numpy; then
    say "numpy already installed"
else
    say "installing numpy"
    pip_install numpy || die "could not install numpy${WHEELS:+ from $WHEELS}"
fi

INSTALLED_ENGINE="none (numpy engine only)"
case "$ENGINE" in
    auto) CANDIDATES=(ai-edge-litert tflite-runtime) ;;
    none) CANDIDATES=() ;;
    *) CANDIDATES=("$ENGINE") ;;
esac
# An engine that is already there counts, whichever was asked for first.
for pkg in ${CANDIDATES[@]+"${CANDIDATES[@]}"}; do
    if has_module "$(module_for "$pkg")"; then
        INSTALLED_ENGINE="$pkg (already installed)"
        CANDIDATES=()
        break
    fi
done
for pkg in ${CANDIDATES[@]+"${CANDIDATES[@]}"}; do
    say "installing engine $pkg"
    if pip_install "$pkg" && has_module "$(module_for "$pkg")"; then
        INSTALLED_ENGINE="$pkg"
        break
    fi
    warn "could not install $pkg"
done
if [ "$ENGINE" != "none" ] && [[ "$INSTALLED_ENGINE" == none* ]]; then
    warn "no TFLite engine installed; edge-eas will use its numpy engine"
fi

EDGE_EAS_STATUS="not installed (no edge_eas-*.whl in wheels dir)"
if [ -n "$WHEELS" ]; then
    WHL=""
    for f in "$WHEELS"/edge_eas-*.whl; do
        if [ -f "$f" ]; then WHL="$f"; fi
    done
    if [ -n "$WHL" ]; then
        say "installing edge-eas from $WHL"
        if pip_install "$WHL"; then
            EDGE_EAS_STATUS="$("$VPY" -c 'import importlib.metadata as m; print(m.version("edge-eas"))')"
        else
            die "could not install $WHL"
        fi
    fi
fi

PY_VERSION="$("$VPY" -c 'import platform; print(platform.python_version())')"
NP_VERSION="$("$VPY" -c 'import numpy; print(numpy.__version__)')"
say "summary:"
say "  board:    $BOARD"
say "  venv:     $VENV"
say "  python:   $PY_VERSION"
say "  numpy:    $NP_VERSION"
say "  engine:   $INSTALLED_ENGINE"
say "  edge-eas: $EDGE_EAS_STATUS"
