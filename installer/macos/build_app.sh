#!/usr/bin/env bash
# Build dist/Potluck.app (menu-bar only: LSUIElement=1, no Dock icon) and dist/Potluck-<version>.dmg on macOS.
#
#   bash installer/macos/build_app.sh            # runs packaging/build.py, then checks, signs ad hoc, makes the dmg
#   POTLUCK_SKIP_BUILD=1 bash installer/macos/build_app.sh   # reuse dist/Potluck.app
#
# The .app itself comes from PyInstaller (packaging/potluck.spec has a BUNDLE step on macOS, with the Info.plist
# keys below); this script makes sure the keys are right, signs the bundle ad hoc (Apple Silicon refuses unsigned
# code; a Developer ID and notarisation need an Apple account: set POTLUCK_CODESIGN_IDENTITY to use one), checks that
# the frozen program runs, and packs a compressed dmg with an /Applications link.
# On macOS the node runs natively (hivemind ships macOS wheels with p2pd), on CPU or Apple's MPS.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${POTLUCK_PYTHON:-python3}"
APP="$ROOT/dist/Potluck.app"
fail() { echo "build_app.sh: ERROR: $*" >&2; exit 2; }

[ "$(uname -s)" = "Darwin" ] || fail "macOS only (needs hdiutil, codesign and a macOS build of PySide6/torch)"
for tool in hdiutil codesign /usr/libexec/PlistBuddy; do
    command -v "$tool" >/dev/null || [ -x "$tool" ] || fail "$tool not found"
done
[ -f "$ROOT/resources/potluck.icns" ] || fail "resources/potluck.icns missing: run python resources/make_icons.py"

if [ "${POTLUCK_SKIP_BUILD:-0}" != "1" ]; then
    "$PY" "$ROOT/packaging/build.py" --flavour full
fi
[ -x "$APP/Contents/MacOS/potluck" ] || fail "$APP/Contents/MacOS/potluck missing: the PyInstaller build did not make the app"

PLIST="$APP/Contents/Info.plist"
VERSION="$("$PY" -c 'import ast,sys; print(next(ast.literal_eval(n.value) for n in ast.parse(open(sys.argv[1]).read()).body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "__version__"))' "$ROOT/core/__init__.py")"
set_key() {  # set_key KEY TYPE VALUE: add or overwrite one Info.plist key
    /usr/libexec/PlistBuddy -c "Set :$1 $3" "$PLIST" 2>/dev/null || /usr/libexec/PlistBuddy -c "Add :$1 $2 $3" "$PLIST"
}
set_key LSUIElement bool true
set_key CFBundleShortVersionString string "$VERSION"
set_key CFBundleVersion string "$VERSION"
set_key CFBundleIdentifier string org.potluck.Potluck
[ "$(/usr/libexec/PlistBuddy -c 'Print :LSUIElement' "$PLIST")" = "true" ] || fail "LSUIElement is not set in $PLIST"

codesign --force --deep --sign "${POTLUCK_CODESIGN_IDENTITY:--}" "$APP"
codesign --verify --deep --strict "$APP"
"$APP/Contents/MacOS/potluck" --help >/dev/null || fail "the frozen program does not run: $APP/Contents/MacOS/potluck --help"

DMG="$ROOT/dist/Potluck-$VERSION.dmg"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
rm -f "$DMG"
hdiutil create -volname "Potluck $VERSION" -srcfolder "$STAGE" -fs HFS+ -format UDZO -ov "$DMG" >/dev/null
hdiutil verify "$DMG" >/dev/null
echo "build_app.sh: $APP ($(du -sm "$APP" | cut -f1) MB) and $DMG ($(du -sm "$DMG" | cut -f1) MB)"
