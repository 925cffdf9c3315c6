"""Build Potluck's one-folder frozen program with PyInstaller, after checking every input it needs.

    python packaging/build.py                 # -> dist/potluck/potluck  (full flavour; GUI-only on Windows)
    python packaging/build.py --check-only    # only check the inputs (fast; what the packaging tests run)
    python packaging/build.py --flavour gui   # the GUI alone (the Windows build; the node runs in WSL2)
    python packaging/build.py --clean         # drop PyInstaller's cache first

Prints the bundle size and the build time at the end. Exits 2 with one line per missing input, so that a build that
cannot work fails in a second with a message that says how to fix it, instead of after minutes inside PyInstaller.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "packaging" / "potluck.spec"


def literal_assignment(path: Path, name: str):
    """The literal value assigned to `name` at the top level of a Python file, read without importing it."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise KeyError(f"{name} not assigned in {path}")


def expected_icons(root: Path) -> list[Path]:
    """Every PNG that resources/make_icons.py writes, from the sizes and states it declares."""
    script = root / "resources" / "make_icons.py"
    sizes = literal_assignment(script, "SIZES")
    states = literal_assignment(script, "STATES")
    icons = root / "resources" / "icons"
    names = [f"potluck-{s}.png" for s in sizes] + [f"potluck-{st}-{s}.png" for st in states for s in sizes]
    return [icons / n for n in names]


def missing_inputs(root: Path, flavour: str, platform: str = sys.platform) -> list[str]:
    """One message per input the build lacks; empty when everything is there."""
    problems: list[str] = []
    if not (root / "packaging" / "potluck.spec").is_file():
        problems.append("packaging/potluck.spec missing: restore it from git")
    if not (root / "app" / "entry.py").is_file():
        problems.append("app/entry.py missing: it is the program's entry point (potluck = potluck.app.entry:run)")
    init = root / "core" / "__init__.py"
    try:
        version = literal_assignment(init, "__version__")
        if not isinstance(version, str) or not version:
            problems.append("core/__init__.py: __version__ must be a non-empty string")
    except (OSError, KeyError, SyntaxError, ValueError):
        problems.append("core/__init__.py has no __version__ = \"X.Y.Z\": it is the one source of the version")

    make_icons = root / "resources" / "make_icons.py"
    if not make_icons.is_file():
        problems.append("resources/make_icons.py missing: restore it from git")
    else:
        absent = [p.name for p in expected_icons(root) if not p.is_file()]
        if not (root / "resources" / "icons").is_dir():
            problems.append("resources/icons missing: run python resources/make_icons.py")
        elif absent:
            shown = ", ".join(absent[:4]) + (f" and {len(absent) - 4} more" if len(absent) > 4 else "")
            problems.append(f"resources/icons incomplete ({shown}): run python resources/make_icons.py")
    needed = ["potluck.svg"] + {"win32": ["potluck.ico"], "darwin": ["potluck.icns"]}.get(platform, [])
    for name in needed:
        if not (root / "resources" / name).is_file():
            problems.append(f"resources/{name} missing: run python resources/make_icons.py")

    modules = ["PyInstaller", "PySide6"] + (["torch", "transformers", "hivemind", "tokenizers", "safetensors"]
                                            if flavour == "full" else [])
    for module in modules:
        if importlib.util.find_spec(module) is None:
            hint = "pip install 'pyinstaller>=6.5'" if module == "PyInstaller" else "pip install -e . (see README)"
            problems.append(f"python module {module} not installed in {sys.executable}: {hint}")
    if flavour == "full" and importlib.util.find_spec("hivemind") is not None:
        origin = importlib.util.find_spec("hivemind").origin
        p2pd = Path(origin).parent / "hivemind_cli" / "p2pd"
        if not p2pd.is_file():
            problems.append(f"hivemind's p2pd daemon missing at {p2pd}: pip install --force-reinstall hivemind==1.1.12")
    return problems


def tree_size_bytes(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_flavour = os.environ.get("POTLUCK_FLAVOUR") or ("gui" if sys.platform == "win32" else "full")
    parser.add_argument("--flavour", choices=("full", "gui"), default=default_flavour)
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "pyinstaller", help="PyInstaller work folder")
    parser.add_argument("--clean", action="store_true", help="empty PyInstaller's cache first")
    parser.add_argument("--check-only", action="store_true", help="check the inputs and stop")
    args = parser.parse_args(argv)

    problems = missing_inputs(ROOT, args.flavour)
    if problems:
        for line in problems:
            print(f"build.py: ERROR: {line}", file=sys.stderr)
        return 2
    version = literal_assignment(ROOT / "core" / "__init__.py", "__version__")
    print(f"build.py: inputs OK for Potluck {version} ({args.flavour} flavour)")
    if args.check_only:
        return 0

    command = [sys.executable, "-m", "PyInstaller", str(SPEC), "--noconfirm",
               "--distpath", str(args.dist), "--workpath", str(args.work)]
    if args.clean:
        command.append("--clean")
    print("build.py: running", " ".join(command), flush=True)
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, "POTLUCK_FLAVOUR": args.flavour})
    seconds = time.monotonic() - started
    if result.returncode != 0:
        print(f"build.py: ERROR: PyInstaller failed (exit {result.returncode}) after {seconds:.0f} s", file=sys.stderr)
        return result.returncode
    bundle = args.dist / "potluck"
    program = bundle / ("potluck.exe" if sys.platform == "win32" else "potluck")
    if not program.is_file():
        print(f"build.py: ERROR: PyInstaller finished but {program} is missing", file=sys.stderr)
        return 1
    size = tree_size_bytes(bundle)
    print(f"build.py: built {bundle} in {seconds:.0f} s")
    print(f"build.py: bundle size {size / 1e6:.0f} MB ({size / 2**20:.0f} MiB, {args.flavour} flavour)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
