#!/usr/bin/env bash
# The whole test suite from a fresh Debian machine (Python 3.11): system packages, a test venv
# with the host extras, then pytest. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
APT_PACKAGES=(openssh-server socat iproute2 nftables procps sudo openssl util-linux shellcheck qemu-user-static debootstrap binfmt-support)  # sudo, openssl: the simulated Pi in tests/test_provision.py; last 3: tests/test_arm64.py
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
"$VENV/bin/pip" install -q -e ".[host,remote,serial,tflite,executorch,dev]"

# A second, torch-free environment: what a device has (numpy + a native engine, no torch).
DEVICE_VENV=${EDGE_EAS_DEVICE_VENV:-.venv-device}
if [ ! -x "$DEVICE_VENV/bin/python" ]; then
  "$PY" -m venv "$DEVICE_VENV"
fi
"$DEVICE_VENV/bin/pip" install -q --upgrade pip >/dev/null
"$DEVICE_VENV/bin/pip" install -q ".[runtime,tflite]" pytest hypothesis
if "$DEVICE_VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "error: the device venv has torch: the runtime extras pull it in" >&2
  exit 1
fi
DEVICE_DIR=$(mktemp -d /tmp/edge-eas-device.XXXXXX)
trap 'rm -rf "$DEVICE_DIR"' EXIT

set +e
"$VENV/bin/python" -m pytest -q "$@"
rc=$?
set -e
[ "$rc" -eq 5 ] && { echo "pytest collected no tests"; rc=0; }
[ "$rc" -ne 0 ] && exit "$rc"

echo "--- torch-free device environment ($DEVICE_VENV) ---"
"$VENV/bin/python" -m tests.device.make_bundle "$DEVICE_DIR" >/dev/null
set +e
EDGE_EAS_DEVICE_BUNDLE_DIR="$DEVICE_DIR" "$DEVICE_VENV/bin/python" -m pytest -q -p no:cacheprovider tests/device
drc=$?
set -e
[ "$drc" -eq 5 ] && drc=0
exit "$drc"
