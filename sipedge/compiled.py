"""Which build of the SIP core runs: the modules compiled by Cython, or their source.

The sans-IO core (MODULES) can be compiled by Cython from its unchanged Python source into
extension modules beside it (setup.py; scripts/bootstrap does it in place). Python imports
an extension module before a source file of the same name, so an extension built from an
older source would silently run instead of the code beside it. The build therefore writes
MANIFEST_NAME: for each extension it built, its file name and the SHA-256 of the source it
was compiled from (hashed before compiling). `install` (run when `sipedge` is imported,
before any of these modules) loads from source every module whose extension the manifest
does not vouch for, every extension of a module not in MODULES, and every module when
PURE_ENV is set (to any non-empty value). `status()` says what was chosen, for the logs and
the metrics.

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

# How a module is loaded: its extension; its source, as no extension is there; its
# source, as the extension was not built from it (or the module is no longer compiled);
# its source, as PURE_ENV asks; nothing, as only an extension of it is left.
COMPILED, SOURCE, STALE, FORCED, ORPHAN = "compiled", "source", "stale", "forced", "orphan"

_PACKAGE = Path(__file__).resolve().parent
_status = {}


def pure_requested(environ=os.environ):
    return bool(environ.get(PURE_ENV))


def source_path(package_dir, name):
    """sipedge.sip.message -> <package_dir>/sip/message.py"""
    return Path(package_dir).joinpath(*name.split(".")[1:]).with_suffix(".py")


def extension_path(package_dir, name):
    """The extension module this interpreter would import for `name`, or None."""
    source = source_path(package_dir, name)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = source.with_suffix(suffix)
        if candidate.exists():
            return candidate
    return None


def extensions_in(package_dir):
    """{module name: path} of every extension module this interpreter would import from
    the package, listed or not."""
    package_dir = Path(package_dir)
    found = {}
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for path in package_dir.rglob("*" + suffix):
            stem = path.name[:-len(suffix)]
            if "." in stem:
                continue  # another suffix's file (e.g. x.abi3.so seen as *.so)
            parts = path.relative_to(package_dir).parent.parts
            found.setdefault(".".join([package_dir.name, *parts, stem]), path)
    return found


def source_digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def source_digests(package_dir):
    """{module: SHA-256 of its source}, taken before compiling."""
    return {name: source_digest(source_path(package_dir, name)) for name in MODULES}


def write_manifest(package_dir, built):
    """After a build: `built` is {module: source digest} of the extensions built from those
    sources; each is recorded with the file name of its extension."""
    package_dir = Path(package_dir)
    manifest = {}
    for name, digest in sorted(built.items()):
        extension = extension_path(package_dir, name)
        if extension is not None:
            manifest[name] = {"source_sha256": digest, "extension": extension.name}
    target = package_dir / MANIFEST_NAME
    temporary = target.with_name(f"{MANIFEST_NAME}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(temporary, target)
    return manifest


def remove_strays(package_dir, keep=()):
    """Deletes the extensions in the package of modules not in MODULES, and of listed
    modules not in `keep` (a build that failed leaves the older one behind)."""
    for name, path in extensions_in(package_dir).items():
        if name not in MODULES or name not in keep:
            path.unlink()


def read_manifest(package_dir):
    try:
        manifest = json.loads((Path(package_dir) / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def decide(package_dir, *, pure=False):
    """{module: how it is loaded} for MODULES and for every other module of which an
    extension is in `package_dir`."""
    package_dir = Path(package_dir)
    manifest = read_manifest(package_dir)
    decision = {}
    for name in extensions_in(package_dir):
        if name not in MODULES:
            decision[name] = STALE if source_path(package_dir, name).exists() else ORPHAN
    for name in MODULES:
        extension = extension_path(package_dir, name)
        entry = manifest.get(name)
        if extension is None:
            decision[name] = SOURCE
        elif pure:
            decision[name] = FORCED
        elif (isinstance(entry, dict) and entry.get("extension") == extension.name
              and entry.get("source_sha256") == source_digest(source_path(package_dir, name))):
            decision[name] = COMPILED
        else:
            decision[name] = STALE
    return decision


class _SourceFinder:
    """A meta path finder for the modules whose extension must not be used: their .py
    file, or, for a module with nothing but a leftover extension, no module at all."""

    def __init__(self, sources, orphans):
        self.sources, self.orphans = sources, orphans

    def find_spec(self, fullname, path=None, target=None):
        if fullname in self.orphans:
            raise ModuleNotFoundError(
                f"{fullname}: only a leftover compiled extension is there, no source",
                name=fullname)
        source = self.sources.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def install(package_dir=_PACKAGE, environ=os.environ):
    """Decides once per process, before the core is imported."""
    if _status:
        return
    _status.update(decide(package_dir, pure=pure_requested(environ)))
    sources = {name: str(source_path(package_dir, name))
               for name, how in _status.items() if how in (STALE, FORCED)}
    orphans = {name for name, how in _status.items() if how == ORPHAN}
    if sources or orphans:
        sys.meta_path.insert(0, _SourceFinder(sources, orphans))


def status():
    """{module: how it is loaded}: compiled, source (none built), stale (an extension not
    built from the source beside it, not used), forced (PURE_ENV) or orphan (a leftover
    extension without a source, refused)."""
    return dict(_status)


def summary():
    """'compiled', 'python' or 'mixed': how the modules of MODULES are loaded."""
    kinds = {COMPILED if how == COMPILED else "python"
             for name, how in _status.items() if name in MODULES}
    return kinds.pop() if len(kinds) == 1 else "mixed"
