"""The ban engine, driven through its services with an injected clock."""

import datetime as dt

import pytest
from sqlalchemy import func, select

from tenants.errors import Conflict, Invalid, NotFound
from tenants.models import (
    AuditEvent, Ban, BanPolicy, BanTenant, FailureWindow, Offender, OutboxEntry, Role,
)
from tenants.scope import Forbidden, Principal
from tenants.services import bans, edges, resellers, tenants
from tenants.services.bans import Failure, Success

from .conftest import ROOT

T0 = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)


def at(seconds):
    return T0 + dt.timedelta(seconds=seconds)


def fail(session, address, user_id="12345101", when=0, reason="wrong_password", edge="edge-1"):
    return bans.record_failure(session, address=address, user_id=user_id, reason=reason,
                               at=at(when), edge=edge)


def active(session, when=0, **filters):
    return session.scalars(bans.list_bans(session, ROOT, now=at(when), **filters)).all()


def test_four_failures_give_no_ban_and_the_fifth_does(session):
    for i in range(4):
        assert fail(session, "192.0.2.7", when=i).outcome == "recorded"
    assert active(session, 4) == []
    decision = fail(session, "192.0.2.7", when=4)
    assert decision.outcome == "banned"
    [ban] = active(session, 5)
    assert (ban.source, ban.user_id, ban.until) == ("192.0.2.7", None, at(4 + 3600))
    assert ban.failures == 5 and ban.user_ids == ["12345101"] and ban.edges == ["edge-1"]
    assert (ban.first_attempt_at, ban.last_attempt_at) == (at(0), at(4))


def test_unknown_user_ids_count_like_wrong_passwords(session):
    for i in range(5):
        decision = fail(session, "192.0.2.7", user_id="99999101", reason="unknown_user", when=i)
    assert decision.outcome == "banned"


def test_stale_nonces_do_not_count(session):
    for i in range(10):
        assert fail(session, "192.0.2.7", reason="stale_nonce", when=i).outcome == "ignored"
    assert active(session, 10) == []


def test_failures_spread_wider_than_find_time_never_ban(session):
    for i in range(20):
        assert fail(session, "192.0.2.7", when=i * 151).outcome == "recorded"  # 4 per 600 s
    assert active(session, 20 * 151) == []


def test_max_retry_at_the_cap_bans_at_the_last_kept_failure(session):
    bans.update_policy(session, ROOT, max_retry=bans.RECENT_CAP)
    for i in range(bans.RECENT_CAP - 1):
        assert fail(session, "192.0.2.7", when=i).outcome == "recorded"
    assert fail(session, "192.0.2.7", when=bans.RECENT_CAP).outcome == "banned"


@pytest.mark.parametrize("name", ["max_retry", "scan_user_ids"])
def test_a_policy_counting_more_failures_than_are_kept_is_invalid(session, name):
    with pytest.raises(Invalid) as err:
        bans.update_policy(session, ROOT, **{name: bans.RECENT_CAP + 1})
    assert name in err.value.fields
    session.rollback()
    assert getattr(bans.get_policy(session), name) < bans.RECENT_CAP


def test_a_stored_max_retry_above_the_cap_still_bans_at_the_cap(session):
    session.get(BanPolicy, 1).max_retry = 1000  # as PUT /ban-policy used to allow
    session.commit()
    for i in range(bans.RECENT_CAP - 1):
        fail(session, "192.0.2.7", when=i)
    assert fail(session, "192.0.2.7", when=bans.RECENT_CAP).outcome == "banned"


def test_the_ban_ends_on_time(session):
    for i in range(5):
        fail(session, "192.0.2.7", when=i)
    assert len(active(session, 3603)) == 1
    assert active(session, 3605) == []
    assert len(active(session, 3605, active=False)) == 1


def test_repeat_offenders_escalate_up_to_the_cap(session):
    bans.update_policy(session, ROOT, ban_time=100, ban_time_factor=3, max_ban_time=1000)
    durations, clock = [], 0
    for _ in range(5):
        for _ in range(5):
            clock += 1
            decision = fail(session, "192.0.2.7", when=clock)
        assert decision.outcome == "banned"
        durations.append((decision.ban.until - decision.ban.created_at).total_seconds())
        clock = (decision.ban.until - T0).total_seconds() + 1
    assert durations == [100, 300, 900, 1000, 1000]


def test_one_phone_behind_an_office_nat_locks_out_only_itself(session):
    for user in ("12345102", "12345103"):
        bans.record_success(session, address="198.51.100.9", user_id=user, at=at(0),
                            valid_until=at(3600))
    for i in range(5):
        decision = fail(session, "198.51.100.9", user_id="12345101", when=10 + i)
    assert decision.outcome == "locked_out"
    [lockout] = active(session, 20)
    assert (lockout.source, lockout.user_id) == ("198.51.100.9", "12345101")
    # the other phones of the office are not banned
    assert active(session, 20, kind="address") == []


