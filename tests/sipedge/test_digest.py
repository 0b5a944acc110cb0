import hmac
import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sipedge.sip import digest
from sipedge.sip.digest import (Credentials, DigestError, NonceCounts, NonceManager, challenge,
                                dummy_ha1, expected_response, parse_credentials, verify)
from tenants.crypto import ha1

# RFC 7616 §3.9.1
USER, PASSWORD, REALM = "Mufasa", "Circle of Life", "http-auth@example.org"
NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
URI, METHOD = "/dir/index.html", "GET"
RFC_RESPONSES = {
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}
HA1S = {algorithm: ha1(algorithm, USER, REALM, PASSWORD) for algorithm in RFC_RESPONSES}

NOW = 1_700_000_000.0
EDGE_REALM = "sip.test.trunkline"


def rfc_params(algorithm="MD5"):
    """The RFC 7616 §3.9.1 Authorization parameters, values as they appear on the wire."""
    return {
        "username": f'"{USER}"', "realm": f'"{REALM}"', "uri": f'"{URI}"',
        "algorithm": algorithm, "nonce": f'"{NONCE}"', "nc": "00000001",
        "cnonce": f'"{CNONCE}"', "qop": "auth", "response": f'"{RFC_RESPONSES[algorithm]}"',
        "opaque": f'"{OPAQUE}"',
    }


def authorization(params, scheme="Digest"):
    return f"{scheme} " + ", ".join(f"{name}={value}" for name, value in params.items())


def rfc_header(drop=(), base="MD5", **override):
    """The RFC example header for algorithm `base`, with parameters dropped or overridden."""
    params = {**rfc_params(base), **override}
    return authorization({k: v for k, v in params.items() if k not in drop})


def rfc_credentials(algorithm):
    return Credentials(username=USER, realm=REALM, nonce=NONCE, uri=URI,
                       response=RFC_RESPONSES[algorithm], algorithm=algorithm, qop="auth",
                       nc=1, cnonce=CNONCE, opaque=OPAQUE)


# --- responses ------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_expected_response_reproduces_rfc_7616_example(algorithm):
    credentials = rfc_credentials(algorithm)
    assert expected_response(credentials, HA1S[algorithm], METHOD) == RFC_RESPONSES[algorithm]


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_verify_accepts_rfc_7616_example_header(algorithm):
    credentials = parse_credentials(rfc_header(base=algorithm))
    assert verify(credentials, HA1S, METHOD)


def test_verify_refuses_wrong_password():
    wrong = {a: ha1(a, USER, REALM, "Circle of Strife") for a in RFC_RESPONSES}
    assert not verify(rfc_credentials("SHA-256"), wrong, METHOD)


def test_verify_refuses_other_method():
    assert not verify(rfc_credentials("MD5"), HA1S, "REGISTER")


@pytest.mark.parametrize("ha1_by_algorithm", [None, {}, {"MD5": HA1S["MD5"]}])
def test_verify_refuses_without_ha1_for_the_algorithm(ha1_by_algorithm):
    assert not verify(rfc_credentials("SHA-256"), ha1_by_algorithm, METHOD)


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_verify_refuses_unknown_user_even_with_the_dummy_response(algorithm):
    credentials = rfc_credentials(algorithm)
    forged = Credentials(**{**_fields(credentials),
                            "response": expected_response(credentials, dummy_ha1(algorithm),
                                                          METHOD)})
    assert not verify(forged, None, METHOD)


def _fields(credentials):
    return {name: getattr(credentials, name) for name in Credentials.__dataclass_fields__}


def test_expected_response_refuses_rfc_2069_credentials():
    credentials = parse_credentials(rfc_header(drop=("qop", "nc", "cnonce")))
    assert credentials.qop is None
    with pytest.raises(DigestError):
        expected_response(credentials, HA1S["MD5"], METHOD)
    with pytest.raises(DigestError):
        verify(credentials, HA1S, METHOD)


