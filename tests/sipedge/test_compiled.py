"""sipedge.compiled and setup.py's build: the build of the core that runs, and never an
extension built from another source than the one beside it."""

import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sipedge
from sipedge import compiled
from tests.helpers import expected_core_build
from sipedge.compiled import COMPILED, FORCED, ORPHAN, SOURCE, STALE

PACKAGE = Path(sipedge.__file__).resolve().parent
ROOT = PACKAGE.parent
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
BUILT = expected_core_build() == "compiled"  # else no build to copy or to make here


def fake_package(tmp_path, with_extensions=True):
    """The core's sources, and an (empty) file where each extension would be."""
    package = tmp_path / "sipedge"
    for name in compiled.MODULES:
        source = compiled.source_path(package, name)
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(f"NAME = {name!r}\n")
        if with_extensions:
            source.with_suffix(SUFFIX).write_bytes(b"")
    return package


def built(package):
    return compiled.write_manifest(package, compiled.source_digests(package))


def test_a_module_without_an_extension_is_loaded_from_source(tmp_path):
    package = fake_package(tmp_path, with_extensions=False)
    assert set(compiled.decide(package).values()) == {SOURCE}
    assert set(compiled.decide(package, pure=True).values()) == {SOURCE}


def test_extensions_are_used_only_when_built_from_the_source_beside_them(tmp_path):
    package = fake_package(tmp_path)
    assert set(compiled.decide(package).values()) == {STALE}  # no manifest yet

    manifest = built(package)
    assert sorted(manifest) == sorted(compiled.MODULES)
    assert set(compiled.decide(package).values()) == {COMPILED}

    edited = compiled.source_path(package, "sipedge.sip.digest")
    edited.write_text(edited.read_text() + "# edited after the build\n")
    decision = compiled.decide(package)
    assert decision.pop("sipedge.sip.digest") == STALE
    assert set(decision.values()) == {COMPILED}


def test_the_manifest_vouches_for_one_extension_file(tmp_path):
    """Another interpreter's build of the same source (another file name) is not vouched
    for by this one's manifest, nor is an extension the build did not record."""
    package = fake_package(tmp_path)
    manifest = compiled.write_manifest(package, {"sipedge.core": compiled.source_digests(
        package)["sipedge.core"]})
    assert list(manifest) == ["sipedge.core"]
    decision = compiled.decide(package)
    assert decision.pop("sipedge.core") == COMPILED
    assert set(decision.values()) == {STALE}

    manifest["sipedge.core"]["extension"] = "core.cpython-399-other.so"
    (package / compiled.MANIFEST_NAME).write_text(json.dumps(manifest))
    assert compiled.decide(package)["sipedge.core"] == STALE


def test_pure_python_can_be_asked_for(tmp_path):
    package = fake_package(tmp_path)
    built(package)
    assert set(compiled.decide(package, pure=True).values()) == {FORCED}
    assert compiled.pure_requested({compiled.PURE_ENV: "1"})
    assert not compiled.pure_requested({compiled.PURE_ENV: ""})
    assert not compiled.pure_requested({})


def test_an_unreadable_manifest_counts_as_none(tmp_path):
    package = fake_package(tmp_path)
    for text in ("not json", "[]", '{"sipedge.core": "an old form"}'):
        (package / compiled.MANIFEST_NAME).write_text(text)
        assert set(compiled.decide(package).values()) == {STALE}


def test_extensions_of_modules_no_longer_compiled_are_not_used(tmp_path):
    package = fake_package(tmp_path)
    built(package)
    (package / "shell.py").write_text("")
    (package / ("shell" + SUFFIX)).write_bytes(b"")  # once compiled, now plain Python
    (package / "sip" / ("gone" + SUFFIX)).write_bytes(b"")  # its source deleted since
    decision = compiled.decide(package)
    assert decision.pop("sipedge.shell") == STALE
    assert decision.pop("sipedge.sip.gone") == ORPHAN
    assert set(decision.values()) == {COMPILED}

    compiled.remove_strays(package, keep={"sipedge.core"})
    assert sorted(compiled.extensions_in(package)) == ["sipedge.core"]


def test_the_suite_runs_the_build_that_is_deployed():
    """scripts/test compiles the core in place first; a core edited since its last build
    would otherwise be tested as plain Python while the edge ships compiled."""
    import sipedge.sip.message

    if not BUILT:
        assert set(compiled.status().values()) <= {FORCED, SOURCE}
        assert Path(sipedge.sip.message.__file__).suffix == ".py"
        assert compiled.summary() == "python"
    else:
        assert compiled.status() == {name: COMPILED for name in compiled.MODULES}, (
            "the compiled core is missing or stale: run scripts/bootstrap "
            "(or python setup.py build_ext --inplace)")
        assert sipedge.sip.message.__file__.endswith(SUFFIX)
        assert compiled.summary() == "compiled"


