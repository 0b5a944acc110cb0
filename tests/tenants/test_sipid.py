import pytest

from tenants.models import Endpoint
from tenants.sipid import SipIdentity, parse_sip_user_id, sip_user_id


@pytest.mark.parametrize(
    "user_id, trunk, number, endpoint",
    [
        ("12345101", "12345", "101", Endpoint.HOME),
        ("12345101r", "12345", "101", Endpoint.REMOTE),
        ("1234510", "12345", "10", Endpoint.HOME),  # two-digit extension
        ("12345123456", "12345", "123456", Endpoint.HOME),  # six-digit extension
        ("12345123456r", "12345", "123456", Endpoint.REMOTE),
        ("99999000", "99999", "000", Endpoint.HOME),
        ("10000000r", "10000", "000", Endpoint.REMOTE),
    ],
)
def test_parse_sip_user_id_splits_trunk_extension_and_endpoint(user_id, trunk, number, endpoint):
    assert parse_sip_user_id(user_id) == SipIdentity(trunk, number, endpoint)


@pytest.mark.parametrize(
    "user_id",
    [
        "",
        "12345",  # trunk alone
        "123451",  # one-digit extension
        "123451234567",  # seven-digit extension
        "12345101R",  # only a lowercase r marks the remote endpoint
        "12345101rr",
        "12345101x",  # trailing garbage
        "12345101 ",
        " 12345101",
        "12345101r;x",
        "02345101",  # trunk numbers start at 10000
        "1234a101",
        "１２３４５１０１",  # full-width digits are not digits here
        "12345101\n",
        None,
        12345101,
    ],
)
def test_parse_sip_user_id_refuses_what_names_no_endpoint(user_id):
    assert parse_sip_user_id(user_id) is None


def test_sip_user_id_round_trips():
    for endpoint in Endpoint:
        uid = sip_user_id("54321", "2001", endpoint)
        assert parse_sip_user_id(uid) == SipIdentity("54321", "2001", endpoint)
