"""What an edge knows: the control plane's snapshot, kept current by the change feed.

Pure state, no I/O: records go in (from a snapshot or the change feed), lookups come out,
and :meth:`EdgeConfig.to_json` / :meth:`EdgeConfig.from_json` let the shell keep it on
disk so that a restart without the control plane still serves.
"""

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Identity:
    """A SIP user ID the edge accepts: the home or remote endpoint of an extension."""

    user_id: str
    endpoint: str
    trunk_number: str
    extension: str
    realm: str
    ha1: dict  # {"MD5": hex, "SHA-256": hex}


@dataclass(frozen=True)
class BanEntry:
    source: str
    user_id: str | None
    until: dt.datetime


@dataclass
class Changed:
    """What applying records changed that the running edge must act on."""

    removed_user_ids: set = field(default_factory=set)
    reload_trunks: set = field(default_factory=set)
    bans_changed: bool = False


class EdgeConfig:
    def __init__(self):
        self.version = 0
        self.tenants = {}  # trunk number -> payload
        self.extensions = {}  # sip user ID of the home endpoint -> payload
        self.identities = {}  # sip user ID -> Identity
        self.bans = {}  # ban key -> BanEntry
        self.trusted = {}  # id -> payload
        self.policy = None
        self._pending = None  # a snapshot being received

    # --- lookups ---

    def identity(self, user_id):
        return self.identities.get(user_id)

    def active_bans(self, now):
        return [b for b in self.bans.values() if b.until > now]

    def purge_bans(self, now):
        """Forget bans that have ended (the control plane sends no delete for those)."""
        moment = dt.datetime.fromtimestamp(now, dt.timezone.utc)
        for key in [k for k, b in self.bans.items() if b.until <= moment]:
            del self.bans[key]

    # --- applying records ---

    def apply_change(self, entry):
        """Apply one change feed entry ({version, kind, key, op, payload})."""
        changed = Changed()
        self._apply(entry, changed)
        self.version = max(self.version, entry["version"])
        return changed

    def _apply(self, record, changed):
        kind, key, op, payload = record["kind"], record["key"], record["op"], record.get("payload")
        if kind == "extension":
            before = self._identities_of(key)
            if op == "delete":
                self.extensions.pop(key, None)
            else:
                self.extensions[key] = payload
            for user_id in before:
                self.identities.pop(user_id, None)
            if op != "delete":
                for ident in payload["identities"]:
                    self.identities[ident["user_id"]] = Identity(
                        user_id=ident["user_id"], endpoint=ident["endpoint"],
                        trunk_number=payload["trunk_number"], extension=payload["number"],
                        realm=payload["realm"],
                        ha1={"MD5": ident["ha1_md5"], "SHA-256": ident["ha1_sha256"]})
            changed.removed_user_ids |= set(before) - set(self._identities_of(key))
        elif kind == "tenant":
            if op == "delete":
                self.tenants.pop(key, None)
                for ext_key in [k for k, p in self.extensions.items() if p["trunk_number"] == key]:
                    self._apply({"kind": "extension", "key": ext_key, "op": "delete"}, changed)
            else:
                self.tenants[key] = payload
        elif kind == "reload":
            changed.reload_trunks.add(key)
        elif kind == "ban":
            if op == "delete":
                self.bans.pop(key, None)
            else:
                self.bans[key] = BanEntry(payload["source"], payload["user_id"],
                                          dt.datetime.fromisoformat(payload["until"]))
            changed.bans_changed = True
        elif kind == "ban_policy":
            self.policy = payload
        elif kind == "trusted_network":
            if op == "delete":
                self.trusted.pop(key, None)
            else:
                self.trusted[key] = payload
        # ring groups and queues are for call routing: nothing for the registrar to do

    def _identities_of(self, extension_key):
        payload = self.extensions.get(extension_key)
        return [i["user_id"] for i in payload["identities"]] if payload else []

    # --- snapshots ---

    def begin_snapshot(self, version, trunk_number=None):
        self._pending = {"version": version, "trunk_number": trunk_number, "records": EdgeConfig()}

    def add_snapshot_record(self, record):
        self._pending["records"]._apply({**record, "op": "upsert"}, Changed())

    def end_snapshot(self):
        """Replace what the snapshot covers (everything, or one tenant) with what it held."""
        pending, self._pending = self._pending, None
        fresh, trunk = pending["records"], pending["trunk_number"]
        changed = Changed()
        if trunk is None:
            changed.removed_user_ids = set(self.identities) - set(fresh.identities)
            changed.bans_changed = True
            self.tenants, self.extensions, self.identities = (
                fresh.tenants, fresh.extensions, fresh.identities)
            self.bans, self.trusted, self.policy = fresh.bans, fresh.trusted, fresh.policy
            self.version = pending["version"]
        else:
            old = {k for k, p in self.extensions.items() if p["trunk_number"] == trunk}
            for key in old - set(fresh.extensions):
                self._apply({"kind": "extension", "key": key, "op": "delete"}, changed)
            for key, payload in fresh.extensions.items():
                self._apply({"kind": "extension", "key": key, "op": "upsert",
                             "payload": payload}, changed)
            if trunk in fresh.tenants:
                self.tenants[trunk] = fresh.tenants[trunk]
            else:
                self.tenants.pop(trunk, None)
        return changed

    # --- on disk ---

    def to_json(self):
        return {
            "version": self.version,
            "tenants": self.tenants,
            "extensions": self.extensions,
            "bans": {k: {"source": b.source, "user_id": b.user_id, "until": b.until.isoformat()}
                     for k, b in self.bans.items()},
            "trusted": self.trusted,
            "policy": self.policy,
        }

    @classmethod
    def from_json(cls, data):
        config = cls()
        config.begin_snapshot(data["version"])
        if data.get("policy") is not None:
            config.add_snapshot_record({"kind": "ban_policy", "key": "platform",
                                        "payload": data["policy"]})
        for kind, records in (("tenant", data["tenants"]), ("extension", data["extensions"]),
                              ("trusted_network", data["trusted"]), ("ban", data["bans"])):
            for key, payload in records.items():
                config.add_snapshot_record({"kind": kind, "key": key, "payload": payload})
        config.end_snapshot()
        return config
