"""Builds the compiled hot path: every kafkaprod/_native/*.pyx becomes an extension module.

Metadata lives in pyproject.toml; this file only exists because the extension list is computed.
"""
import glob
import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
NATIVE = os.path.join("kafkaprod", "_native")

# -O3 for the kernels; no -march=native, because a built wheel must run on any CPU of its architecture.
# CPU-specific code (the CRC-32C instructions) is compiled per function with target attributes and picked at
# import time.
if sys.platform == "win32":
    compile_args = ["/O2"]
else:
    compile_args = ["-O3", "-fno-strict-aliasing", "-Wno-unused-function"]

extensions = [
    Extension(
        "kafkaprod._native." + os.path.splitext(os.path.basename(path))[0],
        [path],
        include_dirs=[NATIVE],
        extra_compile_args=compile_args,
    )
    for path in sorted(glob.glob(os.path.join(NATIVE, "*.pyx")))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
        annotate=bool(os.environ.get("KAFKAPROD_ANNOTATE")),
    ),
)