@pytest.mark.parametrize("algorithm, length", [("MD5", 32), ("SHA-256", 64)])
def test_dummy_ha1_is_fixed_hex_of_the_algorithm(algorithm, length):
    assert dummy_ha1(algorithm) == dummy_ha1(algorithm)
    assert len(dummy_ha1(algorithm)) == length
    int(dummy_ha1(algorithm), 16)


def test_dummy_ha1_refuses_unknown_algorithm():
    with pytest.raises(DigestError):
        dummy_ha1("SHA-512-256")


def test_credentials_repr_hides_the_response():
    assert RFC_RESPONSES["MD5"] not in repr(rfc_credentials("MD5"))


# --- challenges -----------------------------------------------------------------------


def test_challenge_offers_sha256_then_md5_with_qop_auth():
    values = challenge(EDGE_REALM, "abc")
    parsed = [digest._split_auth_value(v) for v in values]
    assert [params["algorithm"] for _, params in parsed] == ["SHA-256", "MD5"]
    for scheme, params in parsed:
        assert scheme == "Digest"
        assert params == {"realm": EDGE_REALM, "nonce": "abc", "algorithm": params["algorithm"],
                          "qop": "auth"}
    assert all('qop="auth"' in v for v in values)


def test_challenge_marks_stale_and_carries_opaque():
    for value in challenge(EDGE_REALM, "abc", stale=True, opaque="o1"):
        _, params = digest._split_auth_value(value)
        assert params["stale"] == "true" and params["opaque"] == "o1"


def test_challenge_escapes_quotes_in_realm():
    realm = 'odd "realm" \\ here'
    _, params = digest._split_auth_value(challenge(realm, "abc")[0])
    assert params["realm"] == realm


def test_challenge_refuses_realm_with_line_break():
    with pytest.raises(ValueError):
        challenge("a\r\nVia: x", "abc")


# --- nonces ---------------------------------------------------------------------------


def test_nonce_is_valid_until_its_lifetime():
    nonces = NonceManager(b"secret", lifetime=300)
    nonce = nonces.issue(NOW, EDGE_REALM)
    assert nonces.check(nonce, NOW, EDGE_REALM) == "valid"
    assert nonces.check(nonce, NOW + 300, EDGE_REALM) == "valid"


def test_nonce_is_stale_after_its_lifetime():
    nonces = NonceManager(b"secret", lifetime=300)
    nonce = nonces.issue(NOW, EDGE_REALM)
    assert nonces.check(nonce, NOW + 300.5, EDGE_REALM) == "stale"


def test_nonce_from_the_future_is_valid_within_skew_and_stale_beyond():
    nonces = NonceManager(b"secret", skew=2)
    nonce = nonces.issue(NOW, EDGE_REALM)
    assert nonces.check(nonce, NOW - 1, EDGE_REALM) == "valid"
    assert nonces.check(nonce, NOW - 10, EDGE_REALM) == "stale"


def test_nonces_issued_together_differ():
    nonces = NonceManager(b"secret")
    assert nonces.issue(NOW, EDGE_REALM) != nonces.issue(NOW, EDGE_REALM)


def test_nonce_of_other_realm_is_invalid():
    nonces = NonceManager(b"secret")
    assert nonces.check(nonces.issue(NOW, EDGE_REALM), NOW, "other.realm") == "invalid"


def test_nonce_of_other_secret_is_invalid():
    nonce = NonceManager(b"secret").issue(NOW, EDGE_REALM)
    assert NonceManager(b"another").check(nonce, NOW, EDGE_REALM) == "invalid"


def test_nonce_tampered_anywhere_is_invalid():
    nonces = NonceManager(b"secret")
    nonce = nonces.issue(NOW, EDGE_REALM)
    for i in range(len(nonce)):
        swapped = "B" if nonce[i] == "A" else "A"
        assert nonces.check(nonce[:i] + swapped + nonce[i + 1:], NOW, EDGE_REALM) == "invalid"


def test_nonce_in_non_canonical_base64_is_invalid():
    nonces = NonceManager(b"secret")
    nonce = nonces.issue(NOW, EDGE_REALM)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # the last character's low bits are padding: flipping them keeps the same bytes
    respelt = nonce[:-1] + alphabet[alphabet.index(nonce[-1]) ^ 1]
    assert nonces.check(respelt, NOW, EDGE_REALM) == "invalid"