@pytest.mark.parametrize("address", ["198.51.100.9", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"])
def test_a_lockout_of_a_user_id_as_long_as_any_reaches_the_edges(session, address):
    # The edges name a lockout by source and user ID; with the longest user ID there is,
    # that name must still fit the outbox.
    bans.update_policy(session, ROOT, ipv6_prefix=128)  # the longest source text there is
    bans.record_success(session, address=address, user_id="12345102", at=at(0),
                        valid_until=at(3600))
    user_id = "9" * 64
    for i in range(5):
        decision = fail(session, address, user_id=user_id, when=10 + i)
    assert decision.outcome == "locked_out"
    bans.lift_bans(session, ROOT, address, now=at(20))
    entries = session.scalars(select(OutboxEntry).where(OutboxEntry.kind == "ban")
                              .order_by(OutboxEntry.version)).all()
    assert [(e.op, e.payload and e.payload["user_id"]) for e in entries] == [
        ("upsert", user_id), ("delete", None)]
    assert entries[0].key == entries[1].key  # the lift names the lockout it ends


def test_a_scan_from_an_office_nat_bans_the_whole_address(session):
    bans.record_success(session, address="198.51.100.9", user_id="12345102", at=at(0),
                        valid_until=at(3600))
    for i, user in enumerate(["12345201", "12345202", "12345203", "12345204", "12345205"]):
        decision = fail(session, "198.51.100.9", user_id=user, when=10 + i)
    assert decision.outcome == "banned"
    assert decision.ban.user_id is None and "scan" in decision.ban.reason


def test_expired_registrations_do_not_shelter_an_address(session):
    bans.record_success(session, address="198.51.100.9", user_id="12345102", at=at(0),
                        valid_until=at(60))
    for i in range(5):
        decision = fail(session, "198.51.100.9", when=100 + i)
    assert decision.outcome == "banned"


def test_a_correct_answer_forgives_earlier_typos(session):
    for i in range(4):
        fail(session, "192.0.2.7", when=i)
    bans.record_success(session, address="192.0.2.7", user_id="12345101", at=at(5))
    for i in range(4):
        assert fail(session, "192.0.2.7", when=10 + i).outcome == "recorded"


def test_platform_trusted_networks_are_never_banned_but_failures_are_shown(session):
    bans.add_trusted_network(session, ROOT, cidr="203.0.113.0/24", description="NOC")
    for i in range(10):
        assert fail(session, "203.0.113.50", user_id=f"1234510{i}", when=i).outcome == "exempt"
    assert active(session, 10) == []
    window = session.get(FailureWindow, "203.0.113.50")
    assert window.failures == 10


def test_tenant_trusted_network_gets_pair_lockouts_not_bans(session):
    tenants.create_tenant(session, ROOT, name="Acme", trunk_number="12345")
    bans.add_trusted_network(session, ROOT, "12345", cidr="198.51.100.0/24")
    for i in range(5):
        decision = fail(session, "198.51.100.9", user_id="12345101", when=i)
    assert decision.outcome == "locked_out"


def test_tenant_trusted_network_does_not_shelter_a_scan_of_other_tenants(session):
    tenants.create_tenant(session, ROOT, name="Acme", trunk_number="12345")
    bans.add_trusted_network(session, ROOT, "12345", cidr="198.51.100.0/24")
    for i, user in enumerate(["54321101", "54321102", "54321103", "54321104", "54321105"]):
        decision = fail(session, "198.51.100.9", user_id=user, when=i)
    assert decision.outcome == "banned"


def test_tenant_trusted_network_does_not_shelter_failures_of_unknown_user_ids(session):
    # The documented deviation from "never banned as a whole": the failures must all be the
    # tenant's own for its trusted range to spare the address.
    tenants.create_tenant(session, ROOT, name="Acme", trunk_number="12345")
    bans.add_trusted_network(session, ROOT, "12345", cidr="198.51.100.0/24")
    for i, user in enumerate(["12345101"] * 4 + ["admin"]):
        decision = fail(session, "198.51.100.9", user_id=user, when=i)
    assert decision.outcome == "banned" and decision.ban.user_id is None


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "10.0.0.0/8", "::/0", "2001:db8::/16"])
def test_tenants_may_not_trust_wide_ranges(session, cidr):
    tenants.create_tenant(session, ROOT, name="Acme", trunk_number="12345")
    with pytest.raises(Invalid) as err:
        bans.add_trusted_network(session, ROOT, "12345", cidr=cidr)
    assert "cidr" in err.value.fields


def test_ipv6_failures_count_per_64_and_ban_the_prefix(session):
    for i in range(5):
        decision = fail(session, f"2001:db8:1:2::{i + 1:x}", when=i)
    assert decision.outcome == "banned"
    assert decision.ban.source == "2001:db8:1:2::/64"
    assert fail(session, "2001:db8:1:2:ffff::1", when=10).outcome == "recorded"  # already banned
    assert active(session, 10, address="2001:db8:1:2:abcd::9")[0].id == decision.ban.id


def test_an_edges_own_ipv6_address_protects_its_prefix(session):
    edge, _token = edges.enroll_edge(session, ROOT, name="edge-1")
    edge.addresses = ["2001:db8:9:9::5"]
    session.commit()
    for i in range(10):
        assert fail(session, f"2001:db8:9:9::{i + 100:x}", user_id=f"1234510{i}",
                    when=i).outcome == "exempt"
    with pytest.raises(Conflict):
        bans.ban_by_hand(session, ROOT, address="2001:db8:9:9::77", now=at(20))


def test_a_platform_trusted_ipv6_range_narrower_than_the_prefix_applies(session):
    bans.add_trusted_network(session, ROOT, cidr="2001:db8:7:7::/120")
    for i in range(10):
        assert fail(session, "2001:db8:7:7::1", user_id=f"1234510{i}", when=i).outcome == "exempt"


