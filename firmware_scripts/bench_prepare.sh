#!/usr/bin/env bash
# Prepare a Raspberry Pi / Jetson / generic Linux board for benchmarking, or undo it.
#
#   bench_prepare.sh [--restore] [--json]
#
# Pi / generic: saves each CPU's cpufreq governor once, then sets "performance" where available.
# Jetson:       `jetson_clocks --store STATE` (once) then `jetson_clocks`; reports `nvpmodel -q`
#               (the power mode is never changed).
# Always reports the hottest thermal zone (deg C) and the throttling state.
# --restore puts the saved state back and removes the state file; with no state it is a no-op.
#
# Environment:
#   EDGE_EAS_SYSFS_ROOT  root of /proc, /sys, /etc (default /); tests point it at a fake tree.
#   EDGE_EAS_STATE_DIR   where the state file lives (default ~/.edge_eas).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    echo "usage: $(basename "$0") [--restore] [--json]" >&2
}

RESTORE=0
JSON=0
while [ "$#" -gt 0 ]; do
    case "$1" in
        --restore) RESTORE=1 ;;
        --json) JSON=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench_prepare: unknown argument: $1" >&2; usage; exit 2 ;;
    esac
    shift
done

STATE_DIR="${EDGE_EAS_STATE_DIR:-${HOME:-/tmp}/.edge_eas}"
STATE_FILE="$STATE_DIR/bench_prepare.state"

# Human-readable messages go to stderr when --json is given, so stdout stays one JSON object.
say() {
    if [ "$JSON" -eq 1 ]; then
        printf 'bench_prepare: %s\n' "$*" >&2
    else
        printf 'bench_prepare: %s\n' "$*"
    fi
}
warn() { printf 'bench_prepare: warning: %s\n' "$*" >&2; }

json_escape() {
    # Escape a string for a JSON string literal (backslash, quote, control characters).
    local s="$1"
    s="${s//\\/\\\\}"
    s="${s//\"/\\\"}"
    s="${s//$'\n'/\\n}"
    s="${s//$'\r'/\\r}"
    s="${s//$'\t'/\\t}"
    printf '"%s"' "$s"
}


# CPU directories with a cpufreq governor, in numeric order.
cpu_dirs() {
    local d
    for d in "$ROOT"/sys/devices/system/cpu/cpu[0-9]*; do
        if [ -f "$d/cpufreq/scaling_governor" ]; then printf '%s\n' "$d"; fi
    done | sort -V
}

# "cpu0=ondemand cpu1=ondemand ..." as JSON object text.
governors_json() {
    local d first=1 out="{"
    while IFS= read -r d; do
        [ -n "$d" ] || continue
        [ "$first" -eq 1 ] || out+=", "
        first=0
        out+="$(json_escape "$(basename "$d")"): $(json_escape "$(cat "$d/cpufreq/scaling_governor")")"
    done < <(cpu_dirs)
    printf '%s}' "$out"
}

max_temperature() {
    local f t max=""
    for f in "$ROOT"/sys/class/thermal/thermal_zone*/temp; do
        [ -r "$f" ] || continue
        t="$(tr -dc '0-9-' < "$f")"
        [ -n "$t" ] || continue
        if [ -z "$max" ] || [ "$t" -gt "$max" ]; then max="$t"; fi
    done
    if [ -z "$max" ]; then
        echo "null"
    else
        awk -v m="$max" 'BEGIN { printf "%.1f", m / 1000 }'
    fi
}

throttled_state() {
    local board="$1" out
    if [ "$board" = "raspberry-pi" ]; then
        if command -v vcgencmd >/dev/null 2>&1 && out="$(vcgencmd get_throttled 2>/dev/null)"; then
            echo "${out#throttled=}"
            return
        fi
        local f="$ROOT/sys/devices/platform/soc/soc:firmware/get_throttled"
        if [ -r "$f" ]; then
            tr -d '\0\n' < "$f"
            echo
            return
        fi
    fi
    echo "unknown"
}

BOARD="$(detect_board)"
say "board: $BOARD (sysfs root: ${ROOT:-/})"
GOV_BEFORE="$(governors_json)"
CHANGED=false
POWER_MODE=""