@pytest.mark.parametrize("nonce", ["", "abc", "A" * 43, "!" * 43, "é" * 43, NONCE,
                                   "A" * 42 + "=", "A" * 44, "A" * 10_000])
def test_malformed_nonce_is_invalid(nonce):
    assert NonceManager(b"secret").check(nonce, NOW, EDGE_REALM) == "invalid"


def test_rotated_secret_still_verifies_old_nonces_and_issues_new_ones():
    old_nonce = NonceManager(b"old").issue(NOW, EDGE_REALM)
    rotated = NonceManager(secrets=[b"new", b"old"])
    assert rotated.check(old_nonce, NOW, EDGE_REALM) == "valid"
    new_nonce = rotated.issue(NOW, EDGE_REALM)
    assert NonceManager(b"new").check(new_nonce, NOW, EDGE_REALM) == "valid"
    assert NonceManager(b"old").check(new_nonce, NOW, EDGE_REALM) == "invalid"


def test_nonce_manager_takes_a_list_positionally():
    old_nonce = NonceManager(b"old").issue(NOW, EDGE_REALM)
    assert NonceManager([b"new", b"old"]).check(old_nonce, NOW, EDGE_REALM) == "valid"


@pytest.mark.parametrize("kwargs, error", [
    ({}, TypeError),
    ({"secret": b"a", "secrets": [b"b"]}, TypeError),
    ({"secrets": []}, ValueError),
    ({"secret": b""}, ValueError),
    ({"secrets": [b"a", "b"]}, ValueError),
    ({"secret": b"a", "lifetime": 0}, ValueError),
])
def test_nonce_manager_refuses_bad_configuration(kwargs, error):
    with pytest.raises(error):
        NonceManager(**kwargs)


@pytest.mark.parametrize("now", [-1.0, math.nan, math.inf])
def test_nonce_issue_refuses_impossible_time(now):
    with pytest.raises(ValueError):
        NonceManager(b"secret").issue(now, EDGE_REALM)


# --- nonce counts ---------------------------------------------------------------------


def test_nonce_count_increasing_is_accepted():
    counts = NonceCounts()
    assert [counts.accept("n", nc) for nc in (1, 2, 5)] == [True, True, True]


@pytest.mark.parametrize("replayed", [3, 2])
def test_nonce_count_replayed_or_lower_is_refused(replayed):
    counts = NonceCounts()
    assert counts.accept("n", 3)
    assert not counts.accept("n", replayed)


def test_nonce_count_zero_is_refused():
    assert not NonceCounts().accept("n", 0)


def test_nonce_counts_are_per_nonce():
    counts = NonceCounts()
    assert counts.accept("a", 7)
    assert counts.accept("b", 1)


def test_nonce_counts_evict_least_recently_used():
    counts = NonceCounts(max_entries=2)
    counts.accept("a", 1)
    counts.accept("b", 1)
    counts.accept("a", 2)  # "a" is now the most recently used
    counts.accept("c", 1)  # evicts "b"
    assert len(counts) == 2
    assert not counts.accept("a", 2)  # still remembered
    assert not counts.accept("c", 1)
    for i in range(1000):
        counts.accept(f"n{i}", 1)
    assert len(counts) == 2


# --- parsing --------------------------------------------------------------------------


def test_parse_rfc_7616_example():
    assert parse_credentials(rfc_header()) == rfc_credentials("MD5")


