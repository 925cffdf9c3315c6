"""The packaging inputs: every file the spec and installer scripts need exists and is well formed, the version has
one source, and the build scripts stop with a clear message when an input is missing. Builds nothing big: the .deb
test packs a stub program of a few bytes."""

from __future__ import annotations

import ast
import configparser
import importlib.util
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASH = shutil.which("bash")
needs_bash = pytest.mark.skipif(BASH is None or sys.platform == "win32", reason="needs bash (Linux/macOS)")
needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (apt-get install dpkg-dev)")


def load_build_module():
    spec = importlib.util.spec_from_file_location("potluck_build", ROOT / "packaging" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = load_build_module()
SIZES = BUILD.literal_assignment(ROOT / "resources" / "make_icons.py", "SIZES")
STATES = BUILD.literal_assignment(ROOT / "resources" / "make_icons.py", "STATES")
VERSION = BUILD.literal_assignment(ROOT / "core" / "__init__.py", "__version__")


def png_size(data: bytes) -> tuple[int, int, int]:
    """(width, height, colour type) from a PNG's IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height, _depth, colour_type = struct.unpack(">IIBB", data[16:26])
    return width, height, colour_type


# ---- icons -----------------------------------------------------------------------------------------------------

def test_the_icon_set_covers_every_state_at_every_size():
    assert set(STATES) == {"serving", "paused", "draining", "starting", "error"}
    assert set(SIZES) >= {16, 22, 24, 32, 48, 64, 128, 256}
    expected = BUILD.expected_icons(ROOT)
    assert len(expected) == len(SIZES) * (len(STATES) + 1)
    for path in expected:
        assert path.is_file(), f"{path.name} missing: run python resources/make_icons.py"
        size = int(path.stem.rsplit("-", 1)[1])
        assert png_size(path.read_bytes()) == (size, size, 6), f"{path.name} is not a {size}x{size} RGBA PNG"


def test_each_state_icon_differs_from_the_others_at_16px():
    blobs = {state: (ROOT / "resources" / "icons" / f"potluck-{state}-16.png").read_bytes() for state in STATES}
    blobs["app"] = (ROOT / "resources" / "icons" / "potluck-16.png").read_bytes()
    assert len(set(blobs.values())) == len(blobs), "two tray states draw the same 16 px icon"


def test_ico_holds_png_entries_16_to_256():
    data = (ROOT / "resources" / "potluck.ico").read_bytes()
    reserved, kind, count = struct.unpack("<HHH", data[:6])
    assert (reserved, kind) == (0, 1) and count >= 6
    sizes = set()
    for i in range(count):
        w, h, _c, _r, planes, bpp, length, offset = struct.unpack("<BBBBHHII", data[6 + 16 * i: 22 + 16 * i])
        w, h = w or 256, h or 256
        assert offset + length <= len(data)
        assert png_size(data[offset: offset + length])[:2] == (w, h)
        assert (planes, bpp) == (1, 32)
        sizes.add(w)
    assert sizes >= {16, 32, 48, 256}


def test_icns_container_is_consistent():
    data = (ROOT / "resources" / "potluck.icns").read_bytes()
    assert data[:4] == b"icns" and struct.unpack(">I", data[4:8])[0] == len(data)
    pixel_size = {b"icp4": 16, b"icp5": 32, b"icp6": 64, b"ic07": 128, b"ic08": 256, b"ic09": 512, b"ic10": 1024}
    seen, pos = set(), 8
    while pos < len(data):
        kind, length = data[pos: pos + 4], struct.unpack(">I", data[pos + 4: pos + 8])[0]
        assert length > 8 and pos + length <= len(data)
        if kind in pixel_size:
            assert png_size(data[pos + 8: pos + length])[:2] == (pixel_size[kind],) * 2
        seen.add(kind)
        pos += length
    assert {b"ic07", b"ic08", b"ic09", b"ic10"} <= seen


def test_svg_is_a_256_unit_square():
    import xml.etree.ElementTree as ET

    root = ET.parse(ROOT / "resources" / "potluck.svg").getroot()
    assert root.tag.endswith("svg")
    assert root.get("viewBox") == "0 0 256 256" and root.get("width") == "256"


# ---- desktop entry -----------------------------------------------------------------------------------------------

def test_desktop_entry_fields_are_valid():
    path = ROOT / "resources" / "potluck.desktop"
    parser = configparser.RawConfigParser(strict=True, delimiters=("=",))
    parser.optionxform = str  # keys are case-sensitive
    parser.read(path, encoding="utf-8")
    assert parser.sections() == ["Desktop Entry"]
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application"
    assert entry["Name"] == "Potluck"
    assert entry["Exec"].split()[0] == "potluck", "Exec must call the launcher on PATH that the .deb installs"
    assert entry["Icon"] == "potluck", "Icon must be the hicolor name the .deb installs"
    assert entry["Terminal"] == "false"
    assert entry["Categories"].endswith(";") and "Network" in entry["Categories"].split(";")
    known = {"Type", "Version", "Name", "GenericName", "Comment", "Exec", "TryExec", "Icon", "Terminal", "Categories",
             "Keywords", "StartupNotify", "StartupWMClass", "NoDisplay", "Hidden", "OnlyShowIn", "NotShowIn"}
    assert set(entry) <= known, f"unknown keys {set(entry) - known}"
    if shutil.which("desktop-file-validate"):
        result = subprocess.run(["desktop-file-validate", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


# ---- PyInstaller spec ----------------------------------------------------------------------------------------------

SPEC_TEXT = (ROOT / "packaging" / "potluck.spec").read_text(encoding="utf-8")


def spec_function(name: str):
    """A function defined in the spec, executed on its own (the spec itself only runs inside PyInstaller)."""
    tree = ast.parse(SPEC_TEXT)
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    namespace = {"ast": ast, "Path": Path, "re": re}
    exec(compile(ast.Module(body=[node], type_ignores=[]), "potluck.spec", "exec"), namespace)
    return namespace[name]


def test_spec_reads_the_version_from_core_and_nowhere_else():
    import potluck.core

    assert spec_function("read_version")(ROOT / "core" / "__init__.py") == potluck.core.__version__
    assert not re.search(r"""['"]\d+\.\d+\.\d+['"]""", SPEC_TEXT), "a hard-coded version in the spec"
    assert "import core" not in SPEC_TEXT and "from core" not in SPEC_TEXT


def test_spec_is_one_folder_and_collects_what_a_frozen_node_needs():
    assert "exclude_binaries=True" in SPEC_TEXT and "COLLECT(" in SPEC_TEXT, "must be a one-folder build"
    assert "onefile" not in SPEC_TEXT.lower().replace("one-file", "")
    assert 'collect_submodules("hivemind")' in SPEC_TEXT, "the multiaddr codecs are imported by name at run time"
    assert '"hivemind_cli" / "p2pd"' in SPEC_TEXT and '"hivemind/hivemind_cli"' in SPEC_TEXT
    for family in ("llama", "mistral", "qwen2", "bloom", "auto"):
        assert f'"{family}"' in SPEC_TEXT
    for qt in ("QtCore", "QtGui", "QtWidgets", "QtNetwork"):
        assert f'"{qt}"' in SPEC_TEXT


def test_spec_inputs_exist():
    for relative in ("app/entry.py", "core/__init__.py", "resources/icons", "resources/potluck.svg",
                     "resources/potluck.ico", "resources/potluck.icns"):
        assert (ROOT / relative).exists(), relative
        parts = relative.split("/")
        assert all(f'"{p}"' in SPEC_TEXT for p in parts[:1] + parts[-1:]), f"the spec does not reference {relative}"


def test_spec_keeps_kept_qt_modules_out_of_the_excludes():
    namespace: dict = {}
    tree = ast.parse(SPEC_TEXT)
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") in ("QT_MODULES_KEPT", "QT_MODULES_DROPPED"):
            namespace[node.targets[0].id] = ast.literal_eval(node.value)
    assert not set(namespace["QT_MODULES_KEPT"]) & set(namespace["QT_MODULES_DROPPED"])


def test_spec_trim_patterns_drop_tests_but_keep_runtime_libraries():
    tree = ast.parse(SPEC_TEXT)
    dropped_node = next(n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "DROPPED")
    namespace = {"re": re}
    exec(compile(ast.Module(body=[dropped_node], type_ignores=[]), "spec", "exec"), namespace)
    trimmed = spec_function("trimmed")
    trimmed.__globals__["DROPPED"] = namespace["DROPPED"]
    entries = [(p, "src", "BINARY") for p in (
        "torch/test/test_api", "torch/bin/protoc", "torch/bin/torch_shm_manager", "torch/include/ATen/ATen.h",
        "torch/lib/libtorch_cpu.so", "torch/lib/libc10.so", "torch/lib/libtorchbind_test.so", "torch/lib/libgomp.so.1",
        "hivemind/hivemind_cli/p2pd", "torch/testing/_internal/common_utils.py")]
    kept = {e[0] for e in trimmed(entries)}
    assert kept == {"torch/bin/torch_shm_manager", "torch/lib/libtorch_cpu.so", "torch/lib/libc10.so",
                    "torch/lib/libgomp.so.1", "hivemind/hivemind_cli/p2pd", "torch/testing/_internal/common_utils.py"}


# ---- build.py and build_deb.sh fail clearly on a missing input -------------------------------------------------

def copy_inputs(tmp_path: Path) -> Path:
    """The files the build scripts read, copied into a scratch tree that a test may break."""
    root = tmp_path / "repo"
    for relative in ("packaging", "resources", "installer"):
        shutil.copytree(ROOT / relative, root / relative, ignore=shutil.ignore_patterns("__pycache__"))
    for relative in ("core/__init__.py", "app/entry.py"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, root / relative)
    return root


def run_build_check(root: Path) -> subprocess.CompletedProcess:
    flavour = "full" if importlib.util.find_spec("torch") and importlib.util.find_spec("hivemind") else "gui"
    return subprocess.run([sys.executable, str(root / "packaging" / "build.py"), "--check-only", "--flavour", flavour],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(importlib.util.find_spec("PyInstaller") is None, reason="needs pyinstaller installed")
def test_build_py_passes_its_checks_on_a_complete_tree(tmp_path):
    result = run_build_check(copy_inputs(tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"inputs OK for Potluck {VERSION}" in result.stdout


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda r: shutil.rmtree(r / "resources" / "icons"), "resources/icons missing: run python resources/make_icons.py"),
        (lambda r: (r / "resources" / "icons" / "potluck-error-16.png").unlink(), "resources/icons incomplete (potluck-error-16.png)"),
        (lambda r: (r / "resources" / "potluck.svg").unlink(), "resources/potluck.svg missing"),
        (lambda r: (r / "app" / "entry.py").unlink(), "app/entry.py missing"),
        (lambda r: (r / "core" / "__init__.py").write_text('"""no version"""\n'), "core/__init__.py has no __version__"),
    ],
    ids=["icons-folder", "one-icon", "svg", "entry", "version"],
)
def test_build_py_names_the_missing_input(tmp_path, break_it, message):
    root = copy_inputs(tmp_path)
    break_it(root)
    result = run_build_check(root)
    assert result.returncode == 2
    assert message in result.stderr, result.stderr


def run_build_deb(root: Path, dist: Path, out: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([BASH, str(root / "installer" / "linux" / "build_deb.sh"), "--dist", str(dist), "--out", str(out)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **env})


def stub_dist(tmp_path: Path) -> Path:
    dist = tmp_path / "dist" / "potluck"
    (dist / "_internal").mkdir(parents=True)
    program = dist / "potluck"
    program.write_text("#!/bin/sh\necho stub\n")
    program.chmod(0o755)
    (dist / "_internal" / "data.txt").write_text("x")
    return dist


@needs_bash
def test_build_deb_names_the_missing_icons(tmp_path):
    root = copy_inputs(tmp_path)
    shutil.rmtree(root / "resources" / "icons")
    result = run_build_deb(root, stub_dist(tmp_path), tmp_path / "out")
    assert result.returncode == 2
    assert "resources/icons missing: run python resources/make_icons.py" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.deb"))


@needs_bash
def test_build_deb_names_the_missing_frozen_build(tmp_path):
    root = copy_inputs(tmp_path)
    result = run_build_deb(root, tmp_path / "nowhere" / "potluck", tmp_path / "out")
    assert result.returncode == 2
    assert "potluck missing: run python packaging/build.py first" in result.stderr, result.stderr


def deb_contents(deb: Path) -> set[str]:
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    return {line.split()[5].lstrip(".") for line in listing.splitlines()}


@needs_bash
@needs_dpkg
@pytest.mark.parametrize("autostart", ["0", "1"])
def test_build_deb_lays_out_the_package(tmp_path, autostart):
    root = copy_inputs(tmp_path)
    result = run_build_deb(root, stub_dist(tmp_path), tmp_path / "out", POTLUCK_DEB_AUTOSTART=autostart,
                           POTLUCK_DEB_COMPRESSION="gzip")
    assert result.returncode == 0, result.stderr
    (deb,) = (tmp_path / "out").glob("potluck_*.deb")
    assert deb.name.startswith(f"potluck_{VERSION}_")
    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Version"], capture_output=True, text=True,
                            check=True).stdout
    assert "Package: potluck" in fields and f"Version: {VERSION}" in fields
    contents = deb_contents(deb)
    assert {"/opt/potluck/potluck", "/opt/potluck/_internal/data.txt", "/usr/bin/potluck",
            "/usr/share/applications/potluck.desktop", "/usr/share/icons/hicolor/scalable/apps/potluck.svg"} <= contents
    for size in SIZES:
        assert f"/usr/share/icons/hicolor/{size}x{size}/apps/potluck.png" in contents
    assert ("/etc/xdg/autostart/potluck.desktop" in contents) == (autostart == "1")
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(control)], check=True)
    assert "rm -rf /opt/potluck" in (control / "postrm").read_text()
    assert os.access(control / "postinst", os.X_OK)