def test_a_tenant_trusted_ipv6_range_narrower_than_the_prefix_applies(session):
    tenants.create_tenant(session, ROOT, name="Acme", trunk_number="12345")
    bans.add_trusted_network(session, ROOT, "12345", cidr="2001:db8:7:7::/96")
    for i in range(5):
        decision = fail(session, "2001:db8:7:7::1", user_id="12345101", when=i)
    assert decision.outcome == "locked_out"


def test_an_ipv6_range_beside_the_prefix_does_not_apply(session):
    bans.add_trusted_network(session, ROOT, cidr="2001:db8:7:8::/120")
    for i in range(5):
        decision = fail(session, "2001:db8:7:7::1", when=i)
    assert decision.outcome == "banned"


def test_the_ipv6_prefix_is_configurable(session):
    bans.update_policy(session, ROOT, ipv6_prefix=56)
    for i in range(5):
        decision = fail(session, f"2001:db8:1:{i}::1", when=i)
    assert decision.ban.source == "2001:db8:1::/56"


def test_ipv4_mapped_addresses_are_ipv4(session):
    for i in range(5):
        decision = fail(session, "::ffff:192.0.2.7" if i % 2 else "192.0.2.7", when=i)
    assert decision.outcome == "banned" and decision.ban.source == "192.0.2.7"


@pytest.mark.parametrize("address", ["", "nope", "192.0.2.300", "fe80::1%eth0", "1.2.3.4/24"])
def test_bad_addresses_are_invalid(session, address):
    with pytest.raises(Invalid):
        fail(session, address)


def test_bans_survive_a_restart(session_factory, session):
    for i in range(5):
        fail(session, "192.0.2.7", when=i)
    session.close()
    session_factory.kw["bind"].dispose()  # every connection gone, as after a restart
    with session_factory() as fresh:
        assert [b.source for b in active(fresh, 10)] == ["192.0.2.7"]


def test_a_lifted_ban_stays_lifted_and_resets_the_counts(session):
    for i in range(5):
        fail(session, "192.0.2.7", when=i)
    bans.lift_bans(session, ROOT, "192.0.2.7", now=at(10))
    assert active(session, 11) == []
    for i in range(4):  # counting starts afresh
        assert fail(session, "192.0.2.7", when=20 + i).outcome == "recorded"


def test_every_ban_and_lift_reaches_the_edge_outbox(session):
    for i in range(5):
        fail(session, "192.0.2.7", when=i)
    bans.lift_bans(session, ROOT, "192.0.2.7", now=at(10))
    found = [(e.kind, e.key, e.op) for e in session.scalars(
        select(OutboxEntry).where(OutboxEntry.kind == "ban").order_by(OutboxEntry.version))]
    assert found == [("ban", "192.0.2.7", "upsert"), ("ban", "192.0.2.7", "delete")]


def test_manual_bans_are_platform_only_and_audited(session):
    ban = bans.ban_by_hand(session, ROOT, address="192.0.2.99", duration=60, reason="abuse",
                           now=at(0))
    assert (ban.manual, ban.until, ban.reason) == (True, at(60), "abuse")
    tenant = tenants.create_tenant(session, ROOT, name="Acme", trunk_number="12345")
    with pytest.raises(Forbidden):
        bans.ban_by_hand(session, Principal(role=Role.TENANT, name="t", tenant_id=tenant.id),
                         address="192.0.2.98")


class TestVisibility:
    @pytest.fixture
    def world(self, session):
        reseller = resellers.create_reseller(session, ROOT, name="R")
        mine = tenants.create_tenant(session, ROOT, name="Mine", trunk_number="12345",
                                     reseller_id=reseller.id)
        other = tenants.create_tenant(session, ROOT, name="Other", trunk_number="54321")
        return {
            "tenant": Principal(role=Role.TENANT, name="t", tenant_id=mine.id),
            "other": Principal(role=Role.TENANT, name="o", tenant_id=other.id),
            "reseller": Principal(role=Role.RESELLER, name="r", reseller_id=reseller.id),
        }

    def lock_out_own_office(self, session):
        for i in range(5):
            fail(session, "192.0.2.7", user_id="12345101", when=i)

    def test_tenants_see_bans_of_their_own_user_ids_only(self, session, world):
        self.lock_out_own_office(session)
        now = at(10)
        seen = lambda p: session.scalars(bans.list_bans(session, p, now=now)).all()  # noqa: E731
        assert len(seen(world["tenant"])) == 1
        assert len(seen(world["reseller"])) == 1
        assert seen(world["other"]) == []

    def test_a_tenant_lifts_a_ban_it_caused_itself(self, session, world):
        self.lock_out_own_office(session)
        bans.lift_bans(session, world["tenant"], "192.0.2.7", now=at(10))
        assert active(session, 11) == []

    def test_a_tenant_cannot_see_or_lift_another_tenants_ban(self, session, world):
        self.lock_out_own_office(session)
        with pytest.raises(NotFound):
            bans.lift_bans(session, world["other"], "192.0.2.7", now=at(10))

    def test_a_ban_that_involves_others_cannot_be_lifted_by_a_tenant(self, session, world):
        for i, user in enumerate(["12345101", "54321101", "12345102", "54321102", "12345103"]):
            fail(session, "192.0.2.7", user_id=user, when=i)
        with pytest.raises(Forbidden):
            bans.lift_bans(session, world["tenant"], "192.0.2.7", now=at(10))
        with pytest.raises(Forbidden):
            bans.lift_bans(session, world["reseller"], "192.0.2.7", now=at(10))
        bans.lift_bans(session, ROOT, "192.0.2.7", now=at(10))

    def test_a_resellers_tenant_ban_is_liftable_by_the_reseller(self, session, world):
        self.lock_out_own_office(session)
        bans.lift_bans(session, world["reseller"], "192.0.2.7", now=at(10))
        assert active(session, 11) == []


