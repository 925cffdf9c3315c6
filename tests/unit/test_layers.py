"""The house rules of the code, checked from the source: layers, no import circles, light modules stay light,
function-level imports only where a light module reaches a heavy one, and files that stay readable.

"Heavy" means importing torch, transformers, hivemind (the engine's libraries) or PySide6 (the GUI's). A module is
heavy if a top-level import of it reaches one of those, directly or through other potluck modules; the static
answer is checked against a real import of every light module in a clean interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"core": "potluck.core", "app": "potluck.app"}
HEAVY_LIBRARIES = ("torch", "transformers", "hivemind", "PySide6")
MAX_LINES = 450


def module_files() -> dict[str, Path]:
    modules = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if "_public" in parts:  # the top-level package `potluck` (pyproject's package-dir)
                modules["potluck"] = path
                continue
            if parts[-1] == "__main__":  # runs the command line when executed, never imported
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


MODULES = module_files()


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not MODULES[module].name == "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str) -> tuple[set[str], set[str]]:
    """(top-level imports, imports inside functions) of a module: potluck modules and third-party roots."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    top, inner = set(), set()

    def targets(node) -> set[str]:
        found = set()
        if isinstance(node, ast.Import):
            found = {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            submodules = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES}
            found = submodules  # `from potluck.core.wire import control` imports a module (its package runs first)
            if len(submodules) < len(node.names):
                found.add(base)  # names defined in `base` itself
        return found

    def visit(node, in_function: bool, in_type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if not in_type_checking:
                    (inner if in_function else top).update(targets(child))
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                visit(child, in_function, True)
            else:
                visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)),
                      in_type_checking)

    visit(tree, False, False)
    return top, inner


def _with_parents(name: str) -> list[str]:
    """A potluck module and the packages whose __init__ importing it runs."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in MODULES]


DIRECT = {m: imports(m)[0] for m in MODULES}  # what the module's own import statements name
TOP = {m: {t for name in DIRECT[m] for t in (_with_parents(name) or [name])} for m in MODULES}  # + packages run
INNER = {m: imports(m)[1] for m in MODULES}


def heavy_modules() -> set[str]:
    heavy = {m for m, deps in TOP.items() if any(d.split(".")[0] in HEAVY_LIBRARIES for d in deps)}
    changed = True
    while changed:
        changed = False
        for m, deps in TOP.items():  # a module runs its packages' __init__ first
            if m not in heavy and (deps & heavy or set(_with_parents(m)[:-1]) & heavy):
                heavy.add(m)
                changed = True
    return heavy


HEAVY = heavy_modules()
LIGHT = sorted(set(MODULES) - HEAVY)


def test_the_static_picture_knows_the_layers():
    assert {"potluck.core.protocol", "potluck.core.wire.control", "potluck.core.cli.main",
            "potluck.core.swarm.lifecycle", "potluck.core.node.control"} <= set(LIGHT)
    assert {"potluck.core.wire.tensors", "potluck.core.server.server", "potluck.core.client.model",
            "potluck.app.main"} <= HEAVY


def test_light_modules_really_are_light(tmp_path):
    """One clean interpreter imports every light module: none may load a heavy library or write a file."""
    code = ("import sys, importlib\n"
            f"for m in {LIGHT!r}:\n    importlib.import_module(m)\n"
            f"print(','.join(x for x in {HEAVY_LIBRARIES!r} if x in sys.modules))")
    env = {"POTLUCK_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
    assert not (tmp_path / "home").exists()


def test_function_level_imports_only_cross_from_light_to_heavy():
    """Importing inside a function is how a light module (the CLI, the node, a swarm flow) defers a heavy one; any
    other function-level import of a potluck module only hides a circle and must be at the top."""
    wrong = sorted(f"{m} imports {t} inside a function" for m in LIGHT for t in INNER[m]
                   if t.startswith("potluck") and t in MODULES and t not in HEAVY)
    wrong += sorted(f"{m} (heavy) imports {t} inside a function" for m in HEAVY for t in INNER[m]
                    if t.startswith("potluck") and t in MODULES)
    assert wrong == []


def test_no_import_circles():
    graph = {m: {d for d in deps if d in MODULES and d != m} for m, deps in DIRECT.items()}
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def connect(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    assert circles == []


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_layers(module):
    deps = TOP[module] | INNER[module]
    ours = {d for d in deps if d.startswith("potluck")}
    if module.startswith("potluck.core"):
        assert not {d for d in ours if d.startswith("potluck.app")}, "core never imports the GUI"
        if not _within(module, "potluck.core.cli"):
            assert not {d for d in ours if _within(d, "potluck.core.cli")}, "the command line is the top of core"
    if module.startswith("potluck.app"):
        assert not {d for d in ours if d.startswith("potluck.core") and d in HEAVY}, "the GUI uses light core only"
        assert not {d.split(".")[0] for d in deps} & {"torch", "transformers", "hivemind"}


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in MODULES.values()))
def test_files_stay_readable(path):
    assert len((ROOT / path).read_text(encoding="utf-8").splitlines()) <= MAX_LINES
