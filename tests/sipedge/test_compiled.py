"""sipedge.compiled: the build of the core that runs, and never an extension built from
another source than the one beside it."""

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
from sipedge.compiled import COMPILED, FORCED, SOURCE, STALE

PACKAGE = Path(sipedge.__file__).resolve().parent
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


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


def test_a_module_without_an_extension_is_loaded_from_source(tmp_path):
    package = fake_package(tmp_path, with_extensions=False)
    assert set(compiled.decide(package).values()) == {SOURCE}
    assert set(compiled.decide(package, pure=True).values()) == {SOURCE}


def test_extensions_are_used_only_when_built_from_the_source_beside_them(tmp_path):
    package = fake_package(tmp_path)
    assert set(compiled.decide(package).values()) == {STALE}  # no manifest yet

    manifest = compiled.write_manifest(package)
    assert sorted(manifest) == sorted(compiled.MODULES)
    assert set(compiled.decide(package).values()) == {COMPILED}

    edited = compiled.source_path(package, "sipedge.sip.digest")
    edited.write_text(edited.read_text() + "# edited after the build\n")
    decision = compiled.decide(package)
    assert decision.pop("sipedge.sip.digest") == STALE
    assert set(decision.values()) == {COMPILED}


def test_pure_python_can_be_asked_for(tmp_path):
    package = fake_package(tmp_path)
    compiled.write_manifest(package)
    assert set(compiled.decide(package, pure=True).values()) == {FORCED}


def test_an_unreadable_manifest_counts_as_none(tmp_path):
    package = fake_package(tmp_path)
    (package / compiled.MANIFEST_NAME).write_text("not json")
    assert set(compiled.decide(package).values()) == {STALE}
    (package / compiled.MANIFEST_NAME).write_text("[]")
    assert set(compiled.decide(package).values()) == {STALE}


def test_the_suite_runs_the_build_that_is_deployed():
    """scripts/test compiles the core in place first; a core edited since its last build
    would otherwise be tested as plain Python while the edge ships compiled."""
    import sipedge.sip.message

    if os.environ.get(compiled.PURE_ENV):
        assert set(compiled.status().values()) <= {FORCED, SOURCE}
        assert Path(sipedge.sip.message.__file__).suffix == ".py"
    else:
        assert compiled.status() == {name: COMPILED for name in compiled.MODULES}, (
            "the compiled core is missing or stale: run scripts/bootstrap "
            "(or python setup.py build_ext --inplace)")
        assert sipedge.sip.message.__file__.endswith(SUFFIX)


@pytest.mark.skipif(os.environ.get(compiled.PURE_ENV) is not None, reason="no build to copy")
def test_a_process_loads_a_stale_module_from_its_source(tmp_path):
    """The real finder, in a fresh interpreter, on a copy of the built package whose
    manifest no longer matches one source."""
    copy = tmp_path / "sipedge"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = json.loads((copy / compiled.MANIFEST_NAME).read_text())
    manifest["sipedge.guard"] = "0" * 64
    (copy / compiled.MANIFEST_NAME).write_text(json.dumps(manifest))
    probe = ("import json, sipedge.compiled as c, sipedge.core, sipedge.guard as g, "
             "sipedge.sip.message as m; print(json.dumps([c.status(), g.__file__, "
             "m.__file__, c.summary()]))")

    def loaded(**env):
        out = subprocess.run(
            [sys.executable, "-c", probe], cwd=tmp_path, check=True, capture_output=True,
            text=True, env={**os.environ, "PYTHONPATH": str(tmp_path), **env}).stdout
        return json.loads(out)

    status, guard_file, message_file, summary = loaded()
    assert status.pop("sipedge.guard") == STALE
    assert set(status.values()) == {COMPILED}
    assert guard_file == str(copy / "guard.py")
    assert message_file.endswith(SUFFIX) and message_file.startswith(str(copy))
    assert summary == "mixed"

    status, guard_file, message_file, summary = loaded(**{compiled.PURE_ENV: "1"})
    assert set(status.values()) == {FORCED}
    assert (guard_file, message_file) == (str(copy / "guard.py"),
                                          str(copy / "sip" / "message.py"))
    assert summary == "python"
