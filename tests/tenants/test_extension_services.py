import pytest
from sqlalchemy import select

from tenants.errors import Conflict, Invalid, NotFound
from tenants.models import AgentLogin, Endpoint, Role
from tenants.scope import Principal
from tenants.services import extensions, queues, ring_groups, tenants, trunks

from .conftest import ROOT


def test_create_extension_stores_password_encrypted_and_ha1s(session, platform, extension):
    password = platform.box.decrypt(extension.password_enc)
    assert password not in extension.password_enc
    from tenants.crypto import ha1

    assert extension.ha1_md5 == ha1("MD5", "12345101", platform.realm, password)
    assert extension.remote_ha1_sha256 == ha1("SHA-256", "12345101r", platform.realm, password)


def test_find_endpoint_maps_user_ids_to_extension_and_endpoint(session, extension):
    found, endpoint = extensions.find_endpoint(session, "12345101")
    assert (found.number, endpoint) == ("101", Endpoint.HOME)
    # No remote endpoint until dual registration is on as a SIP peer.
    assert extensions.find_endpoint(session, "12345101r") is None
    extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=True, sip_peer=True)
    assert extensions.find_endpoint(session, "12345101r")[1] == Endpoint.REMOTE
    for unknown in ("54321101", "12345102", "12345101R", "1234510", "garbage"):
        assert extensions.find_endpoint(session, unknown) is None


def test_dual_registration_as_external_number_needs_a_tenant_trunk(session, extension):
    with pytest.raises(Invalid) as err:
        extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=True,
                                         sip_peer=False, external_number="15551234567",
                                         trunk="nope")
    assert "trunk" in err.value.fields
    session.rollback()
    trunks.create_trunk(session, ROOT, "12345", name="gw", gateway="gw.example")
    ext = extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=True,
                                           sip_peer=False, external_number="15551234567",
                                           trunk="gw")
    assert ext.remote_user_id is None and ext.dual_trunk.name == "gw"
    with pytest.raises(Conflict):
        trunks.delete_trunk(session, ROOT, "12345", "gw")


def test_disabling_keeps_settings_for_later(session, extension):
    trunks.create_trunk(session, ROOT, "12345", name="gw", gateway="gw.example")
    extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=True,
                                     sip_peer=False, external_number="15551234567", trunk="gw")
    ext = extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=False)
    assert (ext.dual_external_number, ext.dual_trunk.name) == ("15551234567", "gw")
    assert ext.ring_mode == "home"
    ext = extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=True)
    assert ext.dual_enabled and ext.dual_external_number == "15551234567"


def test_enabling_dual_registration_applies_the_tenants_default_ring_mode(session, tenant):
    tenants.update_tenant(session, ROOT, "12345", dual_default_ring_mode="remote")
    extensions.create_extension(session, ROOT, "12345", number="101", name="Alice")
    ext = extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=True)
    assert ext.ring_mode == "remote"


def test_losing_the_remote_endpoint_logs_it_out_of_queues(session, extension):
    extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=True, sip_peer=True)
    queues.create_queue(session, ROOT, "12345", number="700", name="Support")
    queues.log_in_agent(session, ROOT, "12345", "700", "101", endpoint="remote")
    extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=False)
    assert session.scalars(select(AgentLogin)).all() == []
    assert queues.get_queue(session, ROOT, "12345", "700").agents == []


def test_agent_login_is_idempotent_and_logout_frees_the_extension(session, extension):
    extensions.set_dual_registration(session, ROOT, "12345", "101", enabled=True, sip_peer=True)
    queues.create_queue(session, ROOT, "12345", number="700", name="Support")
    queues.create_queue(session, ROOT, "12345", number="701", name="Sales")
    queues.log_in_agent(session, ROOT, "12345", "700", "101", endpoint="home")
    queues.log_in_agent(session, ROOT, "12345", "700", "101", endpoint="home")
    queues.log_in_agent(session, ROOT, "12345", "701", "101", endpoint="home")
    with pytest.raises(Conflict):
        queues.log_in_agent(session, ROOT, "12345", "701", "101", endpoint="remote")
    session.rollback()
    queues.log_out_agent(session, ROOT, "12345", "700", "101")
    with pytest.raises(Conflict):  # still the agent in 701
        queues.log_in_agent(session, ROOT, "12345", "700", "101", endpoint="remote")
    session.rollback()
    queues.delete_queue(session, ROOT, "12345", "701")
    agent = queues.log_in_agent(session, ROOT, "12345", "700", "101", endpoint="remote")
    assert agent.endpoint == "remote"


def test_deleting_a_ring_group_unsubscribes_its_members(session, extension):
    ring_groups.create_ring_group(session, ROOT, "12345", number="600", name="Sales")
    extensions.update_extension(session, ROOT, "12345", "101", ring_groups=["600"])
    ring_groups.delete_ring_group(session, ROOT, "12345", "600")
    session.expire_all()
    assert extensions.get_extension(session, ROOT, "12345", "101").ring_groups == []


def test_unknown_ring_group_subscription_is_invalid(session, extension):
    with pytest.raises(Invalid) as err:
        extensions.update_extension(session, ROOT, "12345", "101", ring_groups=["699"])
    assert "ring_groups" in err.value.fields


@pytest.mark.parametrize("code", ["101", "600"])
def test_feature_code_may_not_take_a_used_number(session, extension, code):
    ring_groups.create_ring_group(session, ROOT, "12345", number="600", name="Sales")
    with pytest.raises(Conflict):
        tenants.update_tenant(session, ROOT, "12345", feature_codes={"ring_mode": code})


def test_feature_codes_must_differ(session, tenant):
    with pytest.raises(Invalid):
        tenants.update_tenant(session, ROOT, "12345", feature_codes={"voicemail": "36"})


def test_other_tenants_extensions_are_not_found(session, extension):
    other = tenants.create_tenant(session, ROOT, name="Other")
    as_other = Principal(role=Role.TENANT, name="t", tenant_id=other.id)
    with pytest.raises(NotFound):
        extensions.get_extension(session, as_other, "12345", "101")
    with pytest.raises(NotFound):
        extensions.reveal_credentials(session, as_other, "12345", "101")


def test_rehash_recomputes_ha1s_for_a_new_realm(session, extension, platform):
    from dataclasses import replace

    session.info["platform"] = replace(platform, realm="new.realm")
    assert extensions.rehash_credentials(session) == 1
    ext = extensions.get_extension(session, ROOT, "12345", "101")
    assert ext.ha1_realm == "new.realm"
    from tenants.crypto import ha1

    password = platform.box.decrypt(ext.password_enc)
    assert ext.ha1_md5 == ha1("MD5", "12345101", "new.realm", password)