def test_purge_forgets_quiet_sources(session):
    for i in range(3):
        fail(session, f"192.0.2.{i + 1}", when=i)
    bans.purge(session, at(601.5))  # sources 1 and 2 quiet for 600 s; 3 not yet
    assert session.scalar(select(func.count()).select_from(FailureWindow)) == 1
    bans.purge(session, at(700))
    assert session.scalar(select(func.count()).select_from(FailureWindow)) == 0


def test_a_batch_applies_in_time_order(session):
    events = [Failure("192.0.2.7", "12345101", "wrong_password", at(i)) for i in (4, 2, 0, 3, 1)]
    decisions = bans.record_auth_events(session, events)
    assert [d.outcome for d in decisions] == ["recorded"] * 4 + ["banned"]
    assert session.scalar(select(func.count()).select_from(Ban)) == 1


def test_a_batch_with_a_bad_event_changes_nothing(session):
    events = [Failure("192.0.2.7", "12345101", "wrong_password", at(0)),
              Success("bogus", "12345101", at(1))]
    with pytest.raises(Invalid) as err:
        bans.record_auth_events(session, events)
    assert "1.address" in err.value.fields
    assert session.scalar(select(func.count()).select_from(FailureWindow)) == 0


def test_a_bad_event_is_named_as_the_caller_names_it(session):
    # An edge's batch mixes auth events with heartbeats and ring modes: entry 7 of what it
    # sent may be the second auth event.
    events = [Failure("192.0.2.7", "12345101", "wrong_password", at(0)),
              Failure("nope", "12345101", "wrong_password", at(1))]
    with pytest.raises(Invalid) as err:
        bans.apply_auth_events(session, events, names=["events.3", "events.7"])
    assert set(err.value.fields) == {"events.7.address"}


def test_a_batch_may_name_the_same_registration_twice(session):
    events = [Success("192.0.2.7", "12345101", at(0), at(300)),
              Success("192.0.2.7", "12345101", at(1), at(600))]
    bans.record_auth_events(session, events)
    from tenants.models import SourceRegistration

    [reg] = session.scalars(select(SourceRegistration)).all()
    assert reg.valid_until == at(600)


def test_automatic_bans_are_not_audited_but_their_lifts_are(session):
    for i in range(5):
        fail(session, "192.0.2.7", when=i)
    assert session.scalars(select(AuditEvent).where(AuditEvent.object_type == "ban")).all() == []
    bans.lift_bans(session, ROOT, "192.0.2.7", now=at(10))
    [event] = session.scalars(select(AuditEvent).where(AuditEvent.object_type == "ban")).all()
    assert event.action == "ban.update" and event.details["lifted_at"][1] is not None


def ban_audit(session):
    return session.scalars(select(AuditEvent).where(AuditEvent.object_type == "ban")
                           .order_by(AuditEvent.id)).all()


def test_a_tenants_own_lift_is_in_its_audit_scope(session):
    tenant = tenants.create_tenant(session, ROOT, name="Acme", trunk_number="12345")
    for i in range(5):
        fail(session, "192.0.2.7", user_id="12345101", when=i)
    bans.lift_bans(session, Principal(role=Role.TENANT, name="t", tenant_id=tenant.id),
                   "192.0.2.7", now=at(10))
    [event] = ban_audit(session)
    assert (event.action, event.tenant_id) == ("ban.update", tenant.id)


def test_a_manual_lockout_of_a_tenants_user_id_is_in_its_audit_scope(session):
    tenant = tenants.create_tenant(session, ROOT, name="Acme", trunk_number="12345")
    bans.ban_by_hand(session, ROOT, address="192.0.2.7", user_id="12345101", now=at(0))
    [tenant_id] = session.scalars(select(BanTenant.tenant_id)).all()
    assert tenant_id == tenant.id  # it is the tenant's, in GET /bans too
    [event] = ban_audit(session)
    assert (event.action, event.tenant_id) == ("ban.create", tenant.id)


def test_the_lift_of_a_scan_over_several_tenants_is_the_platforms_record(session):
    tenants.create_tenant(session, ROOT, name="Acme", trunk_number="12345")
    tenants.create_tenant(session, ROOT, name="Other", trunk_number="54321")
    for i, user in enumerate(["12345101", "54321101", "12345102", "54321102", "12345103"]):
        fail(session, "192.0.2.7", user_id=user, when=i)
    bans.lift_bans(session, ROOT, "192.0.2.7", now=at(10))
    [event] = ban_audit(session)
    assert event.tenant_id is None


