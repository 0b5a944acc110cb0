"""The `controlplane` command, run in-process against the test database."""

import pytest

from controlplane.cli import main
from tenants.crypto import SecretBox
from tenants.db import make_sessionmaker
from tenants.platform import Platform
from tenants.scope import platform_principal
from tenants.services import api_keys, extensions, tenants

from ..conftest import REALM, engine_for

ROOT = platform_principal("test")


@pytest.fixture
def cli_env(db_url, monkeypatch):
    key = SecretBox.generate_key()
    monkeypatch.setenv("CONTROLPLANE_DATABASE_URL", db_url)
    monkeypatch.setenv("CONTROLPLANE_SECRET_KEYS", key)
    monkeypatch.setenv("CONTROLPLANE_SIP_REALM", REALM)
    return key


def sessions(db_url, keys, realm=REALM):
    return make_sessionmaker(engine_for(db_url), Platform(realm, realm, SecretBox(keys)))


def test_api_key_create_prints_the_key_alone_on_the_last_line(cli_env, db_url, capsys):
    assert main(["api-key", "create", "--role", "platform", "--name", "ops"]) == 0
    token = capsys.readouterr().out.rstrip("\n").splitlines()[-1]
    with sessions(db_url, [cli_env])() as s:
        principal = api_keys.authenticate(s, token)
    assert principal.name == "ops" and principal.is_platform


def test_api_key_create_refuses_a_tenant_key_for_an_unknown_tenant(cli_env, capsys):
    assert main(["api-key", "create", "--role", "tenant", "--name", "x",
                 "--trunk-number", "99999"]) == 2
    assert "no tenant 99999" in capsys.readouterr().err


def test_secrets_rotate_reencrypts_under_the_newest_key(cli_env, db_url, monkeypatch, capsys):
    old = cli_env
    with sessions(db_url, [old])() as s:
        s.info["principal"] = ROOT
        tenants.create_tenant(s, ROOT, name="Acme", trunk_number="12345")
        extensions.create_extension(s, ROOT, "12345", number="101", name="Alice")
        password = extensions.reveal_credentials(s, ROOT, "12345", "101")["password"]
    new = SecretBox.generate_key()
    monkeypatch.setenv("CONTROLPLANE_SECRET_KEYS", f"{new},{old}")
    assert main(["secrets", "rotate"]) == 0
    assert "re-encrypted 1" in capsys.readouterr().out
    with sessions(db_url, [new])() as s:  # the old key is gone
        s.info["principal"] = ROOT
        assert extensions.reveal_credentials(s, ROOT, "12345", "101")["password"] == password


def test_credentials_rehash_follows_a_realm_change(cli_env, db_url, monkeypatch, capsys):
    with sessions(db_url, [cli_env])() as s:
        s.info["principal"] = ROOT
        tenants.create_tenant(s, ROOT, name="Acme", trunk_number="12345")
        extensions.create_extension(s, ROOT, "12345", number="101", name="Alice")
    monkeypatch.setenv("CONTROLPLANE_SIP_REALM", "new.realm")
    assert main(["credentials", "rehash"]) == 0
    assert "1 extensions" in capsys.readouterr().out
    with sessions(db_url, [cli_env], "new.realm")() as s:
        assert extensions.get_extension(s, ROOT, "12345", "101").ha1_realm == "new.realm"


def test_edge_enroll_prints_the_token_alone_on_the_last_line(cli_env, db_url, capsys):
    from tenants.services.edges import authenticate_edge

    assert main(["edge", "enroll", "--name", "local"]) == 0
    token = capsys.readouterr().out.rstrip("\n").splitlines()[-1]
    with sessions(db_url, [cli_env])() as s:
        assert authenticate_edge(s, token).name == "local"
    assert main(["edge", "enroll", "--name", "local"]) == 2
    assert "exists already" in capsys.readouterr().err
