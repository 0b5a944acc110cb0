import marshmallow as ma
from flask import g
from flask.views import MethodView

from tenants.services import bans as services

from ..auth import principal
from ..database import session
from .common import TRUNK_NUMBER, Blueprint, Schema

URL = ""
blp = Blueprint("bans", __name__,
                description="Fail2ban-style bans after failed SIP authentication, and their policy")

# As wide as the columns these strings are stored in or compared with: a longer one names
# nothing, and would not fit (a 500 on PostgreSQL).
ADDRESS = ma.validate.Length(1, 64)
USER_ID = ma.validate.Length(1, 64)


class BanSchema(Schema):
    address = ma.fields.String(attribute="source", required=True, validate=ADDRESS, metadata={
        "description": "an IPv4 address, or the IPv6 network of the policy's prefix"})
    user_id = ma.fields.String(allow_none=True, validate=USER_ID, metadata={
        "description": "set for a lockout of one SIP user ID from the address only"})
    kind = ma.fields.Method("_kind", dump_only=True)
    reason = ma.fields.String(validate=ma.validate.Length(1, 200))
    duration = ma.fields.Integer(load_only=True, validate=ma.validate.Range(1, 10 * 365 * 86400),
                                 metadata={"description": "seconds; default the policy's ban_time"})
    manual = ma.fields.Boolean(dump_only=True)
    offence = ma.fields.Integer(dump_only=True, metadata={"description": "nth ban of this source"})
    since = ma.fields.DateTime(attribute="created_at", dump_only=True)
    until = ma.fields.DateTime(dump_only=True)
    lifted_at = ma.fields.DateTime(dump_only=True)
    lifted_by = ma.fields.String(dump_only=True)
    failures = ma.fields.Integer(dump_only=True)
    user_ids = ma.fields.Method("_user_ids", dump_only=True, metadata={
        "type": "array", "items": {"type": "string"},
        "description": "SIP user IDs tried (of the caller's tenants)"})
    edges = ma.fields.List(ma.fields.String(), dump_only=True)
    first_attempt_at = ma.fields.DateTime(dump_only=True)
    last_attempt_at = ma.fields.DateTime(dump_only=True)

    def _kind(self, ban):
        return "address" if ban.user_id is None else "pair"

    def _user_ids(self, ban):
        if "ban_user_filter" not in g:  # once per request, however many bans
            g.ban_user_filter = services.user_id_filter(session(), principal())
        return [user_id for user_id in ban.user_ids or [] if g.ban_user_filter(user_id)]


class BanQuerySchema(Schema):
    active = ma.fields.Boolean(load_default=True, allow_none=True, metadata={
        "description": "true (default): in force now; false: ended or lifted"})
    address = ma.fields.String(validate=ADDRESS)
    user_id = ma.fields.String(validate=USER_ID)
    kind = ma.fields.String(validate=ma.validate.OneOf(["address", "pair"]))
    trunk_number = ma.fields.String(validate=TRUNK_NUMBER)


class LiftQuerySchema(Schema):
    user_id = ma.fields.String(validate=USER_ID,
                               metadata={"description": "lift only this user ID's lockout"})


class AuthFailureQuerySchema(Schema):
    address = ma.fields.String(validate=ADDRESS, metadata={
        "description": "an address, or the IPv6 network of the policy's prefix"})


class AuthFailureSchema(Schema):
    address = ma.fields.String(attribute="source", metadata={
        "description": "the source counted: an IPv4 address or the IPv6 network of the prefix"})
    failures = ma.fields.Integer(metadata={"description": "since first_attempt_at"})
    recent_failures = ma.fields.Integer(metadata={
        "description": "within find_time and not yet answered by a ban or a correct answer: "
                       "what counts towards max_retry"})
    reasons = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer(), metadata={
        "description": "failures per reason (wrong_password, unknown_user)"})
    user_ids = ma.fields.List(ma.fields.String(), metadata={
        "description": "SIP user IDs tried (those of the caller's tenants)"})
    other_user_ids = ma.fields.Boolean(metadata={
        "description": "the failures also named SIP user IDs outside the caller's tenants "
                       "(another tenant's, or of no tenant): a tenant's trusted network "
                       "then no longer spares the source a whole ban"})
    edges = ma.fields.List(ma.fields.String())
    first_attempt_at = ma.fields.DateTime()
    last_attempt_at = ma.fields.DateTime()
    trusted = ma.fields.String(allow_none=True, metadata={
        "description": "platform: a platform trusted network or an edge, never banned; "
                       "tenant: a trusted network of a tenant whose user IDs were tried"})
    banned = ma.fields.Boolean(metadata={"description": "the whole source is banned now"})
    locked_out = ma.fields.List(ma.fields.String(), metadata={
        "description": "SIP user IDs locked out from this source now"})