class TestAuthFailures:
    def listed(self, session, principal=ROOT, when=10, **filters):
        reports, total = bans.list_auth_failures(session, principal, page=1, page_size=50,
                                                 now=at(when), **filters)
        assert total == len(reports)
        return reports

    def test_a_window_is_listed_with_its_summary(self, session):
        for i in range(3):
            fail(session, "192.0.2.7", when=i)
        [report] = self.listed(session)
        assert (report.source, report.failures, report.recent_failures) == ("192.0.2.7", 3, 3)
        assert (report.user_ids, report.edges) == (["12345101"], ["edge-1"])
        assert (report.first_attempt_at, report.last_attempt_at) == (at(0), at(2))
        assert (report.trusted, report.banned, report.locked_out) == (None, False, [])

    def test_a_ban_answers_the_recent_failures_but_not_the_total(self, session):
        for i in range(5):
            fail(session, "192.0.2.7", when=i)
        [report] = self.listed(session)
        assert (report.failures, report.recent_failures, report.banned) == (5, 0, True)

    def test_quiet_windows_are_not_listed_even_before_the_purge(self, session):
        fail(session, "192.0.2.7", when=0)
        assert len(self.listed(session, when=600)) == 1
        assert self.listed(session, when=601) == []

    def test_sources_of_stale_nonces_alone_are_not_listed(self, session):
        fail(session, "192.0.2.7", reason="stale_nonce")
        assert self.listed(session) == []

    def test_sources_are_listed_latest_first(self, session):
        fail(session, "192.0.2.1", when=2)
        fail(session, "192.0.2.2", when=1)
        fail(session, "192.0.2.3", when=3)
        assert [r.source for r in self.listed(session)] == ["192.0.2.3", "192.0.2.1", "192.0.2.2"]

    def test_a_page_beyond_the_first_gives_the_rest(self, session):
        for i in range(3):
            fail(session, f"192.0.2.{i + 1}", when=i)
        reports, total = bans.list_auth_failures(session, ROOT, page=2, page_size=2, now=at(10))
        assert ([r.source for r in reports], total) == (["192.0.2.1"], 3)


# --- batches: many failures of one source, several sources, concurrent edges --------------


def ban_entries(session):
    return session.scalars(select(OutboxEntry).where(OutboxEntry.kind == "ban")).all()


def test_a_batch_of_many_failures_of_one_source_bans_once_at_the_nth(session):
    events = [Failure("192.0.2.7", "12345101", "wrong_password", at(i)) for i in range(20)]
    decisions = bans.record_auth_events(session, events)
    assert [d.outcome for d in decisions] == ["recorded"] * 4 + ["banned"] + ["recorded"] * 15
    [ban] = session.scalars(select(Ban)).all()
    assert (ban.created_at, ban.failures, ban.offence) == (at(4), 5, 1)
    assert [e.key for e in ban_entries(session)] == ["192.0.2.7"]
    window = session.get(FailureWindow, "192.0.2.7")
    # The 15 after the ban are in the summary, not in recent: the ban answers them.
    assert window.failures == 20 and window.recent == []


def test_a_batch_spanning_several_sources_decides_each_alone(session):
    bans.add_trusted_network(session, ROOT, cidr="203.0.113.0/24")
    events = [Success("198.51.100.9", "12345102", at(0), at(3600))]
    for i in range(5):  # interleaved in time, as an edge's batch is
        events += [Failure("192.0.2.1", "12345101", "wrong_password", at(1 + i)),
                   Failure("192.0.2.2", "12345101", "wrong_password", at(1 + i)) if i < 4 else
                   Failure("192.0.2.2", "12345101", "stale_nonce", at(1 + i)),
                   Failure("198.51.100.9", "12345101", "wrong_password", at(1 + i)),
                   Failure("203.0.113.5", f"1234510{i}", "wrong_password", at(1 + i)),
                   Failure("2001:db8:1:2::1" if i % 2 else "2001:db8:1:2::2", f"9999{i}",
                           "unknown_user", at(1 + i))]
    decisions = bans.record_auth_events(session, events)
    last = {d.source: d.outcome for d in decisions}
    assert last == {"192.0.2.1": "banned", "192.0.2.2": "ignored", "198.51.100.9": "locked_out",
                    "203.0.113.5": "exempt", "2001:db8:1:2::/64": "banned"}
    found = {(b.source, b.user_id) for b in active(session, 10)}
    assert found == {("192.0.2.1", None), ("198.51.100.9", "12345101"),
                     ("2001:db8:1:2::/64", None)}
    assert len(ban_entries(session)) == 3
    assert session.get(FailureWindow, "192.0.2.2").failures == 4


def test_a_success_inside_a_batch_forgives_the_failures_before_it_only(session):
    events = [Failure("192.0.2.7", "12345101", "wrong_password", at(i)) for i in range(4)]
    events += [Success("192.0.2.7", "12345101", at(4))]
    events += [Failure("192.0.2.7", "12345101", "wrong_password", at(5 + i)) for i in range(5)]
    decisions = bans.record_auth_events(session, events)
    assert [d.outcome for d in decisions] == ["recorded"] * 9 + ["banned"]


def test_a_ban_decided_in_one_batch_holds_for_the_next(session):
    bans.record_auth_events(session, [Failure("192.0.2.7", "12345101", "wrong_password", at(i))
                                      for i in range(3)])
    window = session.get(FailureWindow, "192.0.2.7")  # loaded now, updated by the next batch
    decisions = bans.record_auth_events(
        session, [Failure("192.0.2.7", "12345101", "wrong_password", at(3 + i)) for i in range(3)])
    assert [d.outcome for d in decisions] == ["recorded", "banned", "recorded"]
    assert window.failures == 6  # the session's copy is not stale


def test_a_time_without_a_zone_is_invalid(session):
    with pytest.raises(Invalid) as err:
        bans.record_auth_events(session, [Failure("192.0.2.7", "12345101", "wrong_password",
                                                  dt.datetime(2026, 11, 28, 12))])
    assert "0.at" in err.value.fields


