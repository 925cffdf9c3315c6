"""Build step for the one native piece: the quantized-linear kernels (core/model/quant/kernels.c).

Everything else about the project lives in pyproject.toml. The kernels are plain C (no Python or torch headers), so
pip's isolated build needs nothing but setuptools and a C compiler, and they are loaded with ctypes at run time.
The build is optional: without a compiler the install still succeeds and Potluck uses the pure-torch kernel, which
gives the same results, only slower.

Flags: -ffp-contract=off keeps the float sums in the exact order the other kernels use (no fused multiply-add);
the AVX2 code is compiled per function (target attributes) and chosen at run time, so the library loads on any
x86-64 CPU; OpenMP (Linux) shares torch's own libgomp runtime, which is loaded first under the same soname.
"""

import sys

from setuptools import Extension, setup


def kernel_flags() -> tuple[list[str], list[str]]:
    if sys.platform == "win32":
        return ["/O2", "/fp:precise"], []
    compile_args = ["-O3", "-ffp-contract=off", "-fno-fast-math", "-fvisibility=hidden"]
    link_args: list[str] = []
    if sys.platform.startswith("linux"):
        compile_args.append("-fopenmp")
        link_args.append("-fopenmp")
    return compile_args, link_args


COMPILE_ARGS, LINK_ARGS = kernel_flags()

setup(
    ext_modules=[
        Extension(
            "potluck.core.model.quant._kernels",
            sources=["core/model/quant/kernels.c"],
            depends=["core/model/quant/kernels_simd.inc"],
            extra_compile_args=COMPILE_ARGS,
            extra_link_args=LINK_ARGS,
            optional=True,
        )
    ]
)
