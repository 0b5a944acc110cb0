"""The edges' side of the link: snapshot, change feed, events. Edge tokens only."""

import datetime as dt
import json
import logging
import time

import marshmallow as ma
from flask import Response, after_this_request, current_app, g, stream_with_context
from flask.views import MethodView

from tenants import feed
from tenants.models import RingMode, utcnow
from tenants.services import bans, maintenance
from tenants.services import edges as services

from ..database import session, snapshot_session
from .common import MAX_BIGINT, TRUNK_NUMBER, Blueprint, Schema

log = logging.getLogger(__name__)

URL = "/edge"
blp = Blueprint("edge_feed", __name__,
                description="For SIP edges (edge tokens only): snapshot, changes, events")

MAX_WAIT = 55
SNAPSHOT_CHUNK = 64 * 1024
# Versions are BIGINT columns: a larger number would not even fit the query.
VERSION = ma.validate.Range(0, MAX_BIGINT)
# When an edge may say an event happened. Ahead: clocks drift a little, but a future time
# would keep a binding or a failure window alive for as long as it says. Behind: a batch
# older than the control plane remembers batch ids could be counted twice.
CLOCK_SKEW = dt.timedelta(minutes=5)
OLDEST_EVENT = services.BATCH_MEMORY


def _near_now(value):
    now = utcnow()
    try:
        ahead, behind = value > now + CLOCK_SKEW, value < now - OLDEST_EVENT
    except OverflowError:  # an offset that pushes the time outside what datetimes hold
        ahead = behind = True
    if ahead or behind:
        raise ma.ValidationError(
            f"must be within {int(OLDEST_EVENT.total_seconds())} seconds before and "
            f"{int(CLOCK_SKEW.total_seconds())} seconds after the control plane's clock")


class SnapshotQuerySchema(Schema):
    trunk_number = ma.fields.String(validate=TRUNK_NUMBER, metadata={
        "description": "only this tenant (after a reload entry)"})


class ChangesQuerySchema(Schema):
    after = ma.fields.Integer(required=True, validate=VERSION)
    wait = ma.fields.Float(load_default=25, validate=ma.validate.Range(0, MAX_WAIT), metadata={
        "description": "seconds to wait for a change before answering empty"})
    limit = ma.fields.Integer(load_default=feed.MAX_CHANGES,
                              validate=ma.validate.Range(1, feed.MAX_CHANGES))


class ChangeSchema(Schema):
    version = ma.fields.Integer()
    kind = ma.fields.String()
    key = ma.fields.String()
    op = ma.fields.String(metadata={"description": "upsert or delete"})
    payload = ma.fields.Dict(allow_none=True)


class ChangesSchema(Schema):
    version = ma.fields.Integer(metadata={"description": "the newest version there is"})
    changes = ma.fields.Nested(ChangeSchema, many=True)
    more = ma.fields.Boolean(metadata={"description": "ask again at once: more are waiting"})


class EventSchema(Schema):
    type = ma.fields.String(required=True, validate=ma.validate.OneOf(services.EVENT_TYPES))
    at = ma.fields.AwareDateTime(load_default=None, allow_none=True, validate=_near_now,
                                 metadata={"description": "when it happened; default now"})
    address = ma.fields.String(validate=ma.validate.Length(1, 64))
    user_id = ma.fields.String(validate=ma.validate.Length(1, 64))
    reason = ma.fields.String(validate=ma.validate.OneOf(
        sorted(bans.COUNTED_REASONS | bans.IGNORED_REASONS)))
    contact = ma.fields.String(validate=ma.validate.Length(1, 512))
    source_address = ma.fields.String(validate=ma.validate.Length(1, 64))
    source_port = ma.fields.Integer(validate=ma.validate.Range(1, 65535))
    transport = ma.fields.String(validate=ma.validate.OneOf(["udp", "tcp", "tls", "ws", "wss"]))
    user_agent = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=200))
    expires = ma.fields.Integer(validate=ma.validate.Range(1, 86400 * 7))
    mode = ma.fields.String(validate=ma.validate.OneOf([m.value for m in RingMode]))
    applied_version = ma.fields.Integer(validate=VERSION)
    addresses = ma.fields.List(ma.fields.String(validate=ma.validate.Length(1, 64)),
                               validate=ma.validate.Length(max=32))

    NEEDS = {
        "auth_failure": ("address", "user_id", "reason"),
        "auth_success": ("address", "user_id"),
        "registration": ("user_id", "contact", "source_address", "source_port", "transport",
                         "expires"),
        "unregistration": ("user_id",),
        "ring_mode": ("user_id", "mode"),
        "heartbeat": ("applied_version",),
    }

    @ma.validates_schema
    def _fields_of_the_type(self, data, **_kwargs):
        missing = {f: [f"required for a {data['type']} event"]
                   for f in self.NEEDS.get(data.get("type"), ()) if data.get(f) is None}
        if missing:
            raise ma.ValidationError(missing)

    @ma.post_load
    def _default_time(self, data, **_kwargs):
        data["at"] = data.get("at") or utcnow()
        return data