def test_concurrent_batches_of_shared_sources_lose_no_failure_and_ban_once(
    session_factory, session
):
    # Two edges report one scan at once: their batches share every source, in opposite
    # orders (a deadlock if rows were locked in the batches' order).
    import threading

    sources = [f"192.0.2.{i + 1}" for i in range(60)]
    errors = []

    def edge(name, order, start, count, barrier):
        with session_factory() as s:
            events = [Failure(src, f"12345{name}0{r}", "wrong_password", at(start + r), name)
                      for src in order for r in range(count)]
            barrier.wait()
            try:
                bans.record_auth_events(s, events)
            except Exception as exc:  # inspected below
                errors.append(exc)

    def both(start, count):
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=edge, args=("1", sources, start, count, barrier)),
                   threading.Thread(target=edge, args=("2", sources[::-1], start, count, barrier))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        windows = {w.source: w for w in session.scalars(
            select(FailureWindow).execution_options(populate_existing=True))}
        session.rollback()  # SQLite: this session's read must not hold the write lock
        return windows

    windows = both(0, 2)  # 4 failures per source: none lost, no ban yet
    assert {(w.failures, len(w.recent)) for w in windows.values()} == {(4, 4)}
    assert session.scalars(select(Ban)).all() == []
    session.rollback()
    windows = both(10, 1)  # 6: a ban at the fifth, whichever edge reported it
    assert {w.failures for w in windows.values()} == {6}
    assert sorted(session.scalars(select(Ban.source))) == sorted(sources)
    assert len(ban_entries(session)) == len(sources)


def test_a_user_id_with_quotes_and_backslashes_is_counted_like_any(session):
    # The engine's lookups of a batch's offenders name the user IDs in the SQL text on
    # PostgreSQL (a constant array): quoting must hold.
    bans.record_success(session, address="198.51.100.9", user_id="12345102", at=at(0),
                        valid_until=at(10000))
    user_id = "o'brien\\\\'); --"
    for round_ in range(2):
        for i in range(5):
            decision = fail(session, "198.51.100.9", user_id=user_id, when=round_ * 4000 + i)
        assert decision.outcome == "locked_out" and decision.ban.user_id == user_id
        assert decision.ban.offence == round_ + 1  # the offender row was found again


# --- failures during a ban: summarised, neither kept nor decided ---------------------------


def offences(session, key):
    from tenants.models import Offender

    offender = session.get(Offender, key)
    return offender and offender.offences


def test_failures_during_a_ban_are_summarised_but_neither_ban_again_nor_escalate(session):
    for i in range(5):
        fail(session, "192.0.2.7", when=i)
    for i in range(12):  # a scan goes on while the source is banned
        decision = fail(session, "192.0.2.7", user_id=f"5432110{i % 4}", when=10 + i,
                        reason="unknown_user" if i % 2 else "wrong_password", edge=f"edge-{2 + i % 2}")
        assert decision.outcome == "recorded" and decision.ban is None
    [ban] = active(session, 30)
    assert (ban.failures, ban.offence, ban.until) == (5, 1, at(4 + 3600))  # as decided
    assert offences(session, "192.0.2.7") == 1
    assert len(ban_entries(session)) == 1
    window = session.get(FailureWindow, "192.0.2.7")
    assert (window.failures, window.last_at, window.recent) == (17, at(21), [])
    assert window.user_ids == ["12345101"] + [f"5432110{i}" for i in range(4)]
    assert window.edges == ["edge-1", "edge-2", "edge-3"]
    assert window.reasons == {"wrong_password": 11, "unknown_user": 6}
    [report] = bans.list_auth_failures(session, ROOT, page=1, page_size=50, now=at(30))[0]
    assert (report.failures, report.recent_failures, report.banned) == (17, 0, True)
    assert report.last_attempt_at == at(21) and "54321103" in report.user_ids


def test_after_a_ban_ends_counting_starts_afresh_and_the_next_ban_escalates(session):
    # ban_time shorter than find_time: failures during the ban would still be within
    # find_time at its end, were they kept.
    bans.update_policy(session, ROOT, ban_time=100, ban_time_factor=3, max_ban_time=1000)
    for i in range(5):
        fail(session, "192.0.2.7", when=i)
    for i in range(20):
        assert fail(session, "192.0.2.7", when=10 + i * 4).outcome == "recorded"
    assert active(session, 104) == []  # the ban of 100 s ended at 104
    for i in range(4):
        assert fail(session, "192.0.2.7", when=104 + i).outcome == "recorded"
    assert active(session, 108) == []
    decision = fail(session, "192.0.2.7", when=108)
    assert decision.outcome == "banned"
    assert (decision.ban.offence, decision.ban.until, decision.ban.failures) == (2, at(408), 5)
    assert offences(session, "192.0.2.7") == 2


def test_a_repeat_offender_escalates_while_the_session_holds_its_offender_row(session):
    # On SQLite the batch reads (and escalates) the offender on a reader of its own: the
    # session's copy takes the escalation.
    for i in range(5):
        fail(session, "192.0.2.7", when=i)
    bans.lift_bans(session, ROOT, "192.0.2.7", now=at(10))
    held = session.get(Offender, "192.0.2.7")
    assert held.offences == 1
    session.commit()
    for i in range(5):
        decision = fail(session, "192.0.2.7", when=20 + i)
    assert (decision.outcome, decision.ban.offence) == ("banned", 2)
    assert held.offences == 2 and offences(session, "192.0.2.7") == 2
    session.expire_all()
    assert session.get(Offender, "192.0.2.7").offences == 2