class BanPolicySchema(Schema):
    # The engine keeps RECENT_CAP failures per source: a larger max_retry would never ban.
    max_retry = ma.fields.Integer(required=True, validate=ma.validate.Range(1, services.RECENT_CAP))
    find_time = ma.fields.Integer(required=True, validate=ma.validate.Range(1, 86400))
    ban_time = ma.fields.Integer(required=True, validate=ma.validate.Range(1, 365 * 86400))
    ban_time_factor = ma.fields.Float(required=True, validate=ma.validate.Range(1, 100))
    max_ban_time = ma.fields.Integer(required=True, validate=ma.validate.Range(1, 10 * 365 * 86400))
    scan_user_ids = ma.fields.Integer(validate=ma.validate.Range(2, services.RECENT_CAP), metadata={
        "description": "failures over this many user IDs from one address are a scan"})
    ipv6_prefix = ma.fields.Integer(validate=ma.validate.Range(48, 128))


class TrustedNetworkSchema(Schema):
    id = ma.fields.Integer(dump_only=True)
    cidr = ma.fields.String(required=True, validate=ma.validate.Length(1, 64))
    description = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=200))
    created_at = ma.fields.DateTime(dump_only=True)


@blp.route("/bans")
class Bans(MethodView):
    @blp.arguments(BanQuerySchema, location="query", unknown=ma.EXCLUDE)
    @blp.response(200, BanSchema(many=True))
    @blp.paginated()
    def get(self, query):
        """List bans and lockouts within the caller's scope"""
        return services.list_bans(session(), principal(), **query)

    @blp.arguments(BanSchema)
    @blp.response(201, BanSchema)
    def post(self, body):
        """Ban an address by hand (platform)"""
        body["address"] = body.pop("source")
        return services.ban_by_hand(session(), principal(), **body)


@blp.route("/bans/<path:address>")
class BanByAddress(MethodView):
    @blp.arguments(LiftQuerySchema, location="query")
    @blp.response(204)
    def delete(self, query, address):
        """Lift the bans of an address (and reset the failures counted against it)"""
        services.lift_bans(session(), principal(), address, **query)


@blp.route("/auth-failures")
class AuthFailures(MethodView):
    @blp.arguments(AuthFailureQuerySchema, location="query", unknown=ma.EXCLUDE)
    @blp.response(200, AuthFailureSchema(many=True))
    @blp.paginate()
    def get(self, query, pagination_parameters):
        """List recent failed SIP authentications per source, within the caller's scope"""
        reports, total = services.list_auth_failures(
            session(), principal(), page=pagination_parameters.page,
            page_size=pagination_parameters.page_size, **query)
        pagination_parameters.item_count = total
        return reports


@blp.route("/ban-policy")
class Policy(MethodView):
    @blp.response(200, BanPolicySchema)
    def get(self):
        """The platform's ban policy (times in seconds)"""
        return services.read_policy(session(), principal())

    @blp.arguments(BanPolicySchema)
    @blp.response(200, BanPolicySchema)
    def put(self, body):
        """Change the platform's ban policy"""
        return services.update_policy(session(), principal(), **body)


@blp.route("/trusted-networks")
class PlatformTrustedNetworks(MethodView):
    @blp.response(200, TrustedNetworkSchema(many=True))
    @blp.paginated()
    def get(self):
        """List the platform's trusted networks (never banned)"""
        return services.list_trusted_networks(session(), principal())

    @blp.arguments(TrustedNetworkSchema)
    @blp.response(201, TrustedNetworkSchema)
    def post(self, body):
        """Trust a network platform-wide"""
        return services.add_trusted_network(session(), principal(), **body)


@blp.route("/trusted-networks/<int:network_id>")
class PlatformTrustedNetwork(MethodView):
    @blp.response(204)
    def delete(self, network_id):
        """Stop trusting a platform network"""
        services.remove_trusted_network(session(), principal(), None, network_id)


@blp.route("/tenants/<trunk>/trusted-networks")
class TenantTrustedNetworks(MethodView):
    @blp.response(200, TrustedNetworkSchema(many=True))
    @blp.paginated()
    def get(self, trunk):
        """List a tenant's trusted networks (never banned as a whole)"""
        return services.list_trusted_networks(session(), principal(), trunk)

    @blp.arguments(TrustedNetworkSchema)
    @blp.response(201, TrustedNetworkSchema)
    def post(self, body, trunk):
        """Trust one of the tenant's networks (an office)"""
        return services.add_trusted_network(session(), principal(), trunk, **body)


@blp.route("/tenants/<trunk>/trusted-networks/<int:network_id>")
class TenantTrustedNetwork(MethodView):
    @blp.response(204)
    def delete(self, trunk, network_id):
        """Stop trusting one of the tenant's networks"""
        services.remove_trusted_network(session(), principal(), trunk, network_id)
