"""The edge core, sans-IO: REGISTER bytes in, responses and events out, time passed in."""

import hashlib
import itertools
import re

import pytest

import sipedge.core
from sipedge.config import EdgeConfig
from sipedge.core import EdgeCore

REALM = "sip.test.trunkline"
EDGE = ("127.0.0.1", 5060)
PHONE = ("192.0.2.10", 5062)
T0 = 1_800_000_000.0


def ha1(user, password, algorithm="MD5"):
    h = hashlib.md5 if algorithm == "MD5" else hashlib.sha256
    return h(f"{user}:{REALM}:{password}".encode()).hexdigest()


def extension_record(trunk, number, password, *, remote=False):
    identities = [{"user_id": f"{trunk}{number}", "endpoint": "home",
                   "ha1_md5": ha1(f"{trunk}{number}", password),
                   "ha1_sha256": ha1(f"{trunk}{number}", password, "SHA-256")}]
    if remote:
        identities.append({"user_id": f"{trunk}{number}r", "endpoint": "remote",
                           "ha1_md5": ha1(f"{trunk}{number}r", password),
                           "ha1_sha256": ha1(f"{trunk}{number}r", password, "SHA-256")})
    return {"kind": "extension", "key": f"{trunk}{number}",
            "payload": {"trunk_number": trunk, "number": number, "realm": REALM,
                        "identities": identities}}


def make_core(**kwargs):
    core = EdgeCore(nonce_secrets=[b"k" * 32], realm=REALM, own_addresses=[EDGE[0]], **kwargs)
    core.config.begin_snapshot(7)
    core.config.add_snapshot_record(extension_record("12345", "101", "secret-one", remote=True))
    core.config.add_snapshot_record(extension_record("12345", "102", "secret-two"))
    core.config.add_snapshot_record({"kind": "ban_policy", "key": "platform", "payload": {
        "max_retry": 3, "find_time": 600, "ban_time": 3600, "ban_time_factor": 2,
        "max_ban_time": 86400, "scan_user_ids": 3, "ipv6_prefix": 64}})
    core.snapshot_done(T0)
    return core