PROBE = ("import json, sipedge.compiled as c, sipedge.core, sipedge.guard as g, "
         "sipedge.sip.message as m\n"
         "try:\n    import sipedge.leftover\n    orphan = 'imported'\n"
         "except ModuleNotFoundError as e:\n    orphan = str(e)\n"
         "print(json.dumps([c.status(), g.__file__, m.__file__, c.summary(), orphan]))")


def probe(path, **env):
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=path, check=True, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(path), **env}).stdout
    return json.loads(out)


@pytest.mark.skipif(not BUILT, reason="plain Python here: no build to copy")
def test_a_process_loads_a_stale_module_from_its_source(tmp_path):
    """The real finder, in a fresh interpreter, on a copy of the built package whose
    manifest no longer vouches for one extension, with a leftover extension beside it."""
    copy = tmp_path / "sipedge"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = json.loads((copy / compiled.MANIFEST_NAME).read_text())
    manifest["sipedge.guard"]["source_sha256"] = "0" * 64
    (copy / compiled.MANIFEST_NAME).write_text(json.dumps(manifest))
    shutil.copy(compiled.extension_path(copy, "sipedge.events"), copy / ("leftover" + SUFFIX))

    status, guard_file, message_file, summary, orphan = probe(tmp_path)
    assert status.pop("sipedge.guard") == STALE
    assert status.pop("sipedge.leftover") == ORPHAN
    assert set(status.values()) == {COMPILED}
    assert guard_file == str(copy / "guard.py")
    assert message_file.endswith(SUFFIX) and message_file.startswith(str(copy))
    assert summary == "mixed"
    assert "leftover compiled extension" in orphan

    status, guard_file, message_file, summary, _ = probe(tmp_path, **{compiled.PURE_ENV: "1"})
    assert {status[name] for name in compiled.MODULES} == {FORCED}
    assert (guard_file, message_file) == (str(copy / "guard.py"),
                                          str(copy / "sip" / "message.py"))
    assert summary == "python"


@pytest.mark.skipif(not BUILT, reason="plain Python here: no build to make")
def test_the_build_recompiles_by_content_and_drops_what_did_not_build(tmp_path):
    """setup.py's build_ext in place, on a copy of the project that compiles one small
    module: a source changed with an old timestamp is compiled again; where the compiler
    fails the older extension goes and the module runs from source."""
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(PACKAGE, tmp_path / "sipedge",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", compiled.MANIFEST_NAME))
    listing = tmp_path / "sipedge" / "compiled.py"
    text = listing.read_text()
    start = text.index("MODULES = (")
    listing.write_text(text[:start] + 'MODULES = ("sipedge.events",)\n'
                       + text[text.index(")\n", start) + 2:])
    events = tmp_path / "sipedge" / "events.py"

    def build(**env):
        done = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=240,
                              env={**os.environ, **env})
        assert done.returncode == 0, done.stderr[-3000:]
        return compiled.read_manifest(tmp_path / "sipedge"), done.stderr

    manifest, _ = build()
    extension = compiled.extension_path(tmp_path / "sipedge", "sipedge.events")
    assert manifest == {"sipedge.events": {"source_sha256": compiled.source_digest(events),
                                           "extension": extension.name}}
    assert probe(tmp_path)[0]["sipedge.events"] == COMPILED

    first_build = extension.stat().st_mtime_ns
    old = events.stat()
    events.write_text(events.read_text() + "\nEDITED = True\n")
    os.utime(events, ns=(old.st_atime_ns, old.st_mtime_ns - 10**10))  # older than before
    manifest, _ = build()
    assert manifest["sipedge.events"]["source_sha256"] == compiled.source_digest(events)
    assert extension.stat().st_mtime_ns != first_build
    edited = subprocess.run(
        [sys.executable, "-c", "import sipedge.events as e; print(e.__file__, e.EDITED)"],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(
            tmp_path)})
    assert edited.stdout.split() == [str(extension), "True"], edited.stderr  # the new source

    events.write_text(events.read_text() + "\nEDITED_AGAIN = True\n")
    manifest, stderr = build(CC="false", LDSHARED="false")
    assert 'building extension "sipedge.events" failed' in stderr
    assert manifest == {}
    assert not extension.exists()
    assert probe(tmp_path)[0]["sipedge.events"] == SOURCE
