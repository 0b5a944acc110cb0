"""Which build of the SIP core runs: the modules compiled by Cython, or their source.

The sans-IO core (MODULES) can be compiled by Cython from its unchanged Python source into
extension modules beside it (setup.py; scripts/bootstrap does it in place). Python imports
an extension module before a source file of the same name, so an extension built from an
older source would silently run instead of the code beside it. The build therefore writes
MANIFEST_NAME, the SHA-256 of each source it compiled, and `install` (run when `sipedge` is
imported, before any of these modules) loads from source every module whose extension was
built from another source or is not in the manifest, and every module when PURE_ENV is
set. `status()` says what was chosen, for the logs and the metrics.

This module reads and writes files and must stay plain Python: it decides how the
compiled ones are imported.
"""

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path

# The sans-IO core: parsing, digest, registrar, bans, events, configuration. The asyncio
# shell, the control plane's client and the CLI stay plain Python (they wait on I/O).
MODULES = (
    "sipedge.config",
    "sipedge.core",
    "sipedge.events",
    "sipedge.guard",
    "sipedge.sip.digest",
    "sipedge.sip.message",
    "sipedge.sip.registrar",
)
PURE_ENV = "TRUNKLINE_PURE_PYTHON"
MANIFEST_NAME = "compiled.json"

COMPILED, SOURCE, STALE, FORCED = "compiled", "source", "stale", "forced"

_PACKAGE = Path(__file__).resolve().parent
_status = {}


def source_path(package_dir, name):
    """sipedge.sip.message -> <package_dir>/sip/message.py"""
    return Path(package_dir).joinpath(*name.split(".")[1:]).with_suffix(".py")


def extension_path(package_dir, name):
    """The extension module Python would import for `name`, or None."""
    source = source_path(package_dir, name)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = source.with_suffix(suffix)
        if candidate.exists():
            return candidate
    return None


def source_digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_manifest(package_dir):
    """After a build: the digest of the source of every module that has an extension."""
    package_dir = Path(package_dir)
    manifest = {name: source_digest(source_path(package_dir, name)) for name in MODULES
                if extension_path(package_dir, name) is not None}
    target = package_dir / MANIFEST_NAME
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(temporary, target)
    return manifest


def read_manifest(package_dir):
    try:
        manifest = json.loads((Path(package_dir) / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def decide(package_dir, *, pure=False):
    """{module: COMPILED | SOURCE | STALE | FORCED} for MODULES in `package_dir`:
    SOURCE when there is no extension, STALE when the extension was not built from the
    source beside it, FORCED when pure Python is asked for while an extension exists."""
    manifest = read_manifest(package_dir)
    decision = {}
    for name in MODULES:
        if extension_path(package_dir, name) is None:
            decision[name] = SOURCE
        elif pure:
            decision[name] = FORCED
        elif manifest.get(name) != source_digest(source_path(package_dir, name)):
            decision[name] = STALE
        else:
            decision[name] = COMPILED
    return decision


class _SourceFinder:
    """A meta path finder that imports the named modules from their .py files."""

    def __init__(self, paths):
        self.paths = paths

    def find_spec(self, fullname, path=None, target=None):
        source = self.paths.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def install(package_dir=_PACKAGE, environ=os.environ):
    """Decides once per process, before the core is imported."""
    if _status:
        return
    _status.update(decide(package_dir, pure=bool(environ.get(PURE_ENV))))
    from_source = {name: str(source_path(package_dir, name))
                   for name, how in _status.items() if how in (STALE, FORCED)}
    if from_source:
        sys.meta_path.insert(0, _SourceFinder(from_source))


def status():
    """{module: how it is loaded}: compiled, source (none built), stale (an extension
    built from another source, not used) or forced (PURE_ENV)."""
    return dict(_status)


def summary():
    """'compiled', 'python' or 'mixed', for a log line and a metric label."""
    kinds = {COMPILED if how == COMPILED else "python" for how in _status.values()}
    return kinds.pop() if len(kinds) == 1 else "mixed"
