"""Metadata lives in pyproject.toml. This file adds the compiled build of the edge's core.

The modules of the sans-IO SIP core (`sipedge.compiled.MODULES`) are compiled by Cython
from their unchanged Python source into extension modules beside it; the edge then spends
about a third less CPU per registration (docs/benchmarks.md). Each is optional: where one
does not build (no C compiler, no Python headers, no Cython) the build says so and goes on,
and that module runs as plain Python; TRUNKLINE_PURE_PYTHON=1 builds none. The build
records in sipedge/compiled.json which source each extension was compiled from, and
`sipedge.compiled` uses an extension only when that is the source beside it.

    python setup.py build_ext --inplace     # what scripts/bootstrap runs on each start
"""

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from sipedge import compiled  # noqa: E402  (the one list of modules, and the manifest)

CYTHON_DIRECTIVES = {
    "language_level": 3,
    # Annotations stay documentation, as in CPython: no C types, no runtime checks.
    "annotation_typing": False,
}


class BuildExt(build_ext):
    """Cythonizes at build time, recompiles every module whose source is not the one its
    extension was built from (by digest, not by file times), and records what it built."""

    def run(self):
        target = ROOT / "sipedge" if self.inplace else Path(self.build_lib) / "sipedge"
        digests = compiled.source_digests(ROOT / "sipedge")  # before compiling them
        previous = compiled.read_manifest(target)

        def current(name):
            entry, extension = previous.get(name), compiled.extension_path(target, name)
            return (isinstance(entry, dict) and extension is not None
                    and entry.get("extension") == extension.name
                    and entry.get("source_sha256") == digests[name])

        self._stale = {ext.name for ext in self.extensions if not current(ext.name)}
        self._built = set()
        super().run()
        built = {name: digests[name] for name in self._built}
        compiled.remove_strays(target, keep=built)  # failed builds leave older ones
        compiled.write_manifest(target, built)

    def build_extension(self, ext):
        """C from the module's source (Cython), then the extension from the C; an error
        here is a failed optional extension: that module runs as plain Python."""
        try:
            from Cython.Build import cythonize
        except ImportError:
            raise CompileError("Cython is missing") from None
        stale = ext.name in self._stale
        ext.sources = cythonize(
            Extension(ext.name, list(ext.sources), optional=True),
            build_dir="build/cython", quiet=True, force=stale,
            compiler_directives=CYTHON_DIRECTIVES)[0].sources
        force = self.force
        self.force = force or stale
        try:
            super().build_extension(ext)  # raises if it fails: not recorded as built
        finally:
            self.force = force
        self._built.add(ext.name)


def extensions():
    if compiled.pure_requested():
        return []
    return [Extension(name, [str(compiled.source_path(ROOT / "sipedge", name).relative_to(ROOT))],
                      optional=True)
            for name in compiled.MODULES]


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
