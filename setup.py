"""Metadata lives in pyproject.toml. This file adds the compiled build of the edge's core.

The modules of the sans-IO SIP core (`sipedge.compiled.MODULES`) are compiled by Cython
from their unchanged Python source into extension modules beside it; the edge then spends
a quarter to a third less CPU per registration (docs/benchmarks.md). Each is optional:
where one does not build (no C compiler, no Python headers, no Cython) the build says so
and goes on, and that module runs as plain Python; TRUNKLINE_PURE_PYTHON=1 builds none. The build
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
    """Compiles every module whose source is not the one its extension was built from (by
    digest, not by file times), leaves the others alone, and records what is built."""

    def run(self):
        target = ROOT / "sipedge" if self.inplace else Path(self.build_lib) / "sipedge"
        digests = compiled.source_digests(ROOT / "sipedge")  # before compiling them
        previous = compiled.read_manifest(target)

        def current(name):
            entry, extension = previous.get(name), compiled.extension_path(target, name)
            return (isinstance(entry, dict) and extension is not None
                    and entry.get("extension") == extension.name
                    and entry.get("source_sha256") == digests[name])

        if not self.extensions:  # TRUNKLINE_PURE_PYTHON: nothing built, nothing touched
            return super().run()
        # Decided by content alone: a current module is left as it is (its extension and
        # whatever a build folder holds are not looked at); a stale one is made from its
        # source now, .c and extension both.
        self._stale = {ext.name for ext in self.extensions if not current(ext.name)}
        self._built = {name for name in digests if name not in self._stale}
        super().run()
        built = {name: digests[name] for name in self._built}
        compiled.remove_strays(target, keep=built)  # failed builds leave older ones
        compiled.write_manifest(target, built)

    def build_extension(self, ext):
        """C from the module's source (Cython), then the extension from the C; an error
        here is a failed optional extension: that module runs as plain Python."""
        if ext.name not in self._stale:
            return
        try:
            from Cython.Build import cythonize
        except ImportError:
            raise CompileError("Cython is missing") from None
        ext.sources = cythonize(
            Extension(ext.name, list(ext.sources), optional=True),
            build_dir="build/cython", quiet=True, force=True,
            compiler_directives=CYTHON_DIRECTIVES)[0].sources
        force, self.force = self.force, True
        try:
            super().build_extension(ext)  # raises if it fails: not recorded as built
        finally:
            self.force = force
        self._built.add(ext.name)

    def copy_extensions_to_source(self):
        """In place: only what this run compiled (the build folder may hold older ones)."""
        every, self.extensions = self.extensions, [
            ext for ext in self.extensions if ext.name in self._stale]
        try:
            super().copy_extensions_to_source()
        finally:
            self.extensions = every


def extensions():
    if compiled.pure_requested():
        return []
    return [Extension(name, [str(compiled.source_path(ROOT / "sipedge", name).relative_to(ROOT))],
                      optional=True)
            for name in compiled.MODULES]


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