# ---- Linux CI scripts, Windows and macOS installers ----------------------------------------------------------------

@needs_bash
@pytest.mark.parametrize("script", ["installer/linux/build_deb.sh", "installer/linux/ci_check.sh",
                                    "installer/linux/tray_check.sh", "installer/macos/build_app.sh"])
def test_shell_scripts_parse(script):
    result = subprocess.run([BASH, "-n", str(ROOT / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_ci_check_runs_every_step():
    text = (ROOT / "installer" / "linux" / "ci_check.sh").read_text()
    for needle in ("packaging/build.py", "installer/linux/build_deb.sh", "installer/linux/tray_check.sh",
                   "/usr/bin/potluck --self-test", "dpkg -r potluck", "/opt/potluck", "PASS:", "FAIL:"):
        assert needle in text, needle


def iss_sources() -> list[tuple[str, str]]:
    text = (ROOT / "installer" / "windows" / "potluck.iss").read_text(encoding="utf-8")
    found = [("Source", s) for s in re.findall(r'Source:\s*"([^"]+)"', text)]
    found += [(key, s) for key, s in re.findall(r"^(SetupIconFile)=(.+)$", text, flags=re.M)]
    return found


def test_iss_static_inputs_exist_and_build_outputs_are_made_by_the_build():
    base = ROOT / "installer" / "windows"
    sources = iss_sources()
    assert sources
    for key, source in sources:
        path = source.replace("\\", "/")
        if path.startswith("../../dist/"):
            # Built on the Windows runner: dist/potluck by packaging/build.py, dist/wheel by build_installer.ps1.
            assert path.startswith(("../../dist/potluck/", "../../dist/wheel/")), source
            continue
        assert (base / path).resolve().exists(), f"{key}: {source} does not exist"
    ps1 = (base / "build_installer.ps1").read_text(encoding="utf-8")
    assert "build.py --flavour gui" in ps1 and "--outdir dist\\wheel" in ps1 and "/DAppVersion=" in ps1


def test_iss_is_per_user_with_a_start_at_sign_in_task():
    text = (ROOT / "installer" / "windows" / "potluck.iss").read_text(encoding="utf-8")
    assert re.search(r"^PrivilegesRequired=lowest$", text, flags=re.M)
    assert re.search(r'Root: HKCU; Subkey: "Software\\Microsoft\\Windows\\CurrentVersion\\Run".*Tasks: startup', text)
    assert "uninsdeletevalue" in text
    assert "{#AppVersion}" in text and not re.search(r"^AppVersion=\d", text, flags=re.M), "the version comes from core/__init__.py"


def test_macos_app_is_menu_bar_only():
    assert '"LSUIElement": True' in SPEC_TEXT
    script = (ROOT / "installer" / "macos" / "build_app.sh").read_text()
    assert "set_key LSUIElement bool true" in script and "hdiutil create" in script


def test_workflows_call_scripts_that_exist():
    for name in ("windows.yml", "macos.yml"):
        text = (ROOT / ".github" / "workflows" / name).read_text(encoding="utf-8")
        referenced = set(re.findall(r"\b((?:installer|packaging|resources|tests)/[\w./-]+\.(?:sh|ps1|py|iss))", text.replace("\\", "/")))
        assert referenced, name
        for relative in referenced:
            assert (ROOT / relative).is_file(), f"{name} calls {relative}, which does not exist"