if [ "$RESTORE" -eq 1 ]; then
    if [ ! -f "$STATE_FILE" ]; then
        say "nothing to restore (no state file at $STATE_FILE)"
    elif [ "$BOARD" = "jetson" ]; then
        if command -v jetson_clocks >/dev/null 2>&1; then
            jetson_clocks --restore "$STATE_FILE"
            say "restored clocks with jetson_clocks --restore $STATE_FILE"
            CHANGED=true
        else
            warn "jetson_clocks not on PATH; cannot restore clocks"
        fi
        rm -f -- "$STATE_FILE"
    else
        while read -r cpu gov; do
            [ -n "$cpu" ] && [ -n "$gov" ] || continue
            f="$ROOT/sys/devices/system/cpu/$cpu/cpufreq/scaling_governor"
            if [ ! -f "$f" ]; then
                warn "$cpu has no cpufreq governor any more; skipped"
                continue
            fi
            if [ "$(cat "$f")" != "$gov" ]; then
                if printf '%s\n' "$gov" > "$f" 2>/dev/null; then
                    say "$cpu: governor restored to $gov"
                    CHANGED=true
                else
                    warn "$cpu: cannot write $f (run as root?)"
                fi
            fi
        done < "$STATE_FILE"
        rm -f -- "$STATE_FILE"
    fi
else
    mkdir -p -- "$STATE_DIR"
    if [ "$BOARD" = "jetson" ]; then
        if command -v jetson_clocks >/dev/null 2>&1; then
            if [ ! -f "$STATE_FILE" ]; then
                jetson_clocks --store "$STATE_FILE"
                jetson_clocks
                say "clocks stored in $STATE_FILE and maximised with jetson_clocks"
                CHANGED=true
            else
                say "clocks already maximised (state saved in $STATE_FILE); nothing to do"
            fi
        else
            warn "jetson_clocks not on PATH; clocks left as they are"
        fi
        if command -v nvpmodel >/dev/null 2>&1; then
            POWER_MODE="$(nvpmodel -q 2>&1 || true)"
            say "power mode (nvpmodel -q, unchanged): $POWER_MODE"
        fi
    else
        dirs="$(cpu_dirs)"
        if [ -z "$dirs" ]; then
            say "no cpufreq governors found; nothing to change"
        else
            if [ ! -f "$STATE_FILE" ]; then
                tmp="$STATE_FILE.tmp.$$"
                while IFS= read -r d; do
                    printf '%s %s\n' "$(basename "$d")" "$(cat "$d/cpufreq/scaling_governor")"
                done <<< "$dirs" > "$tmp"
                mv -- "$tmp" "$STATE_FILE"
                say "original governors saved in $STATE_FILE"
            else
                say "original governors already saved in $STATE_FILE; keeping them"
            fi
            while IFS= read -r d; do
                cpu="$(basename "$d")"
                avail=""
                [ -r "$d/cpufreq/scaling_available_governors" ] && avail="$(cat "$d/cpufreq/scaling_available_governors")"
                if [[ " $avail " != *" performance "* ]]; then
                    warn "$cpu: performance governor not available (have: ${avail:-none})"
                    continue
                fi
                if [ "$(cat "$d/cpufreq/scaling_governor")" = "performance" ]; then
                    continue
                fi
                if printf 'performance\n' > "$d/cpufreq/scaling_governor" 2>/dev/null; then
                    say "$cpu: governor set to performance"
                    CHANGED=true
                else
                    warn "$cpu: cannot write $d/cpufreq/scaling_governor (run as root?)"
                fi
            done <<< "$dirs"
        fi
    fi
fi

GOV_AFTER="$(governors_json)"
TEMP="$(max_temperature)"
THROTTLED="$(throttled_state "$BOARD")"

if [ "$JSON" -eq 1 ]; then
    if [ -n "$POWER_MODE" ]; then PM_JSON="$(json_escape "$POWER_MODE")"; else PM_JSON="null"; fi
    printf '{"board": %s, "action": %s, "governors_before": %s, "governors_after": %s, "temperature_c": %s, "throttled": %s, "power_mode": %s, "changed": %s, "state_file": %s}\n' \
        "$(json_escape "$BOARD")" \
        "$(json_escape "$([ "$RESTORE" -eq 1 ] && echo restore || echo prepare)")" \
        "$GOV_BEFORE" "$GOV_AFTER" "$TEMP" "$(json_escape "$THROTTLED")" "$PM_JSON" "$CHANGED" \
        "$(json_escape "$STATE_FILE")"
else
    say "governors: $GOV_AFTER"
    if [ "$TEMP" = "null" ]; then say "temperature: unknown"; else say "temperature: ${TEMP} C"; fi
    say "throttled: $THROTTLED"
    say "changed: $CHANGED"
fi