def register(user, *, branch="z9hG4bK1", cseq=1, call_id="call-1", auth=None, expires=300,
             contact=None, agent="TestPhone/1.0", source=PHONE, extra=()):
    lines = [
        f"REGISTER sip:{REALM} SIP/2.0",
        f"Via: SIP/2.0/UDP {source[0]}:{source[1]};branch={branch};rport",
        f"From: <sip:{user}@{REALM}>;tag=abc",
        f"To: <sip:{user}@{REALM}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: {contact or f'<sip:{user}@{source[0]}:{source[1]}>'}",
        f"Expires: {expires}",
        f"User-Agent: {agent}",
        *extra,
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def status_of(data):
    return int(data.split(b" ", 2)[1])


def receive(core, data, now=T0, source=PHONE, transport="udp"):
    [send] = core.receive(data, transport=transport, source=source, now=now)
    return send


def digest(user, password, challenge_text, *, algorithm="MD5", nc=1, uri=f"sip:{REALM}",
           username=None):
    nonce = re.search(r'nonce="([^"]+)"', challenge_text).group(1)
    h = hashlib.md5 if algorithm == "MD5" else hashlib.sha256

    def hh(text):
        return h(text.encode()).hexdigest()

    cnonce = "c0ffee"
    response = hh(f"{hh(f'{user}:{REALM}:{password}')}:{nonce}:{nc:08x}:{cnonce}:auth:"
                  f"{hh(f'REGISTER:{uri}')}")
    return (f'Digest username="{username or user}", realm="{REALM}", nonce="{nonce}", '
            f'uri="{uri}", response="{response}", algorithm={algorithm}, qop=auth, '
            f'nc={nc:08x}, cnonce="{cnonce}"')


_branches = itertools.count()


def challenge_for(core, user, now=T0, source=PHONE, **kw):
    send = receive(core, register(user, branch=f"z9hG4bKch{next(_branches)}", source=source,
                                  **kw), now, source=source)
    assert status_of(send.data) == 401
    return send.data.decode()


def authenticated(core, user, password, *, now=T0, algorithm="MD5", branch="z9hG4bK2",
                  source=PHONE, **kw):
    text = challenge_for(core, user, now, source=source)
    auth = digest(user, password, text, algorithm=algorithm)
    return receive(core, register(user, branch=branch, cseq=2, auth=auth, source=source, **kw),
                   now, source=source)


def test_register_is_challenged_with_sha256_then_md5():
    core = make_core()
    text = challenge_for(core, "12345101")
    algorithms = re.findall(r"WWW-Authenticate: Digest .*algorithm=([\w-]+)", text)
    assert algorithms == ["SHA-256", "MD5"]
    assert 'qop="auth"' in text


def test_md5_only_clients_get_the_md5_challenge_alone():
    core = make_core()
    text = challenge_for(core, "12345101", agent="baresip v1.0.0 (x86_64/linux)")
    assert re.findall(r"algorithm=([\w-]+)", text) == ["MD5"]


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_right_password_registers_and_reports_events(algorithm):
    core = make_core()
    send = authenticated(core, "12345101", "secret-one", algorithm=algorithm)
    assert status_of(send.data) == 200
    assert b"Contact: <sip:12345101@192.0.2.10:5062>;expires=300" in send.data
    events = core.drain_events(10)
    assert [e["type"] for e in events] == ["auth_success", "registration"]
    reg = events[1]
    assert (reg["user_id"], reg["source_address"], reg["source_port"], reg["transport"],
            reg["expires"]) == ("12345101", "192.0.2.10", 5062, "udp", 300)


def test_remote_endpoint_registers_with_the_same_password():
    core = make_core()
    assert status_of(authenticated(core, "12345101r", "secret-one").data) == 200
    assert [b.user_id for b in core.registrar.all_bindings()] == ["12345101r"]


def test_wrong_password_and_unknown_user_get_the_same_answer():
    core = make_core()
    wrong = authenticated(core, "12345101", "nope").data
    unknown = authenticated(core, "12345999", "nope", source=("192.0.2.11", 5060)).data
    assert status_of(wrong) == status_of(unknown) == 403
    assert wrong.split(b"\r\n")[0] == unknown.split(b"\r\n")[0]
    reasons = [e.get("reason") for e in core.drain_events(10) if e["type"] == "auth_failure"]
    assert reasons == ["wrong_password", "unknown_user"]


def test_digest_username_must_be_the_user_id_registered():
    core = make_core()
    text = challenge_for(core, "12345101")
    auth = digest("12345102", "secret-two", text)  # right credentials of another user
    send = receive(core, register("12345101", cseq=2, auth=auth, branch="z9hG4bKu"))
    assert status_of(send.data) == 403


def test_stale_nonce_is_rechallenged_with_stale_true_and_not_counted():
    core = make_core()
    text = challenge_for(core, "12345101")
    auth = digest("12345101", "secret-one", text)
    later = T0 + 301  # past the nonce lifetime
    send = receive(core, register("12345101", cseq=2, auth=auth, branch="z9hG4bKs"), later)
    assert status_of(send.data) == 401 and b"stale=true" in send.data
    assert not [e for e in core.drain_events(10) if e["type"] == "auth_failure"]


def test_a_replayed_nonce_count_is_rechallenged():
    core = make_core()
    text = challenge_for(core, "12345101")
    auth = digest("12345101", "secret-one", text)
    assert status_of(receive(core, register("12345101", cseq=2, auth=auth,
                                            branch="z9hG4bKa")).data) == 200
    replay = receive(core, register("12345101", cseq=3, auth=auth, branch="z9hG4bKb"))
    assert status_of(replay.data) == 401


def test_a_retransmission_gets_the_same_answer_without_counting_twice():
    core = make_core()
    text = challenge_for(core, "12345101")
    data = register("12345101", cseq=2, auth=digest("12345101", "secret-one", text),
                    branch="z9hG4bKr")
    first, again = receive(core, data), receive(core, data, T0 + 0.5)
    assert first.data == again.data and status_of(first.data) == 200
    assert core.stats["retransmissions"] == 1


def test_received_and_rport_are_added_for_phones_behind_nat():
    core = make_core()
    nat = ("203.0.113.9", 40000)
    send = receive(core, register("12345101", source=("10.0.0.5", 5060)), source=nat)
    via = [line for line in send.data.split(b"\r\n") if line.startswith(b"Via:")][0]
    assert b"received=203.0.113.9" in via and b"rport=40000" in via
    assert send.destination == nat


def test_too_brief_expiry_is_423_with_min_expires():
    core = make_core()
    send = authenticated(core, "12345101", "secret-one", expires=10)
    assert status_of(send.data) == 423 and b"Min-Expires: 60" in send.data


def test_contact_star_with_expires_zero_removes_every_binding():
    core = make_core()
    authenticated(core, "12345101", "secret-one")
    core.drain_events(10)
    send = authenticated(core, "12345101", "secret-one", contact="*", expires=0,
                         branch="z9hG4bKstar", call_id="call-2")
    assert status_of(send.data) == 200
    assert list(core.registrar.all_bindings()) == []
    assert [e["type"] for e in core.drain_events(10)] == ["auth_success", "unregistration"]


def test_bindings_expire_on_tick_and_are_reported():
    core = make_core()
    authenticated(core, "12345101", "secret-one", expires=60)
    core.drain_events(10)
    assert core.next_timer() is not None
    core.tick(T0 + 61)
    assert list(core.registrar.all_bindings()) == []
    assert [e["type"] for e in core.drain_events(10)] == ["unregistration"]


def test_disabling_dual_registration_removes_the_remote_bindings():
    core = make_core()
    authenticated(core, "12345101r", "secret-one")
    core.drain_events(10)
    record = extension_record("12345", "101", "secret-one", remote=False)
    core.apply_change({"version": 8, "op": "upsert", **record}, T0 + 1)
    assert list(core.registrar.all_bindings()) == []
    [event] = core.drain_events(10)
    assert (event["type"], event["user_id"]) == ("unregistration", "12345101r")
    assert status_of(authenticated(core, "12345101r", "secret-one", now=T0 + 2,
                                   branch="z9hG4bKafter").data) == 403


def test_repeated_failures_ban_the_source_and_it_is_dropped_before_parsing():
    core = make_core()
    attacker = ("198.51.100.7", 5060)
    for i in range(3):
        send = authenticated(core, "12345101", "guess", source=attacker,
                             branch=f"z9hG4bKatt{i}", now=T0 + i)
        assert status_of(send.data) == 403
    assert core.blocked(attacker[0], T0 + 3)
    assert not core.blocked(PHONE[0], T0 + 3)
    assert not core.blocked(EDGE[0], T0 + 3)  # the edge's own address, never


def test_failures_of_one_phone_behind_an_office_nat_lock_out_only_that_phone():
    core = make_core()
    office = ("198.51.100.20", 5060)
    assert status_of(authenticated(core, "12345101", "secret-one", source=office).data) == 200
    stale_phone = ("198.51.100.20", 5070)
    for i in range(4):
        authenticated(core, "12345102", "old", source=stale_phone, branch=f"z9hG4bKo{i}",
                      now=T0 + i)
    assert not core.blocked(office[0], T0 + 5)
    assert core.guard.locked_out(office[0], "12345102", T0 + 5)
    # Even the right password of the locked-out phone is refused from there, meanwhile.
    assert status_of(authenticated(core, "12345102", "secret-two", source=stale_phone,
                                   branch="z9hG4bKo9", now=T0 + 6).data) == 403
    assert status_of(authenticated(core, "12345101", "secret-one", source=office,
                                   branch="z9hG4bKo10", now=T0 + 6, call_id="c9").data) == 200


def test_a_fleet_ban_from_the_feed_and_its_lift():
    core = make_core()
    ban = {"version": 9, "kind": "ban", "key": "198.51.100.8", "op": "upsert",
           "payload": {"source": "198.51.100.8", "user_id": None,
                       "until": "2030-01-01T00:00:00+00:00", "reason": "test"}}
    core.apply_change(ban, T0)
    assert core.blocked("198.51.100.8", T0)
    core.apply_change({**ban, "version": 10, "op": "delete", "payload": None}, T0)
    assert not core.blocked("198.51.100.8", T0)


def test_an_ipv6_ban_covers_the_whole_64():
    core = make_core()
    core.apply_change({"version": 9, "kind": "ban", "key": "2001:db8:1:2::/64", "op": "upsert",
                       "payload": {"source": "2001:db8:1:2::/64", "user_id": None,
                                   "until": "2030-01-01T00:00:00+00:00", "reason": "t"}}, T0)
    assert core.blocked("2001:db8:1:2::99", T0)
    assert not core.blocked("2001:db8:1:3::1", T0)


@pytest.mark.parametrize("data", [
    b"",
    b"\x00\xff garbage",
    b"REGISTER sip:x SIP/2.0\r\n\r\n",  # no Via: nothing to answer to
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK1\r\n\r\n",
])
def test_malformed_or_unanswerable_input_is_dropped(data):
    assert make_core().receive(data, transport="udp", source=PHONE, now=T0) == []


def test_malformed_request_with_a_via_gets_400():
    data = (b"REGISTER sip:sip.test.trunkline SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKm\r\n"
            b"CSeq: 1 REGISTER\r\nCall-ID: m\r\nFrom: <sip:a@x;tag=1\r\nTo: <sip:a@x>\r\n"
            b"Contact: <sip:a@192.0.2.10>\r\nContent-Length: 0\r\n\r\n")
    send = receive(make_core(), data)
    assert status_of(send.data) == 400 and b"From" in send.data


@pytest.mark.parametrize("extra, contact, named", [
    ({"expires": "soon"}, None, b"Expires"),
    ({}, "<sip:12345101@192.0.2.10>;expires=x", b"Expires"),
    ({}, "*, <sip:12345101@192.0.2.10>", b"Contact"),
])
def test_a_bad_expiry_or_contact_gets_400_once_the_request_is_authenticated(extra, contact,
                                                                            named):
    # RFC 3261 §10.3: authentication (step 3) comes before the Contacts (step 6), so the
    # unauthenticated request is challenged and the authenticated one refused.
    core = make_core()
    text = challenge_for(core, "12345101", contact=contact, **extra)
    send = receive(core, register("12345101", branch="z9hG4bKbad", cseq=2, contact=contact,
                                  auth=digest("12345101", "secret-one", text), **extra))
    assert status_of(send.data) == 400 and named in send.data
    assert core.registrar.bindings("12345101", T0) == []


def test_options_is_answered_and_other_methods_are_501():
    core = make_core()
    options = register("12345101").replace(b"REGISTER sip", b"OPTIONS sip").replace(
        b"1 REGISTER", b"1 OPTIONS")
    assert status_of(receive(core, options).data) == 200
    invite = register("12345101").replace(b"REGISTER sip", b"SUBSCRIBE sip").replace(
        b"1 REGISTER", b"1 SUBSCRIBE")
    assert status_of(receive(core, invite).data) == 501


def test_events_are_bounded_while_the_control_plane_is_away():
    core = make_core(max_events=5)
    for i in range(8):
        authenticated(core, "12345999", "x", source=(f"192.0.2.{100 + i}", 5060),
                      branch=f"z9hG4bKe{i}")
    assert len(core.events) == 5 and core.events_dropped > 0


def test_a_phone_registering_again_before_the_link_takes_the_events_is_reported_once():
    core = make_core()
    for n in range(3):
        send = authenticated(core, "12345101", "secret-one", branch=f"z9hG4bKagain{n}",
                             expires=300 - n, call_id=f"again-{n}")
        assert status_of(send.data) == 200
    events = core.drain_events(10)
    assert [e["type"] for e in events] == ["auth_success", "registration"]
    assert events[1]["expires"] == 298  # the latest registration's


def test_a_new_config_keeps_serving_and_drops_users_that_are_gone():
    core = make_core()
    authenticated(core, "12345102", "secret-two")
    fresh = EdgeConfig()
    fresh.begin_snapshot(20)
    fresh.add_snapshot_record(extension_record("12345", "101", "secret-one"))
    fresh.end_snapshot()
    core.replace_config(fresh, T0 + 1)
    assert list(core.registrar.all_bindings()) == []
    assert status_of(authenticated(core, "12345101", "secret-one", now=T0 + 2,
                                   branch="z9hG4bKn").data) == 200


def test_expires_in_non_ascii_digits_is_a_400_not_a_crash():
    core = make_core()
    for value in ("²", "١٢٠"):
        text = challenge_for(core, "12345101")
        auth = digest("12345101", "secret-one", text)
        send = receive(core, register("12345101", branch=f"z9hG4bKx{ord(value[0])}", cseq=2,
                                      auth=auth).replace(b"Expires: 300",
                                                         f"Expires: {value}".encode()))
        assert status_of(send.data) == 400


def test_a_stale_nonce_tells_nothing_about_the_password():
    core = make_core()
    text = challenge_for(core, "12345101")
    later = T0 + 301
    answers = []
    for i, password in enumerate(["secret-one", "wrong"]):
        auth = digest("12345101", password, text)
        send = receive(core, register("12345101", cseq=2, auth=auth, branch=f"z9hG4bKst{i}"),
                       later)
        answers.append((status_of(send.data), b"stale=true" in send.data))
    assert answers == [(401, True), (401, True)]
    assert not [e for e in core.drain_events(10) if e["type"] == "auth_failure"]


def test_a_nonce_answered_from_another_source_counts_nothing_against_it():
    core = make_core()
    text = challenge_for(core, "12345101", source=("203.0.113.66", 5060))
    victim = ("198.51.100.10", 5060)
    for i in range(5):
        auth = digest("12345101", "wrong", text)
        send = receive(core, register("12345101", cseq=2 + i, auth=auth, branch=f"z9hG4bKsp{i}",
                                      source=victim), source=victim)
        assert status_of(send.data) == 401  # a fresh challenge, no failure
    assert not core.blocked(victim[0], T0 + 1)
    assert not [e for e in core.drain_events(10) if e["type"] == "auth_failure"]


def test_a_request_captured_before_a_restart_cannot_be_replayed_after_it():
    core = make_core()
    text = challenge_for(core, "12345101")
    data = register("12345101", cseq=2, auth=digest("12345101", "secret-one", text),
                    branch="z9hG4bKcap", contact="<sip:evil@203.0.113.66>")
    restarted = make_core()  # the same nonce secret, no memory of nonce counts
    receive(restarted, register("12345102", branch="z9hG4bKwarm"), T0 + 5)
    send = receive(restarted, data, T0 + 10)
    assert status_of(send.data) == 401 and b"stale=true" in send.data
    assert list(restarted.registrar.all_bindings()) == []


def test_invented_methods_share_one_metric_label():
    core = make_core()
    for i in range(20):
        data = register("12345101").replace(b"REGISTER sip", f"X{i} sip".encode()).replace(
            b"1 REGISTER", f"1 X{i}".encode())
        receive(core, data)
    assert core.stats["request:other"] == 20
    assert not [k for k in core.stats if k.startswith("request:X")]


def test_received_goes_on_the_top_via_even_with_a_quoted_comma():
    core = make_core()
    data = register("12345101", source=("10.0.0.5", 5060)).replace(
        b";rport\r\n", b';rport;x="a,b", SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKlower\r\n')
    send = receive(core, data, source=("203.0.113.9", 4000))
    via = [line for line in send.data.split(b"\r\n") if line.startswith(b"Via:")][0]
    assert via == (b'Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport=4000;x="a,b";'
                   b"received=203.0.113.9, SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKlower")


def test_events_name_addresses_as_the_control_plane_takes_them():
    core = make_core()
    mapped = ("::ffff:198.51.100.3", 5060)
    text = receive(core, register("12345999", branch="z9hG4bKm1"), source=mapped).data.decode()
    receive(core, register("12345999", cseq=2, branch="z9hG4bKm2",
                           auth=digest("12345999", "x", text)), source=mapped)
    [failure] = [e for e in core.drain_events(10) if e["type"] == "auth_failure"]
    assert failure["address"] == "198.51.100.3"


def test_the_first_request_after_a_start_registers():
    core = make_core()
    now = 1_800_000_000.0004  # the nonce's milliseconds round down
    assert status_of(authenticated(core, "12345101", "secret-one", now=now).data) == 200


def test_a_phone_that_moved_away_no_longer_shelters_its_old_address():
    core = make_core()
    office, home = ("198.51.100.20", 5060), ("203.0.113.50", 5060)
    authenticated(core, "12345101", "secret-one", source=office)
    assert core._users_from("198.51.100.20") == ("12345101",)
    # The same contact refreshed from elsewhere (a laptop leaving the office).
    authenticated(core, "12345101", "secret-one", source=home, branch="z9hG4bKmove",
                  call_id="c-mv", now=T0 + 10, contact="<sip:12345101@198.51.100.20:5060>")
    assert core._users_from("198.51.100.20") == ()
    assert core._users_from("203.0.113.50") == ("12345101",)
    for i in range(3):
        authenticated(core, "12345102", "old", source=office, branch=f"z9hG4bKmv{i}",
                      now=T0 + 20 + i)
    assert core.blocked(office[0], T0 + 30)  # nobody registered there any more: a ban


@pytest.mark.parametrize("compact", [False, True])
def test_ack_is_never_answered(compact):
    core = make_core()
    data = register("12345101").replace(b"REGISTER", b"ACK")
    if compact:  # read by the full parser rather than in one pass
        data = data.replace(b"Via:", b"v:").replace(b"\r\n\r\n", b"\r\nX-Odd: 1\r\n\r\n")
    assert core.receive(data, transport="udp", source=PHONE, now=T0) == []
    assert core.stats["messages"] == 1 and not core.stats["response:501"]


# --- The usual request read in one pass answers as the full parser does ---------------

# Ways phones write a REGISTER: the usual shape (read in one pass), and shapes only the
# full parser reads (compact and odd-cased names, folding, two Vias, display names...).
SHAPES = [  # (shape, read in one pass)
    (lambda lines: lines, True),
    (lambda lines: [line.replace("Via:", "v:").replace("Contact:", "m:") for line in lines],
     True),
    (lambda lines: [line.replace("To: <sip:", "To: <SIP:") for line in lines], True),
    (lambda lines: [line.replace("Contact: <", "Contact: <sip:x@192.0.2.99>, <")
                    for line in lines], True),
    (lambda lines: [line.replace(">;tag=abc", ">;TAG=abc") for line in lines], True),
    (lambda lines: [line.replace("User-Agent: TestPhone/1.0", "User-Agent: baresip v1.0.0")
                    for line in lines], True),
    (lambda lines: [line.replace("CSeq:", "CSEQ :") for line in lines], False),
    (lambda lines: [*lines, "X-Serial: 00:15:65:aa"], False),
    (lambda lines: [line.replace(";rport", "\r\n ;rport") for line in lines], False),
    (lambda lines: [line.replace("From: <", 'From: "Desk \\"101\\"" <') for line in lines],
     False),
    (lambda lines: [*lines[:2], "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKp", *lines[2:]],
     False),
]


def shaped(data, shape):
    head, _, body = data.partition(b"\r\n\r\n")
    return ("\r\n".join(shape(head.decode().split("\r\n"))) + "\r\n\r\n").encode() + body


@pytest.mark.parametrize("shape", range(len(SHAPES)))
@pytest.mark.parametrize("user, password, source", [
    ("12345101", "secret-one", PHONE),  # right
    ("12345101r", "secret-one", ("203.0.113.9", 40000)),  # the remote endpoint, behind NAT
    ("12345101", "wrong", PHONE),  # a failure
    ("12345777", "nope", PHONE),  # an unknown user
])
def test_one_pass_reading_answers_as_the_full_parser(monkeypatch, shape, user, password,
                                                     source):
    full, fast = make_core(), make_core()
    for core in (full, fast):  # the same nonces in both
        counter = itertools.count()
        core.nonces._random = lambda counter=counter: next(counter).to_bytes(8, "big")
    read = sipedge.core.read_request_view
    seen = []

    def exchange(data, now):
        monkeypatch.setattr(sipedge.core, "read_request_view", lambda data: None)
        expected = full.receive(data, transport="udp", source=source, now=now)
        monkeypatch.setattr(sipedge.core, "read_request_view",
                            lambda data: seen.append(read(data)) or seen[-1])
        got = fast.receive(data, transport="udp", source=source, now=now)
        assert got == expected
        assert fast.drain_events(10) == full.drain_events(10)
        return got[0].data.decode()

    shape, one_pass = SHAPES[shape]
    first = shaped(register(user, branch="z9hG4bKq1", source=source), shape)
    challenge = exchange(first, T0)
    auth = digest(user, password, challenge)
    second = shaped(register(user, branch="z9hG4bKq2", cseq=2, auth=auth, source=source),
                    shape)
    exchange(second, T0 + 1)
    exchange(second, T0 + 2)  # a retransmission
    assert len(seen) == 3
    # Each shape takes the way it is meant to (else this test would prove nothing).
    assert (None not in seen) if one_pass else (seen == [None] * 3)