def test_a_pair_lockout_keeps_counting_the_failures_during_it_as_before(session):
    bans.update_policy(session, ROOT, ban_time=100, ban_time_factor=3, max_ban_time=1000)
    bans.record_success(session, address="198.51.100.9", user_id="12345102", at=at(0),
                        valid_until=at(10000))
    for i in range(5):
        decision = fail(session, "198.51.100.9", user_id="12345101", when=i)
    assert decision.outcome == "locked_out"
    for i in range(10):  # during the lockout: recorded, and still kept in recent
        assert fail(session, "198.51.100.9", user_id="12345101", when=10 + i).outcome == "recorded"
    window = session.get(FailureWindow, "198.51.100.9")
    assert (window.failures, len(window.recent)) == (15, 10)
    # so the first failure after the lockout ends locks the phone out again, escalated
    decision = fail(session, "198.51.100.9", user_id="12345101", when=105)
    assert decision.outcome == "locked_out"
    assert (decision.ban.user_id, decision.ban.offence, decision.ban.until) == (
        "12345101", 2, at(405))
    assert active(session, 106, kind="address") == []


def test_a_batch_deciding_a_ban_mid_way_answers_the_rest_with_it(session):
    bans.update_policy(session, ROOT, ban_time=100, ban_time_factor=3, max_ban_time=1000)
    events = [Failure("192.0.2.7", "12345101", "wrong_password", at(i), "edge-1")
              for i in range(5)]  # banned at the fifth, until 104
    events += [Failure("192.0.2.7", f"5432110{i}", "unknown_user", at(50 + i), "edge-2")
               for i in range(10)]  # during the ban
    events += [Failure("192.0.2.7", "12345101", "wrong_password", at(104 + i), "edge-1")
               for i in range(5)]  # after it: a fresh window, banned again at its fifth
    decisions = bans.record_auth_events(session, events)
    assert [d.outcome for d in decisions] == (
        ["recorded"] * 4 + ["banned"] + ["recorded"] * 14 + ["banned"])
    first, second = decisions[4].ban, decisions[-1].ban
    assert (first.failures, first.offence, first.until) == (5, 1, at(104))
    assert (second.failures, second.offence, second.until) == (5, 2, at(408))
    assert second.user_ids == list(first.user_ids) + [f"5432110{i}" for i in range(10)]
    window = session.get(FailureWindow, "192.0.2.7")
    assert (window.failures, window.recent) == (20, [])
    assert window.edges == ["edge-1", "edge-2"]


def test_a_window_that_kept_failures_during_a_ban_is_emptied_by_the_next(session):
    # Rows written before failures during a ban stopped counting (64 kept): the next
    # failure during the ban empties them, so the window starts afresh at the ban's end.
    bans.update_policy(session, ROOT, ban_time=100)
    for i in range(5):
        fail(session, "192.0.2.7", when=i)
    window = session.get(FailureWindow, "192.0.2.7")
    window.recent = [[at(10 + i).timestamp(), "12345101"] for i in range(bans.RECENT_CAP)]
    window.edges = ["edge 1", "edge, \"2\""]  # written by the ORM, with its own spacing
    session.commit()
    assert fail(session, "192.0.2.7", when=90, edge="edge-3").outcome == "recorded"
    session.refresh(window)
    assert window.recent == []
    assert window.edges == ["edge 1", "edge, \"2\"", "edge-3"]
    assert (window.user_ids, window.reasons) == (["12345101"], {"wrong_password": 6})
    for i in range(4):
        assert fail(session, "192.0.2.7", when=104 + i).outcome == "recorded"