class BatchSchema(Schema):
    batch_id = ma.fields.String(required=True, validate=ma.validate.Length(1, 64), metadata={
        "description": "unique per batch; a batch sent again is applied once"})
    events = ma.fields.List(ma.fields.Nested(EventSchema), required=True,
                            validate=ma.validate.Length(max=5000))


class BatchResultSchema(Schema):
    duplicate = ma.fields.Boolean()
    applied = ma.fields.Integer()
    ignored = ma.fields.Raw()


@blp.route("/snapshot")
class Snapshot(MethodView):
    @blp.arguments(SnapshotQuerySchema, location="query")
    @blp.response(200, description="NDJSON: a begin record, one record per object, an end record")
    def get(self, query):
        """Everything an edge needs, streamed, with the outbox version it reflects"""
        s = snapshot_session()
        records = feed.snapshot(s, trunk_number=query.get("trunk_number"), now=utcnow())

        def chunks():
            # ~64 KiB per write: one send per record would cost a system call each.
            buffer, size = [], 0
            try:
                for record in records:
                    line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
                    buffer.append(line)
                    size += len(line)
                    if size >= SNAPSHOT_CHUNK:
                        yield "".join(buffer)
                        buffer, size = [], 0
                if buffer:
                    yield "".join(buffer)
            finally:
                s.close()

        return Response(stream_with_context(chunks()), mimetype="application/x-ndjson")


@blp.route("/changes")
class Changes(MethodView):
    @blp.arguments(ChangesQuerySchema, location="query")
    @blp.response(200, ChangesSchema)
    @blp.alt_response(410, description="too far behind: take a new snapshot")
    def get(self, query):
        """The outbox entries after a version, as soon as there are any (long-poll)"""
        after, limit = query["after"], query["limit"]
        deadline = time.monotonic() + query["wait"]
        # Long-polls in flight in this worker are capped, so ordinary requests keep threads.
        slots = current_app.extensions["trunkline"]["longpoll_slots"]
        waiting = slots.acquire(blocking=False)
        try:
            while True:
                entries, latest = feed.changes_after(session(), after, limit=limit)
                session().rollback()  # end the read: the wait must hold no transaction
                remaining = deadline - time.monotonic()
                notifier = current_app.extensions["trunkline"]["notifier"]
                # A stopping worker answers at once: the edge asks again elsewhere.
                if entries or remaining <= 0 or not waiting or notifier.stopping:
                    break
                notifier.wait_beyond(after, remaining)
        finally:
            if waiting:
                slots.release()
        body = {
            "version": latest,
            "changes": [feed.entry_record(e) for e in entries],
            "more": bool(entries) and entries[-1].version < latest,
        }
        # Every slot was taken: answered at once, so tell the edge to pause before asking again.
        return (body, 200, {}) if waiting else (body, 200, {"Retry-After": "1"})


@blp.route("/events")
class Events(MethodView):
    @blp.arguments(BatchSchema)
    @blp.response(200, BatchResultSchema)
    def post(self, body):
        """A batch of events: auth failures and successes, registrations, ring modes,
        heartbeats"""
        result = services.ingest_events(session(), g.edge, **body)
        sessions = current_app.extensions["trunkline"]["sessions"]

        @after_this_request
        def housekeeping_after(response):
            # Once the edge has its answer (a failure batch deciding a ban is waited for):
            # the once-a-minute purge must not delay it.
            response.call_on_close(lambda: _maintain(sessions))
            return response

        return result


def _maintain(sessions):
    try:
        with sessions() as s:
            maintenance.maybe_run(s, utcnow())
    except Exception:  # housekeeping runs again next minute; the answer was sent already
        log.exception("housekeeping after an event batch failed")
