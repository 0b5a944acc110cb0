"""The systemd units in deploy/ start the commands as they are: every command line a unit
runs, with its environment file's example values, is one the command's own parser takes."""

import re
import shlex
from pathlib import Path

import pytest

from controlplane import cli as controlplane_cli
from sipedge import cli as sipedge_cli

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PARSERS = {"controlplane": controlplane_cli.parser, "sipedge": sipedge_cli.parser}
# What systemd puts for the specifiers the units use (systemd.unit(5), "Specifiers").
SPECIFIERS = {"%d": "/run/credentials/unit.service", "%S": "/var/lib", "%%": "%"}
UNITS = {"controlplane.service": "controlplane.env.example",
         "sipedge.service": "sipedge.env.example"}


def read_unit(path):
    """{section: [(key, value)]} of a unit file (keys may repeat)."""
    sections, current = {}, None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def read_env(path):
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


def command_lines(unit, env):
    """argv of each ExecStart/ExecStartPre, as systemd would expand them."""
    out = []
    for key, value in unit["Service"]:
        if key not in ("ExecStart", "ExecStartPre"):
            continue
        for spec, text in SPECIFIERS.items():
            value = value.replace(spec, text)
        missing = [name for name in re.findall(r"\$\{(\w+)\}", value) if name not in env]
        assert not missing, f"{key} uses {missing}, which the example environment file lacks"
        value = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], value)
        out.append(shlex.split(value))
    return out


@pytest.mark.parametrize("unit_name", sorted(UNITS))
def test_every_command_line_of_a_unit_parses(unit_name):
    unit = read_unit(DEPLOY / unit_name)
    env = read_env(DEPLOY / UNITS[unit_name])
    lines = command_lines(unit, env)
    assert lines, "no ExecStart"
    for argv in lines:
        program = Path(argv[0]).name
        assert argv[0].startswith("/opt/trunkline/.venv/bin/"), argv[0]
        PARSERS[program]().parse_args(argv[1:])  # SystemExit (a failed test) if refused


def test_the_edge_unit_keeps_its_state_and_reads_its_token_from_a_credential():
    unit = read_unit(DEPLOY / "sipedge.service")
    service = dict(unit["Service"])
    [argv] = command_lines(unit, read_env(DEPLOY / "sipedge.env.example"))
    args = sipedge_cli.parser().parse_args(argv[1:])
    # The state folder is the one systemd keeps across restarts (and makes writable).
    assert args.state_dir == Path("/var/lib") / service["StateDirectory"]
    # The token comes from the credential the unit loads, never from the command line.
    name, _, source = service["LoadCredential"].partition(":")
    assert args.token is None
    assert args.token_file == Path(SPECIFIERS["%d"]) / name
    assert source.startswith("/etc/trunkline/")
    # UDP and TCP on the same address and port, as phones expect.
    assert sorted(t for t, _, _ in args.listen) == ["tcp", "udp"]
    assert len({(h, p) for _, h, p in args.listen}) == 1
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["LimitNOFILE"]) > 10_000  # MAX_TCP_CONNECTIONS and its own sockets
