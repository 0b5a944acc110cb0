"""The edge's guard: the fleet's bans, its own provisional bans, lockouts, trusted networks."""

import datetime as dt

from sipedge.config import EdgeConfig
from sipedge.guard import PROVISIONAL, Guard

T0 = 1_800_000_000.0
POLICY = {"max_retry": 3, "find_time": 60, "ban_time": 3600, "ban_time_factor": 2,
          "max_ban_time": 86400, "scan_user_ids": 3, "ipv6_prefix": 64}


def config_with(*records):
    config = EdgeConfig()
    config.begin_snapshot(1)
    config.add_snapshot_record({"kind": "ban_policy", "key": "platform", "payload": POLICY})
    for record in records:
        config.add_snapshot_record(record)
    config.end_snapshot()
    return config


def ban_record(source, user_id=None, until=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)):
    key = source if user_id is None else f"{source}|{user_id}"
    return {"kind": "ban", "key": key, "payload": {"source": source, "user_id": user_id,
                                                   "until": until.isoformat(), "reason": "t"}}


def guard_with(*records, own=("127.0.0.1",)):
    guard = Guard(own_addresses=own)
    guard.load(config_with(*records))
    return guard


def test_n_minus_one_failures_do_nothing_and_the_nth_bans():
    guard = guard_with()
    assert guard.failure("192.0.2.1", "u1", T0).action is None
    assert guard.failure("192.0.2.1", "u1", T0 + 1).action is None
    verdict = guard.failure("192.0.2.1", "u1", T0 + 2)
    assert verdict.action == "ban" and guard.blocked("192.0.2.1", T0 + 3)


def test_failures_spread_wider_than_find_time_never_ban():
    guard = guard_with()
    for i in range(10):
        assert guard.failure("192.0.2.1", "u1", T0 + i * 61).action is None


def test_the_edges_own_ban_is_provisional_until_the_fleet_confirms_it():
    guard = guard_with()
    for i in range(3):
        guard.failure("192.0.2.1", "u1", T0 + i)
    assert guard.blocked("192.0.2.1", T0 + PROVISIONAL - 1)
    assert not guard.blocked("192.0.2.1", T0 + PROVISIONAL + 3)


def test_lifting_a_confirmed_ban_forgives_the_edges_own_ban_too():
    guard = guard_with()
    for i in range(3):
        guard.failure("192.0.2.1", "u1", T0 + i)
    guard.load(config_with(ban_record("192.0.2.1")))  # the fleet's ban arrives
    guard.load(config_with())  # and is lifted
    assert not guard.blocked("192.0.2.1", T0 + 5)
    # The counters behind it are reset: one more failure does not ban again.
    assert guard.failure("192.0.2.1", "u1", T0 + 6).action is None


def test_a_scan_bans_the_address_even_when_it_shelters_registrations():
    guard = guard_with()
    verdicts = [guard.failure("192.0.2.1", u, T0 + i, sheltered_by=["good"])
                for i, u in enumerate(["a", "b", "c"])]
    assert verdicts[-1].action == "ban"


def test_one_phone_behind_a_sheltering_nat_is_locked_out_alone():
    guard = guard_with()
    verdicts = [guard.failure("192.0.2.1", "stale", T0 + i, sheltered_by=["good"])
                for i in range(3)]
    assert verdicts[-1].action == "lockout"
    assert not guard.blocked("192.0.2.1", T0 + 3)
    assert guard.locked_out("192.0.2.1", "stale", T0 + 3)
    assert not guard.locked_out("192.0.2.1", "good", T0 + 3)


def test_trusted_networks_are_never_banned_as_a_whole_here():
    trusted = {"kind": "trusted_network", "key": "1",
               "payload": {"cidr": "198.51.100.0/24", "trunk_number": "12345"}}
    guard = guard_with(trusted)
    verdicts = [guard.failure("198.51.100.7", "u1", T0 + i) for i in range(3)]
    assert verdicts[-1].action == "lockout" and not guard.blocked("198.51.100.7", T0 + 3)


def test_own_addresses_are_never_banned_even_by_the_fleet():
    guard = guard_with(ban_record("127.0.0.1"))
    assert not guard.blocked("127.0.0.1", T0)
    assert all(guard.failure("127.0.0.1", "u", T0 + i).action is None for i in range(5))


def test_expired_fleet_bans_end_on_time():
    until = dt.datetime.fromtimestamp(T0 + 10, dt.timezone.utc)
    guard = guard_with(ban_record("192.0.2.9", until=until))
    assert guard.blocked("192.0.2.9", T0 + 9) and not guard.blocked("192.0.2.9", T0 + 11)


def test_ipv4_mapped_and_ipv6_prefixes_are_one_source():
    guard = guard_with(ban_record("192.0.2.5"), ban_record("2001:db8:0:1::/64"))
    assert guard.blocked("::ffff:192.0.2.5", T0)
    assert guard.blocked("2001:db8:0:1:ffff::42", T0)
    assert not guard.blocked("2001:db8:0:2::1", T0)


def test_pair_lockouts_from_the_fleet():
    guard = guard_with(ban_record("192.0.2.5", "12345101"))
    assert not guard.blocked("192.0.2.5", T0)
    assert guard.locked_out("192.0.2.5", "12345101", T0)
    assert not guard.locked_out("192.0.2.5", "12345102", T0)


def test_a_lift_from_the_feed_ends_the_edges_own_ban_at_once():
    guard = guard_with()
    for i in range(3):
        guard.failure("192.0.2.1", "u1", T0 + i)
    assert guard.blocked("192.0.2.1", T0 + 3)
    guard.apply_ban("192.0.2.1", ban_record("192.0.2.1")["payload"])
    guard.apply_ban("192.0.2.1", None)
    assert not guard.blocked("192.0.2.1", T0 + 4)
    guard.apply_ban("192.0.2.5|u9", ban_record("192.0.2.5", "u9")["payload"])
    assert guard.locked_out("192.0.2.5", "u9", T0)
    guard.apply_ban("192.0.2.5|u9", None)
    assert not guard.locked_out("192.0.2.5", "u9", T0)


def test_a_lockout_settles_its_failures_so_other_phones_typos_do_not_ban_the_office():
    guard = guard_with()
    for i in range(3):
        guard.failure("192.0.2.1", "stale", T0 + i, sheltered_by=["good"])
    verdicts = [guard.failure("192.0.2.1", u, T0 + 5 + i, sheltered_by=["good"])
                for i, u in enumerate(["typo-a", "typo-b"])]
    assert [v.action for v in verdicts] == [None, None]
    assert not guard.blocked("192.0.2.1", T0 + 8)


def test_purge_forgets_what_has_ended():
    guard = guard_with(ban_record("192.0.2.9", until=dt.datetime.fromtimestamp(
        T0 + 10, dt.timezone.utc)))
    for i in range(3):
        guard.failure("192.0.2.1", "u1", T0 + i)
    guard.failure("192.0.2.2", "u1", T0)
    guard.purge(T0 + 10_000)
    assert guard.counts(T0) == {"fleet_bans": 0, "local_bans": 0, "lockouts": 0,
                                "tracked_sources": 0}


def test_the_platforms_trusted_networks_are_neither_banned_nor_locked_out():
    trusted = {"kind": "trusted_network", "key": "9",
               "payload": {"cidr": "203.0.113.0/24", "trunk_number": None}}
    guard = guard_with(trusted)
    assert all(guard.failure("203.0.113.5", "u1", T0 + i).action is None for i in range(6))
    assert not guard.locked_out("203.0.113.5", "u1", T0 + 7)