@pytest.mark.parametrize("at", [
    dt.datetime(2026, 1, 4, 0, 0, 1, tzinfo=dt.timezone.utc),
    dt.datetime(2026, 1, 4, 0, 0, 1, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    dt.datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
])
def test_the_sqlite_fast_path_stores_and_reads_times_as_the_column_type_does(at):
    from sqlalchemy.dialects import sqlite

    from tenants.models import FailureWindow

    dialect = sqlite.dialect()
    column_type = FailureWindow.__table__.c.last_at.type
    stored = column_type.dialect_impl(dialect).bind_processor(dialect)(at)  # zone, then text
    assert bans._sqlite_stamp(at) == stored
    assert bans._sqlite_time(stored) == at
    assert bans._sqlite_time(stored).tzinfo == dt.timezone.utc


@pytest.mark.parametrize("reasons", [
    {}, {"wrong_password": 1}, {"wrong_password": 3, "unknown_user": 12}, {"other": 2},
    {"wrong_password": 1.5},
])
def test_a_windows_reasons_are_written_as_json_would_write_them(reasons):
    import json

    assert json.loads(bans._encode_reasons(reasons)) == reasons
    assert bans._encode_reasons(reasons) == json.dumps(reasons, separators=(",", ":"))


def _commit_first(monkeypatch, other):
    """Run `other()` (another session's committed batch) after this session's batch was read
    and decided, before it locks its windows (PostgreSQL) or the database (SQLite): the race
    _settle resolves. On SQLite the batch is made to find another writer busy, as it would
    with other processes writing (see the test with a real one below)."""
    settle, pending = bans._settle, [other]

    def late(*args):
        while pending:  # once (other's own batch settles as usual)
            pending.pop()()
        return settle(*args)

    monkeypatch.setattr(bans, "_settle", late)
    monkeypatch.setattr(bans, "writer_busy", lambda engine: True)


def test_a_batch_that_finds_a_writer_busy_decides_meanwhile_and_again_after_it(
    session_factory, session, monkeypatch
):
    # No stand-ins: another writer really holds the write lock (SQLite) or the window's row
    # (PostgreSQL) while this batch reads and decides; it commits the deciding fifth failure
    # only once this batch is about to settle.
    import threading

    for r in range(4):
        fail(session, "198.51.100.7", when=r)
    holding, settling, errors = threading.Event(), threading.Event(), []
    settle = bans._settle

    def spy(*args):
        if threading.current_thread() is threading.main_thread():  # this batch's, not the other's
            settling.set()
        return settle(*args)

    monkeypatch.setattr(bans, "_settle", spy)

    def other_edge():
        try:
            with session_factory() as s:
                decision = bans.apply_auth_events(s, [Failure(
                    "198.51.100.7", "12345101", "wrong_password", at(5), "edge-2")])
                holding.set()
                assert settling.wait(30)
                s.commit()
            assert decision[0].outcome == "banned"
        except Exception as exc:  # inspected below
            errors.append(exc)
            holding.set()

    thread = threading.Thread(target=other_edge)
    thread.start()
    assert holding.wait(30)
    with session_factory() as s:
        decision = bans.record_failure(s, address="198.51.100.7", user_id="12345101",
                                       reason="wrong_password", at=at(6), edge="edge-1")
    thread.join(30)
    assert errors == []
    assert decision.outcome == "recorded"  # decided "banned" on what it read, then again
    window = session.scalars(select(FailureWindow).execution_options(
        populate_existing=True)).one()
    assert window.failures == 6 and sorted(window.edges) == ["edge-1", "edge-2"]
    assert [(b.source, b.offence) for b in session.scalars(select(Ban))] == [
        ("198.51.100.7", 1)]


def test_a_batch_decided_on_a_row_another_batch_changed_decides_again(
    session_factory, session, monkeypatch
):
    for r in range(4):
        bans.record_failure(session, address="198.51.100.7", user_id="12345101",
                            reason="wrong_password", at=at(r))

    def other_edge():
        with session_factory() as s:
            outcome = bans.record_failure(s, address="198.51.100.7", user_id="12345101",
                                          reason="wrong_password", at=at(5), edge="edge-2")
            assert outcome.outcome == "banned"

    _commit_first(monkeypatch, other_edge)
    with session_factory() as s:
        # Read with 4 failures this would ban; by its lock the other edge's fifth has.
        decision = bans.record_failure(s, address="198.51.100.7", user_id="12345101",
                                       reason="wrong_password", at=at(6), edge="edge-1")
    assert decision.outcome == "recorded"
    window = session.scalars(select(FailureWindow).execution_options(
        populate_existing=True)).one()
    assert window.failures == 6 and sorted(window.edges) == ["edge-1", "edge-2"]
    assert [(b.source, b.offence) for b in session.scalars(select(Ban))] == [
        ("198.51.100.7", 1)]
    assert len(ban_entries(session)) == 1
    offender = session.scalars(select(Offender).execution_options(
        populate_existing=True)).one()
    assert offender.offences == 1


def test_a_window_another_batch_created_meanwhile_keeps_both_failures(
    session_factory, session, monkeypatch
):
    def other_edge():
        with session_factory() as s:
            bans.record_failure(s, address="2001:db8:5::1", user_id="12345101",
                                reason="unknown_user", at=at(1), edge="edge-2")

    _commit_first(monkeypatch, other_edge)
    with session_factory() as s:
        bans.record_failure(s, address="2001:db8:5::2", user_id="12345102",
                            reason="wrong_password", at=at(2), edge="edge-1")
    window = session.scalars(select(FailureWindow).execution_options(
        populate_existing=True)).one()
    assert window.failures == 2 and len(window.recent) == 2
    assert window.reasons == {"unknown_user": 1, "wrong_password": 1}
    assert window.first_at == at(1) and window.last_at == at(2)


def test_a_batch_that_bans_and_finds_its_row_unchanged_keeps_its_decision(
    session_factory, session, monkeypatch
):
    for r in range(4):
        bans.record_failure(session, address="198.51.100.8", user_id="12345101",
                            reason="wrong_password", at=at(r))

    def other_edge():  # another source: no conflict
        with session_factory() as s:
            bans.record_failure(s, address="198.51.100.9", user_id="12345101",
                                reason="wrong_password", at=at(4))

    _commit_first(monkeypatch, other_edge)
    with session_factory() as s:
        decision = bans.record_failure(s, address="198.51.100.8", user_id="12345101",
                                       reason="wrong_password", at=at(5))
    assert decision.outcome == "banned"
    assert [b.source for b in session.scalars(select(Ban))] == ["198.51.100.8"]


def test_a_window_purged_after_it_was_read_is_made_again_and_decided_again(
    session_factory, session, monkeypatch
):
    for r in range(3):
        bans.record_failure(session, address="198.51.100.10", user_id="12345101",
                            reason="wrong_password", at=at(r))

    def housekeeping():  # a purge far enough ahead forgets the window
        with session_factory() as s:
            bans.purge(s, at(100000))

    _commit_first(monkeypatch, housekeeping)
    with session_factory() as s:
        decision = bans.record_failure(s, address="198.51.100.10", user_id="12345101",
                                       reason="wrong_password", at=at(3))
    assert decision.outcome == "recorded"
    window = session.scalars(select(FailureWindow).execution_options(
        populate_existing=True)).one()
    assert window.failures == 1 and len(window.recent) == 1
