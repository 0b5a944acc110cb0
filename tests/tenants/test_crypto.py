import hashlib

import pytest

from tenants import crypto


def test_generate_sip_password_is_long_and_has_no_look_alikes():
    passwords = {crypto.generate_sip_password() for _ in range(200)}
    assert len(passwords) == 200
    for password in passwords:
        assert len(password) >= 16
        assert not set(password) & set("0Oo1lI")
        assert set(password) <= set(crypto.PASSWORD_ALPHABET)


def test_ha1_follows_rfc_7616():
    expected = hashlib.md5(b"12345101:sip.example:secret").hexdigest()
    assert crypto.ha1("MD5", "12345101", "sip.example", "secret") == expected
    expected = hashlib.sha256(b"12345101r:sip.example:secret").hexdigest()
    assert crypto.ha1("SHA-256", "12345101r", "sip.example", "secret") == expected


def test_secret_box_decrypts_after_key_rotation():
    old, new = crypto.SecretBox.generate_key(), crypto.SecretBox.generate_key()
    token = crypto.SecretBox([old]).encrypt("pa55word")
    rotated = crypto.SecretBox([new, old]).rotate(token)
    assert crypto.SecretBox([new]).decrypt(rotated) == "pa55word"
    with pytest.raises(ValueError):
        crypto.SecretBox([new]).decrypt(token)


def test_token_round_trip_and_tampering():
    token, public_id, stored = crypto.generate_token("tlk")
    assert crypto.split_token("tlk", token) is not None
    got_id, secret = crypto.split_token("tlk", token)
    assert got_id == public_id and crypto.secret_matches(secret, stored)
    assert not crypto.secret_matches(secret + "x", stored)
    assert stored != secret and public_id not in stored


@pytest.mark.parametrize("token", ["", "tlk", "tlk_abc", "tlk_abc.", "xyz_abc.def", "abc.def"])
def test_split_token_refuses_malformed(token):
    assert crypto.split_token("tlk", token) is None


def test_pin_hash_is_salted_and_verifies():
    first, second = crypto.hash_pin("1234"), crypto.hash_pin("1234")
    assert first != second and "1234" not in first
    assert crypto.pin_matches("1234", first)
    assert not crypto.pin_matches("4321", first)
    assert not crypto.pin_matches("1234", "garbage")
