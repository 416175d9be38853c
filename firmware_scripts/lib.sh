# shellcheck shell=bash
# Shared by the firmware scripts (sourced, not run): where the device's /proc, /sys and /etc are,
# and which kind of board this is.
#
# EDGE_EAS_SYSFS_ROOT (default /) moves /proc, /sys and /etc to a fake tree (the tests use it).
ROOT="${EDGE_EAS_SYSFS_ROOT:-/}"
ROOT="${ROOT%/}"

# raspberry-pi | jetson | generic, from the device-tree model and the Jetson release file.
detect_board() {
    local model=""
    if [ -r "$ROOT/proc/device-tree/model" ]; then
        model="$(tr -d '\0' < "$ROOT/proc/device-tree/model")"
    fi
    if [[ "$model" == *"Raspberry Pi"* ]]; then
        echo "raspberry-pi"
    elif [ -e "$ROOT/etc/nv_tegra_release" ] || [[ "$model" == *"NVIDIA Jetson"* ]]; then
        echo "jetson"
    else
        echo "generic"
    fi
}
