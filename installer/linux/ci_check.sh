#!/usr/bin/env bash
# The .deb's end-to-end check, for CI and for anyone on a Debian/Ubuntu machine with root:
#   build the frozen program -> build the .deb -> install it -> potluck --self-test from the installed path ->
#   the GUI starts under Xvfb and its icon appears in a real system tray (trayer) -> dpkg -r -> nothing left.
#
#   sudo bash installer/linux/ci_check.sh
#
# Environment:
#   POTLUCK_SKIP_BUILD=1        reuse dist/potluck instead of running packaging/build.py
#   POTLUCK_DIST=DIR            the one-folder build to package (default dist/potluck)
#   POTLUCK_SELFTEST_TIMEOUT=S  seconds allowed for --self-test (default 900)
#   POTLUCK_TRAY_TIMEOUT=S      seconds to wait for the tray icon (default 60)
#   POTLUCK_CI_PYTHON=python3   the interpreter that runs the build (needs the project and pyinstaller installed)
#
# Prints one PASS/FAIL line per step and a summary; exits 1 if any step failed (2 if it could not start).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${POTLUCK_CI_PYTHON:-python3}"
DIST="${POTLUCK_DIST:-$ROOT/dist/potluck}"
OUT="$ROOT/dist"
DISPLAY_NUM=98
FAILED=0
PIDS=()
WORK="$(mktemp -d "${TMPDIR:-/tmp}/potluck-ci.XXXXXX")"

pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; FAILED=$((FAILED + 1)); }
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ "$(id -u)" != "0" ]; then
    echo "ci_check.sh: ERROR: run as root (it installs and removes a package)" >&2
    exit 2
fi
if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
    echo "ci_check.sh: ERROR: needs a Debian/Ubuntu machine (apt-get, dpkg)" >&2
    exit 2
fi

# ---- tools: install only what is missing, so a warm machine skips apt entirely -------------------------------
NEEDED_DEBS="xvfb trayer xdotool x11-utils dpkg-dev zstd libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4
libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0 libxcb-randr0 libxcb-render-util0 libxcb-image0 libegl1 libgl1
libfontconfig1 libdbus-1-3"
missing=()
for deb in $NEEDED_DEBS; do
    dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q "install ok installed" || missing+=("$deb")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "ci_check.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if apt-get update -qq >"$WORK/apt.log" 2>&1 && apt-get install -y -qq "${missing[@]}" >>"$WORK/apt.log" 2>&1; then
        pass "tools installed (${missing[*]})"
    else
        tail -20 "$WORK/apt.log"
        fail "apt-get install ${missing[*]}"
        exit 1
    fi
fi

# ---- 1. frozen program ----------------------------------------------------------------------------------------
if [ "${POTLUCK_SKIP_BUILD:-0}" = "1" ] && [ -x "$DIST/potluck" ]; then
    pass "frozen build reused: $DIST"
else
    if ! "$PY" -c "import PyInstaller" 2>/dev/null; then
        "$PY" -m pip install -q "pyinstaller>=6.5" || true
    fi
    "$PY" "$ROOT/packaging/build.py" --dist "$(dirname "$DIST")" >"$WORK/build.log" 2>&1
    rc=$?
    grep "^build.py:" "$WORK/build.log"
    if [ $rc = 0 ] && [ -x "$DIST/potluck" ]; then
        pass "frozen build: $(grep 'bundle size' "$WORK/build.log" | sed 's/^build.py: //')"
    else
        tail -30 "$WORK/build.log"
        fail "frozen build (python packaging/build.py exited $rc)"
        exit 1
    fi
fi

# ---- 2. package -----------------------------------------------------------------------------------------------
rm -f "$OUT"/potluck_*.deb
if bash "$ROOT/installer/linux/build_deb.sh" --dist "$DIST" --out "$OUT"; then
    DEB="$(ls "$OUT"/potluck_*.deb | head -1)"
    pass "deb built: $DEB"
else
    fail "build_deb.sh"
    exit 1
fi

# ---- 3. install -----------------------------------------------------------------------------------------------
dpkg -r potluck >/dev/null 2>&1 || true  # a leftover from an interrupted run
if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$DEB" >"$WORK/install.log" 2>&1; then
    pass "installed with apt-get install ./$(basename "$DEB")"
else
    tail -20 "$WORK/install.log"
    fail "apt-get install $DEB"
    exit 1
fi
for path in /usr/bin/potluck /opt/potluck/potluck /usr/share/applications/potluck.desktop \
            /usr/share/icons/hicolor/256x256/apps/potluck.png /usr/share/icons/hicolor/16x16/apps/potluck.png; do
    [ -e "$path" ] || fail "installed file missing: $path"
done
[ $FAILED = 0 ] && pass "installed layout (/opt/potluck, /usr/bin/potluck, desktop entry, hicolor icons)"

# ---- 4. self-test from the installed path ---------------------------------------------------------------------
export HOME="$WORK/home" XDG_CONFIG_HOME="$WORK/home/.config" XDG_DATA_HOME="$WORK/home/.local/share"
export XDG_CACHE_HOME="$WORK/home/.cache" XDG_RUNTIME_DIR="$WORK/run"
mkdir -p "$HOME" "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
cd "$WORK"  # not the source tree: the installed program must not lean on it
started=$SECONDS
timeout "${POTLUCK_SELFTEST_TIMEOUT:-900}" /usr/bin/potluck --self-test >"$WORK/selftest.log" 2>&1
rc=$?
if [ $rc = 0 ]; then
    pass "/usr/bin/potluck --self-test exited 0 in $((SECONDS - started)) s"
else
    tail -40 "$WORK/selftest.log"
    fail "/usr/bin/potluck --self-test exited $rc after $((SECONDS - started)) s"
fi

# ---- 5. GUI with a tray icon under Xvfb -----------------------------------------------------------------------
bash "$ROOT/installer/linux/tray_check.sh" "$DISPLAY_NUM" "${POTLUCK_TRAY_TIMEOUT:-60}" /usr/bin/potluck \
    && pass "GUI started and showed its icon in the system tray (Xvfb + trayer)" \
    || fail "GUI tray icon under Xvfb (see tray_check.sh output above)"

# ---- 6. removal -----------------------------------------------------------------------------------------------
if dpkg -r potluck >"$WORK/remove.log" 2>&1; then
    leftovers=""
    for path in /opt/potluck /usr/bin/potluck /usr/share/applications/potluck.desktop \
                /usr/share/icons/hicolor/256x256/apps/potluck.png /etc/xdg/autostart/potluck.desktop; do
        [ -e "$path" ] && leftovers="$leftovers $path"
    done
    if [ -z "$leftovers" ]; then
        pass "dpkg -r potluck removed everything (/opt/potluck is gone)"
    else
        fail "left behind after dpkg -r:$leftovers"
    fi
else
    cat "$WORK/remove.log"
    fail "dpkg -r potluck"
fi

if [ $FAILED = 0 ]; then
    echo "ci_check.sh: ALL PASSED"
    exit 0
fi
echo "ci_check.sh: $FAILED check(s) FAILED"
exit 1
