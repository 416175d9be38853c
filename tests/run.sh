#!/usr/bin/env bash
# The whole test suite from a fresh Debian machine (Python 3.11): system packages, a test venv
# with the host extras, then pytest. `.ci/run` calls exactly this.
#
#   bash tests/run.sh [--slow-machine] [pytest args...]
#
# --slow-machine (or EDGE_EAS_SLOW_MACHINE=1) runs the tests on one core while a busy loop takes
# half of it: roughly a 4x slower machine. Use it before changing remote/ or the timing code, so
# nothing depends on how fast this machine happens to be.
set -euo pipefail
cd "$(dirname "$0")/.."

SLOW=${EDGE_EAS_SLOW_MACHINE:-0}
PYTEST_ARGS=()
for arg in "$@"; do
  if [ "$arg" = "--slow-machine" ]; then SLOW=1; else PYTEST_ARGS+=("$arg"); fi
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# sudo, openssl: the simulated Pi in tests/test_provision.py; qemu-user-static debootstrap binfmt-support:
# tests/test_arm64.py; dataset-fashion-mnist: the Fashion-MNIST loader on the real files
APT_PACKAGES=(openssh-server socat iproute2 nftables procps sudo openssl util-linux shellcheck qemu-user-static
              debootstrap binfmt-support dataset-fashion-mnist)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
VENV=${EDGE_EAS_TEST_VENV:-.venv-test}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip >/dev/null
# torch only as the local CPU wheel; the extras' torch range is satisfied by it, so nothing else is pulled.
"$VENV/bin/pip" install -q torch==2.13.0
"$VENV/bin/pip" install -q -e ".[host,remote,serial,tflite,executorch,onnx,dev]"

# A second, torch-free environment: what a device has (numpy + a native engine, no torch).
DEVICE_VENV=${EDGE_EAS_DEVICE_VENV:-.venv-device}
if [ ! -x "$DEVICE_VENV/bin/python" ]; then
  "$PY" -m venv "$DEVICE_VENV"
fi
"$DEVICE_VENV/bin/pip" install -q --upgrade pip >/dev/null
"$DEVICE_VENV/bin/pip" install -q ".[runtime,tflite,onnx]" pytest hypothesis
if "$DEVICE_VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "error: the device venv has torch: the runtime extras pull it in" >&2
  exit 1
fi
DEVICE_DIR=$(mktemp -d /tmp/edge-eas-device.XXXXXX)
BUSY_PID=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  rm -rf "$DEVICE_DIR"
  if [ -n "$BUSY_PID" ]; then kill "$BUSY_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

ON_CPU=()
if [ "$SLOW" = "1" ]; then
  echo "slow-machine mode: tests pinned to CPU 0, a busy loop taking half of it"
  taskset -c 0 bash -c 'while :; do :; done' &
  BUSY_PID=$!
  ON_CPU=(taskset -c 0)
fi

# The layers (.importlinter: the device side never imports torch, no import cycles, ...) come first:
# a broken contract is a design error, whatever the tests say.
"$VENV/bin/lint-imports" --no-cache

set +e
# tests/device runs below, in the torch-free venv; here it would only be skipped
"${ON_CPU[@]}" "$VENV/bin/python" -m pytest -q --ignore=tests/device "${PYTEST_ARGS[@]}"
rc=$?
set -e
[ "$rc" -eq 5 ] && { echo "pytest collected no tests"; rc=0; }
[ "$rc" -ne 0 ] && exit "$rc"

echo "--- torch-free device environment ($DEVICE_VENV) ---"
"$VENV/bin/python" -m tests.device.make_bundle "$DEVICE_DIR" >/dev/null
set +e
EDGE_EAS_DEVICE_BUNDLE_DIR="$DEVICE_DIR" "${ON_CPU[@]}" "$DEVICE_VENV/bin/python" -m pytest -q -p no:cacheprovider tests/device
drc=$?
set -e
[ "$drc" -eq 5 ] && drc=0
exit "$drc"
