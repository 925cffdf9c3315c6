#!/usr/bin/env bash
# Build dist/potluck_<version>_<arch>.deb from the one-folder PyInstaller build (python packaging/build.py).
#
#   bash installer/linux/build_deb.sh [--dist DIR] [--out DIR]
#
# Layout of the package:
#   /opt/potluck/                            the frozen program (potluck + _internal/)
#   /usr/bin/potluck                         a two-line launcher that execs /opt/potluck/potluck
#   /usr/share/applications/potluck.desktop  the menu entry (resources/potluck.desktop)
#   /usr/share/icons/hicolor/NxN/apps/potluck.png and scalable/apps/potluck.svg
#   /etc/xdg/autostart/potluck.desktop       ONLY when built with POTLUCK_DEB_AUTOSTART=1 (starts Potluck for every
#                                            user of the machine at login: meant for dedicated mini PCs). Without it,
#                                            each user turns "start at login" on in the app, which writes that user's
#                                            own ~/.config/autostart/potluck.desktop.
#
# Environment: POTLUCK_DEB_AUTOSTART=1 (see above); POTLUCK_DEB_COMPRESSION=zstd|xz|gzip|none (default zstd: fast on
# a 1 GB payload; dpkg reads it on Debian 12+ and Ubuntu 21.10+).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DIST="$ROOT/dist/potluck"
OUT="$ROOT/dist"
while [ $# -gt 0 ]; do
    case "$1" in
        --dist) DIST="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "build_deb.sh: ERROR: unknown argument $1" >&2; exit 2 ;;
    esac
done

fail() { echo "build_deb.sh: ERROR: $*" >&2; exit 2; }

# ---- inputs, checked before anything is written ---------------------------------------------------------------
problems=()
[ -x "$DIST/potluck" ] || problems+=("$DIST/potluck missing: run python packaging/build.py first")
[ -f "$ROOT/core/__init__.py" ] || problems+=("core/__init__.py missing: it holds __version__")
[ -f "$ROOT/resources/potluck.desktop" ] || problems+=("resources/potluck.desktop missing: restore it from git")
[ -f "$ROOT/resources/potluck.svg" ] || problems+=("resources/potluck.svg missing: run python resources/make_icons.py")
ICON_SIZES="16 22 24 32 48 64 128 256"
if [ ! -d "$ROOT/resources/icons" ]; then
    problems+=("resources/icons missing: run python resources/make_icons.py")
else
    for size in $ICON_SIZES; do
        [ -f "$ROOT/resources/icons/potluck-$size.png" ] \
            || problems+=("resources/icons/potluck-$size.png missing: run python resources/make_icons.py")
    done
fi
command -v dpkg-deb >/dev/null || problems+=("dpkg-deb not found: apt-get install -y dpkg-dev")
command -v python3 >/dev/null || problems+=("python3 not found (needed to read the version)")
if [ ${#problems[@]} -gt 0 ]; then
    for p in "${problems[@]}"; do echo "build_deb.sh: ERROR: $p" >&2; done
    exit 2
fi

VERSION="$(python3 - "$ROOT/core/__init__.py" <<'PY'
import ast, sys
for node in ast.parse(open(sys.argv[1], encoding="utf-8").read()).body:
    if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
        print(ast.literal_eval(node.value)); break
PY
)"
[ -n "$VERSION" ] || fail "no __version__ in core/__init__.py: it is the one source of the version"
ARCH="$(dpkg --print-architecture)"
COMPRESSION="${POTLUCK_DEB_COMPRESSION:-zstd}"
case "$COMPRESSION" in zstd|xz|gzip|none) ;; *) fail "POTLUCK_DEB_COMPRESSION must be zstd, xz, gzip or none" ;; esac
PACKAGE="$OUT/potluck_${VERSION}_${ARCH}.deb"
# PyInstaller copies some of the build machine's own libraries into the bundle, so the bundle needs at least the
# build machine's glibc (2.36 when built on Debian 12).
GLIBC_MIN="$(dpkg-query -W -f='${Version}' libc6 2>/dev/null | sed 's/-.*//')"
GLIBC_MIN="${GLIBC_MIN:-2.31}"

# ---- staging tree ---------------------------------------------------------------------------------------------
mkdir -p "$OUT"
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/potluck-deb.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
PKG="$STAGE/pkg"
mkdir -p "$PKG/DEBIAN" "$PKG/opt" "$PKG/usr/bin" "$PKG/usr/share/applications"