@pytest.mark.parametrize("header, field, value", [
    (rfc_header(drop=("algorithm",)), "algorithm", "MD5"),
    (rfc_header(base="SHA-256", algorithm="sha-256"), "algorithm", "SHA-256"),
    (rfc_header(base="SHA-256", algorithm='"SHA-256"'), "algorithm", "SHA-256"),
    (rfc_header(qop='"auth"'), "qop", "auth"),
    (rfc_header(nc='"0000001a"'), "nc", 26),
    (rfc_header(username=r'"Muf\"a\\sa"'), "username", 'Muf"a\\sa'),
    (rfc_header(username='"Müfasa"'), "username", "Müfasa"),
    (rfc_header(drop=("opaque",)), "opaque", None),
    (rfc_header(response='"8CA523F5E9506FED4657C9700EEBDBEC"'), "response", RFC_RESPONSES["MD5"]),
    (rfc_header(**{"x-extension": '"ignored"'}), "username", USER),
    (rfc_header(userhash="false"), "username", USER),
    ("digest " + rfc_header()[len("Digest "):], "username", USER),
    ("  Digest\t" + rfc_header()[len("Digest "):].replace(", ", " ,\t") + " ", "username", USER),
    (authorization({k.upper(): v for k, v in rfc_params().items()}), "username", USER),
    (authorization({k.title(): v for k, v in rfc_params().items()}), "nc", 1),
])
def test_parse_credentials_accepts(header, field, value):
    assert getattr(parse_credentials(header), field) == value


def _padded(total_bytes, filler="x"):
    base = rfc_header(opaque='""')
    return rfc_header(opaque=f'"{filler * (total_bytes - len(base.encode()))}"')


def test_parse_credentials_accepts_4_kib():
    assert parse_credentials(_padded(4096)).username == USER


BAD_HEADERS = {
    "empty": "",
    "basic": "Basic TXVmYXNhOkNpcmNsZSBvZiBMaWZl",
    "scheme only": "Digest",
    "scheme and space": "Digest ",
    "no space after scheme": "Digest" + rfc_header()[len("Digest "):],
    "other scheme": rfc_header().replace("Digest", "Bearer"),
    "duplicate": rfc_header() + ', username="Scar"',
    "duplicate in other case": rfc_header() + ', USERNAME="Mufasa"',
    "duplicate unknown": rfc_header() + ", x=1, X=2",
    "unknown algorithm": rfc_header(algorithm="SHA-512-256"),
    "session algorithm": rfc_header(algorithm="MD5-sess"),
    "empty algorithm": rfc_header(algorithm='""'),
    "nc too short": rfc_header(nc="0000001"),
    "nc too long": rfc_header(nc="000000001"),
    "nc not hex": rfc_header(nc="0000000g"),
    "nc uppercase": rfc_header(nc="0000000A"),
    "nc with sign": rfc_header(nc="+0000001"),
    "nc with underscore": rfc_header(nc="0000_001"),
    "qop auth-int": rfc_header(qop="auth-int"),
    "qop list": rfc_header(qop='"auth,auth-int"'),
    "qop without nc": rfc_header(drop=("nc",)),
    "qop without cnonce": rfc_header(drop=("cnonce",)),
    "qop with empty cnonce": rfc_header(cnonce='""'),
    "nc without qop": rfc_header(drop=("qop", "cnonce")),
    "cnonce without qop": rfc_header(drop=("qop", "nc")),
    "userhash": rfc_header(userhash="true"),
    "response too short": rfc_header(response='"8ca523f5"'),
    "md5-length response for sha-256": rfc_header(base="SHA-256",
                                                  response=f'"{RFC_RESPONSES["MD5"]}"'),
    "response not hex": rfc_header(response='"' + "z" * 32 + '"'),
    "empty username": rfc_header(username='""'),
    "unterminated quote": rfc_header(opaque='"abc'),
    "backslash at end": rfc_header(opaque='"abc\\"'),
    "line break in quotes": rfc_header(opaque='"a\r\nb"'),
    "line break outside": rfc_header().replace(", ", ",\r\n "),
    "control char in quotes": rfc_header(opaque='"a\x01b"'),
    "del in quotes": rfc_header(opaque='"a\x7fb"'),
    "trailing comma": rfc_header() + ",",
    "empty element": rfc_header().replace(", ", ",, ", 1),
    "missing equals": rfc_header() + ", stale",
    "missing value": rfc_header() + ", x=",
    "value with space": rfc_header(algorithm="MD 5"),
    "text after quotes": rfc_header(opaque='"a"b'),
    "semicolon separator": rfc_header().replace(", ", "; "),
    "over 4 KiB": _padded(4097),
    "over 4 KiB in UTF-8": _padded(4097, filler="é")[: 4096 - 20] + '"',
    "lone surrogate": rfc_header(opaque='"\ud800"'),
    **{f"missing {name}": rfc_header(drop=(name,))
       for name in ("username", "realm", "nonce", "uri", "response")},
}


