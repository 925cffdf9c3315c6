#!/usr/bin/env bash
# Does a program put its icon into a real X11 system tray?  Starts Xvfb and trayer (a small standalone tray),
# starts the program, and waits until one of the program's windows has been docked inside trayer's window.
#
#   bash installer/linux/tray_check.sh DISPLAY_NUMBER TIMEOUT_SECONDS PROGRAM [ARGS...]
#   bash installer/linux/tray_check.sh 98 60 /usr/bin/potluck
#
# Needs xvfb, trayer, xdotool and x11-utils (xwininfo, xprop). Set POTLUCK_TRAY_SCREENSHOT=FILE.png to save a
# screenshot of the screen (needs imagemagick's `import`). Exits 0 when the icon is docked, 1 otherwise; kills
# everything it started either way.
set -uo pipefail

if [ $# -lt 3 ]; then
    sed -n '2,10p' "$0"
    exit 2
fi
NUM="$1"; TIMEOUT="$2"; shift 2
# Another X server may hold :NUM (a parallel job): take the next free number. A lock whose process is gone is stale.
for _ in 1 2 3 4 5 6 7 8 9 10; do
    lock="/tmp/.X${NUM}-lock"
    [ -e "$lock" ] || break
    holder="$(tr -dc '0-9' < "$lock" 2>/dev/null)"
    if [ -n "$holder" ] && kill -0 "$holder" 2>/dev/null; then
        NUM=$((NUM + 1))
    else
        rm -f "$lock" "/tmp/.X11-unix/X${NUM}"
        break
    fi
done
export DISPLAY=":$NUM"
LOG="$(mktemp -d "${TMPDIR:-/tmp}/potluck-tray.XXXXXX")"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
    rm -rf "$LOG"
}
trap cleanup EXIT

for tool in Xvfb trayer xdotool xwininfo xprop; do
    command -v "$tool" >/dev/null || { echo "tray_check: $tool not found (apt-get install -y xvfb trayer xdotool x11-utils)"; exit 1; }
done

wait_for() {  # wait_for SECONDS COMMAND...: poll every 0.2 s until the command succeeds
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.2
    done
}

# An X server that another job started without a lock file makes ours exit at once ("server already active"):
# then try the next display number.
for _ in 1 2 3 4 5; do
    Xvfb "$DISPLAY" -screen 0 1280x800x24 -nolisten tcp >"$LOG/xvfb.log" 2>&1 &
    XVFB_PID=$!
    PIDS+=($XVFB_PID)
    if wait_for 20 xwininfo -root && sleep 0.5 && kill -0 "$XVFB_PID" 2>/dev/null; then
        break
    fi
    NUM=$((NUM + 1))
    export DISPLAY=":$NUM"
done
kill -0 "$XVFB_PID" 2>/dev/null || { echo "tray_check: Xvfb did not start"; cat "$LOG/xvfb.log"; exit 1; }

trayer --edge top --align right --widthtype pixel --width 200 --height 32 --SetDockType true >"$LOG/trayer.log" 2>&1 &
TRAYER_PID=$!
PIDS+=($TRAYER_PID)
wait_for 20 xdotool search --pid "$TRAYER_PID" \
    || { echo "tray_check: trayer did not open its window"; cat "$LOG/trayer.log"; exit 1; }
TRAYER_WINDOWS="$(xdotool search --pid "$TRAYER_PID" 2>/dev/null | tr '\n' ' ')"

# Qt chooses the XEmbed tray when no StatusNotifier watcher is on the session bus; make sure none is reachable.
env -u DBUS_SESSION_BUS_ADDRESS QT_QPA_PLATFORM=xcb "$@" >"$LOG/program.log" 2>&1 &
APP_PID=$!
PIDS+=($APP_PID)

is_inside_trayer() {  # is_inside_trayer WINDOW: walk up the parents; true when one of them is trayer's window
    local w="$1" parent
    for _ in 1 2 3 4 5 6 7 8; do
        parent="$(xwininfo -children -id "$w" 2>/dev/null | sed -n 's/^ *Parent window id: \(0x[0-9a-f]*\).*/\1/p')"
        # 0x0: w was the root window (and `xwininfo -id 0x0` would wait for a mouse click)
        { [ -z "$parent" ] || [ $((parent)) = 0 ]; } && return 1
        for t in $TRAYER_WINDOWS; do
            [ $((parent)) = $((t)) ] && return 0
        done
        w="$parent"
    done
    return 1
}

docked=""
deadline=$((SECONDS + TIMEOUT))
while [ $SECONDS -lt $deadline ]; do
    if ! kill -0 "$APP_PID" 2>/dev/null; then
        wait "$APP_PID"; rc=$?
        echo "tray_check: the program exited (code $rc) before its tray icon appeared; its output:"
        tail -40 "$LOG/program.log"
        exit 1
    fi
    for w in $(xdotool search --pid "$APP_PID" 2>/dev/null); do
        if is_inside_trayer "$w"; then docked="$w"; break 2; fi
    done
    sleep 0.5
done

if [ -n "${POTLUCK_TRAY_SCREENSHOT:-}" ] && command -v import >/dev/null; then
    sleep 1
    import -window root "$POTLUCK_TRAY_SCREENSHOT" 2>/dev/null && echo "tray_check: screenshot $POTLUCK_TRAY_SCREENSHOT"
fi
if [ -n "$docked" ]; then
    geometry="$(xwininfo -id "$docked" | sed -n 's/^ *-geometry \(.*\)/\1/p')"
    echo "tray_check: window $docked of pid $APP_PID is docked in trayer on $DISPLAY (geometry $geometry)"
    exit 0
fi
echo "tray_check: no window of pid $APP_PID was docked in trayer within $TIMEOUT s; windows on screen:"
xwininfo -root -tree | head -40
echo "tray_check: the program's output:"
tail -40 "$LOG/program.log"
exit 1