cp -a "$DIST" "$PKG/opt/potluck"
cat > "$PKG/usr/bin/potluck" <<'SH'
#!/bin/sh
exec /opt/potluck/potluck "$@"
SH
chmod 0755 "$PKG/usr/bin/potluck"
install -m 0644 "$ROOT/resources/potluck.desktop" "$PKG/usr/share/applications/potluck.desktop"
for size in $ICON_SIZES; do
    install -D -m 0644 "$ROOT/resources/icons/potluck-$size.png" \
        "$PKG/usr/share/icons/hicolor/${size}x${size}/apps/potluck.png"
done
install -D -m 0644 "$ROOT/resources/potluck.svg" "$PKG/usr/share/icons/hicolor/scalable/apps/potluck.svg"
if [ "${POTLUCK_DEB_AUTOSTART:-0}" = "1" ]; then
    mkdir -p "$PKG/etc/xdg/autostart"
    { cat "$ROOT/resources/potluck.desktop"; echo "X-GNOME-Autostart-enabled=true"; } \
        > "$PKG/etc/xdg/autostart/potluck.desktop"
    chmod 0644 "$PKG/etc/xdg/autostart/potluck.desktop"
fi
# Plain permissions whatever the umask of the build machine: directories 755, files 644 unless executable.
find "$PKG" -type d -exec chmod 0755 {} +
find "$PKG/opt/potluck" -type f -perm /111 -exec chmod 0755 {} +
find "$PKG/opt/potluck" -type f ! -perm /111 -exec chmod 0644 {} +

INSTALLED_KB="$(du -sk --exclude=DEBIAN "$PKG" | cut -f1)"
cat > "$PKG/DEBIAN/control" <<EOF
Package: potluck
Version: $VERSION
Architecture: $ARCH
Maintainer: Potluck developers <potluck@localhost>
Installed-Size: $INSTALLED_KB
Section: net
Priority: optional
Depends: libc6 (>= $GLIBC_MIN), libglib2.0-0, libfontconfig1, libfreetype6, libdbus-1-3, libegl1, libgl1, libx11-6, libx11-xcb1, libxkbcommon0, libxkbcommon-x11-0, libxcb1, libxcb-cursor0, libxcb-icccm4, libxcb-image0, libxcb-keysyms1, libxcb-randr0, libxcb-render-util0, libxcb-shape0, libxcb-xinerama0, libxcb-xkb1
Description: pool friends' computers into one private language-model swarm
 Potluck runs a share of a large language model's layers on this computer
 and serves them to a private swarm of friends, who chat with the whole
 model together. A tray icon shows what it is doing, with pause, drain and
 resume. Also runs headless: potluck serve, potluck status.
EOF

cat > "$PKG/DEBIAN/postinst" <<'SH'
#!/bin/sh
set -e
if [ "$1" = "configure" ]; then
    if command -v update-desktop-database >/dev/null 2>&1; then
        update-desktop-database -q /usr/share/applications || true
    fi
    if command -v gtk-update-icon-cache >/dev/null 2>&1; then
        gtk-update-icon-cache -q -t -f /usr/share/icons/hicolor || true
    fi
fi
exit 0
SH
cat > "$PKG/DEBIAN/postrm" <<'SH'
#!/bin/sh
set -e
case "$1" in
    remove|purge)
        # dpkg removed the package's own files; anything the program left beside them goes too.
        rm -rf /opt/potluck
        if command -v update-desktop-database >/dev/null 2>&1; then
            update-desktop-database -q /usr/share/applications || true
        fi
        if command -v gtk-update-icon-cache >/dev/null 2>&1; then
            gtk-update-icon-cache -q -t -f /usr/share/icons/hicolor || true
        fi
        ;;
esac
exit 0
SH
chmod 0755 "$PKG/DEBIAN/postinst" "$PKG/DEBIAN/postrm"

case "$COMPRESSION" in
    zstd) ZARGS=(-Zzstd -z9) ;;
    xz) ZARGS=(-Zxz -z6) ;;
    gzip) ZARGS=(-Zgzip -z6) ;;
    none) ZARGS=(-Znone) ;;
esac
started=$SECONDS
dpkg-deb --root-owner-group "${ZARGS[@]}" --build "$PKG" "$PACKAGE" >/dev/null
echo "build_deb.sh: wrote $PACKAGE ($(du -m "$PACKAGE" | cut -f1) MiB, installs $((INSTALLED_KB / 1024)) MiB," \
     "$COMPRESSION, $((SECONDS - started)) s)"