@pytest.mark.parametrize("header", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
def test_parse_credentials_refuses(header):
    with pytest.raises(DigestError):
        parse_credentials(header)


# --- properties -----------------------------------------------------------------------

WIRE_PIECES = ["Digest", "digest", " ", "\t", ",", "=", '"', "\\", "\r\n", "\x00", "é",
               "username", "realm", "nonce", "uri", "response", "qop", "auth", "nc", "cnonce",
               "algorithm", "MD5", "SHA-256", "userhash", "00000001", "a" * 32, "a" * 64]


def _parse_or_digest_error(text):
    try:
        credentials = parse_credentials(text)
    except DigestError:
        return
    try:
        expected_response(credentials, dummy_ha1(credentials.algorithm), "REGISTER")
    except DigestError:
        pass


@given(st.text(max_size=300))
def test_parse_credentials_on_any_text_raises_only_digest_error(text):
    _parse_or_digest_error(text)


@given(st.lists(st.sampled_from(WIRE_PIECES), max_size=40).map("".join))
def test_parse_credentials_on_near_miss_text_raises_only_digest_error(text):
    _parse_or_digest_error(text)


QUOTABLE = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20)
SPACE = st.sampled_from(["", " ", "\t", "  "])


def _quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def credentials_and_header(draw):
    algorithm = draw(st.sampled_from(["MD5", "SHA-256"]))
    size = 16 if algorithm == "MD5" else 32
    credentials = Credentials(
        username=draw(QUOTABLE), realm=draw(QUOTABLE), nonce=draw(QUOTABLE), uri=draw(QUOTABLE),
        response=draw(st.binary(min_size=size, max_size=size)).hex(), algorithm=algorithm,
        qop="auth", nc=draw(st.integers(0, 0xFFFFFFFF)), cnonce=draw(QUOTABLE),
        opaque=draw(st.none() | QUOTABLE))
    wire = {
        "username": _quote(credentials.username), "realm": _quote(credentials.realm),
        "nonce": _quote(credentials.nonce), "uri": _quote(credentials.uri),
        "response": _quote(credentials.response), "algorithm": algorithm, "qop": "auth",
        "nc": f"{credentials.nc:08x}", "cnonce": _quote(credentials.cnonce),
    }
    if credentials.opaque is not None:
        wire["opaque"] = _quote(credentials.opaque)
    params = []
    for name in draw(st.permutations(list(wire))):
        spelt = draw(st.sampled_from([name, name.upper(), name.title()]))
        params.append(f"{spelt}{draw(SPACE)}={draw(SPACE)}{wire[name]}")
    separator = draw(SPACE) + "," + draw(SPACE)
    return credentials, "Digest " + separator.join(params)


@given(credentials_and_header())
def test_parse_credentials_round_trips_formatted_header(case):
    credentials, header = case
    assert parse_credentials(header) == credentials


def _split_or_error(split, text):
    try:
        return split(text)
    except DigestError:
        return DigestError


@given(st.lists(st.sampled_from(WIRE_PIECES), max_size=40).map("".join)
       | credentials_and_header().map(lambda case: case[1]))
def test_the_one_match_shortcut_reads_what_the_stepwise_reading_reads(text):
    # _split_auth_value reads a value without quoted-pairs in one match, and leaves the
    # rest (quoted-pairs, every error) to _split_stepwise.
    assert _split_or_error(digest._split_auth_value, text) == \
        _split_or_error(digest._split_stepwise, text)


@given(st.binary(min_size=1, max_size=200), st.binary(max_size=300))
@example(b"k" * 64, b"m")  # the block size, and one byte more
@example(b"k" * 65, b"m")
def test_the_nonce_tag_is_hmac_sha256(key, message):
    # Keys longer than SHA-256's block are hashed first, as RFC 2104 says.
    assert digest._HmacSha256(key).digest(message) == hmac.digest(key, message, "sha256")
