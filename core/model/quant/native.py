"""Find and load the native kernels (kernels.c, built by setup.py as `_kernels`) with ctypes, on first use.

Nothing happens at import. `library()` loads the shared library once and checks its ABI version; when that fails
(not built, another platform, a frozen build that left it out) it records why and returns None, and the callers
use the pure-torch kernel, which gives the same bits. The library is looked for next to this file, under the
name setuptools gives an extension module (`_kernels.cpython-311-x86_64-linux-gnu.so`, `_kernels.pyd`, ...).
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import threading
from dataclasses import dataclass, field
from pathlib import Path

ABI_VERSION = 1  # kernels.c's PQ_ABI_VERSION
FEATURE_BITS = {"avx2": 1, "fma": 2, "f16c": 4, "openmp": 8, "avxvnni": 16, "avx512vnni": 32}
AVX2_NEEDS = ("avx2", "fma", "f16c")
# native kernel -> (kernels.c's ISA number, CPU features it needs), fastest first
ISAS = {
    "avx512vnni": (3, AVX2_NEEDS + ("avx512vnni",)),  # the bit stands for AVX512 F + VL + VNNI; 32 registers
    "avxvnni": (2, AVX2_NEEDS + ("avxvnni",)),
    "avx2": (1, AVX2_NEEDS),
    "portable": (0, ()),
}
ERRORS = {-1: "bad arguments", -2: "out of memory", -3: "the CPU lacks the instructions of that kernel"}


class NativeKernelError(RuntimeError):
    """The native kernel refused a call (the message says why)."""


@dataclass
class NativeLibrary:
    path: Path
    handle: ctypes.CDLL
    features: frozenset[str] = field(default_factory=frozenset)
    kernels: tuple[str, ...] = ()  # the native kernels this CPU can run, fastest first (set from features)
    best_isa: int = 0  # kernels[0]'s ISA number, for the hot path

    def __post_init__(self):
        self.kernels = tuple(name for name, (_, needs) in ISAS.items() if all(f in self.features for f in needs))
        self.best_isa = ISAS[self.kernels[0]][0]


_lock = threading.Lock()
_state: dict = {}


def candidate_paths(folder: Path | None = None) -> list[Path]:
    """Where the built library may be, most specific name first."""
    folder = folder or Path(__file__).resolve().parent
    names = [f"_kernels{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES]
    return [folder / name for name in names if (folder / name).is_file()]


def _load() -> tuple[NativeLibrary | None, str | None]:
    paths = candidate_paths()
    if not paths:
        return None, "the native kernels were not built (no _kernels library next to native.py; reinstall with a C compiler)"
    path = paths[0]
    try:
        handle = ctypes.CDLL(str(path))
    except OSError as error:
        return None, f"cannot load {path.name}: {error}"
    try:
        version = handle.pq_abi_version()
        features_mask = handle.pq_cpu_features()
    except AttributeError as error:
        return None, f"{path.name} is not Potluck's kernel library: {error}"
    if version != ABI_VERSION:
        return None, f"{path.name} has ABI version {version}, expected {ABI_VERSION}: rebuild it (pip install -e .)"
    handle.pq_linear.restype = ctypes.c_int
    handle.pq_linear.argtypes = [
        ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
        ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
    ]
    features = frozenset(name for name, bit in FEATURE_BITS.items() if features_mask & bit)
    return NativeLibrary(path, handle, features), None


def library() -> NativeLibrary | None:
    """The loaded native library, or None when it cannot load (`load_error()` says why)."""
    try:
        return _state["library"]
    except KeyError:
        with _lock:
            if "library" not in _state:
                _state["error"] = None
                _state["library"], _state["error"] = _load()
            return _state["library"]


def load_error() -> str | None:
    library()
    return _state["error"]


def linear(lib: NativeLibrary, isa: int, x_ptr: int, rows: int, in_features: int, packed_ptr: int, scales_ptr: int,
           out_features: int, bits: int, y_ptr: int, threads: int) -> None:
    """Run pq_linear on raw pointers (the caller keeps the tensors alive and checks shapes and dtypes)."""
    code = lib.handle.pq_linear(x_ptr, rows, in_features, packed_ptr, scales_ptr, out_features, bits, y_ptr, threads,
                                isa)
    if code != 0:
        raise NativeKernelError(f"native quantized kernel failed: {ERRORS.get(code, f'error {code}')}")
