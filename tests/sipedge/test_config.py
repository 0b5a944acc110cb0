import datetime as dt

from sipedge.config import EdgeConfig

UNTIL = "2026-11-28T13:00:00+00:00"


def ext(number="101", remote=False, trunk="12345", ha1="a" * 32):
    identities = [{"user_id": f"{trunk}{number}", "endpoint": "home", "ha1_md5": ha1,
                   "ha1_sha256": "b" * 64}]
    if remote:
        identities.append({"user_id": f"{trunk}{number}r", "endpoint": "remote",
                           "ha1_md5": ha1, "ha1_sha256": "c" * 64})
    return {"trunk_number": trunk, "number": number, "realm": "r", "identities": identities,
            "ring_mode": "home"}


def change(version, kind, key, payload=None, op="upsert"):
    return {"version": version, "kind": kind, "key": key, "op": op, "payload": payload}


def snapshot(config, version, records, trunk=None):
    config.begin_snapshot(version, trunk)
    for record in records:
        config.add_snapshot_record(record)
    return config.end_snapshot()


def test_extension_changes_add_and_remove_identities():
    config = EdgeConfig()
    config.apply_change(change(1, "extension", "12345101", ext(remote=True)))
    assert config.identity("12345101r").endpoint == "remote"
    changed = config.apply_change(change(2, "extension", "12345101", ext(remote=False)))
    assert config.identity("12345101r") is None and changed.removed_user_ids == {"12345101r"}
    changed = config.apply_change(change(3, "extension", "12345101", op="delete"))
    assert config.identities == {} and changed.removed_user_ids == {"12345101"}
    assert config.version == 3


def test_applying_a_change_twice_is_harmless():
    config = EdgeConfig()
    entry = change(1, "extension", "12345101", ext(remote=True))
    config.apply_change(entry)
    config.apply_change(entry)
    assert set(config.identities) == {"12345101", "12345101r"}


def test_deleting_a_tenant_drops_its_identities():
    config = EdgeConfig()
    config.apply_change(change(1, "tenant", "12345", {"trunk_number": "12345"}))
    config.apply_change(change(2, "extension", "12345101", ext()))
    config.apply_change(change(3, "extension", "54321101", ext(trunk="54321")))
    changed = config.apply_change(change(4, "tenant", "12345", op="delete"))
    assert set(config.identities) == {"54321101"} and changed.removed_user_ids == {"12345101"}


def test_bans_come_and_go():
    config = EdgeConfig()
    config.apply_change(change(1, "ban", "192.0.2.7",
                               {"source": "192.0.2.7", "user_id": None, "until": UNTIL}))
    now = dt.datetime(2026, 11, 28, 12, tzinfo=dt.timezone.utc)
    assert [b.source for b in config.active_bans(now)] == ["192.0.2.7"]
    assert config.active_bans(now + dt.timedelta(hours=2)) == []
    config.apply_change(change(2, "ban", "192.0.2.7", op="delete"))
    assert config.bans == {}


def test_a_full_snapshot_replaces_everything():
    config = EdgeConfig()
    config.apply_change(change(1, "extension", "12345101", ext()))
    changed = snapshot(config, 10, [{"kind": "extension", "key": "12345102",
                                     "payload": ext("102")}])
    assert set(config.identities) == {"12345102"} and config.version == 10
    assert changed.removed_user_ids == {"12345101"}


def test_a_tenant_snapshot_replaces_only_that_tenant():
    config = EdgeConfig()
    config.apply_change(change(1, "extension", "12345101", ext()))
    config.apply_change(change(2, "extension", "54321101", ext(trunk="54321")))
    changed = snapshot(config, 5, [{"kind": "tenant", "key": "12345", "payload": {}},
                                   {"kind": "extension", "key": "12345102",
                                    "payload": ext("102")}], trunk="12345")
    assert set(config.identities) == {"12345102", "54321101"}
    assert changed.removed_user_ids == {"12345101"}


def test_round_trip_through_json():
    config = EdgeConfig()
    config.apply_change(change(1, "extension", "12345101", ext(remote=True)))
    config.apply_change(change(2, "ban", "192.0.2.7",
                               {"source": "192.0.2.7", "user_id": None, "until": UNTIL}))
    config.apply_change(change(3, "ban_policy", "platform", {"max_retry": 5}))
    restored = EdgeConfig.from_json(config.to_json())
    assert restored.identities == config.identities and restored.bans == config.bans
    assert restored.policy == {"max_retry": 5} and restored.version == 3
