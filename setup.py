"""Metadata lives in pyproject.toml. This file adds the compiled build of the edge's core.

The modules of the sans-IO SIP core (`sipedge.compiled.MODULES`) are compiled by Cython
from their unchanged Python source into extension modules beside it; the edge then spends
about a third less CPU per registration. Without a C compiler, Cython or the Python
headers, or with TRUNKLINE_PURE_PYTHON=1, nothing is compiled and the same source runs as
plain Python. `sipedge.compiled` records what each extension was built from, so that an
edited source is never shadowed by an older extension.

    python setup.py build_ext --inplace     # what scripts/bootstrap runs after each change
"""

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from sipedge import compiled  # noqa: E402  (the one list of modules, and the manifest)


class BuildExt(build_ext):
    """build_ext that records the source digest of every extension it built, beside it: in
    the source tree (--inplace) or in the tree a wheel is made of (build_py ran first)."""

    def run(self):
        super().run()
        if self.extensions:
            compiled.write_manifest(ROOT / "sipedge" if self.inplace
                                    else Path(self.build_lib) / "sipedge")


def extensions():
    if os.environ.get(compiled.PURE_ENV):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("Cython is missing: the SIP core runs as plain Python", file=sys.stderr)
        return []
    sources = [str(compiled.source_path(ROOT / "sipedge", name).relative_to(ROOT))
               for name in compiled.MODULES]
    return cythonize(sources, build_dir="build/cython", quiet=True, compiler_directives={
        "language_level": 3,
        # Annotations stay documentation, as in CPython: no C types, no runtime checks.
        "annotation_typing": False,
    })


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
