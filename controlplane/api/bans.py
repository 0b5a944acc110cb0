import marshmallow as ma
from flask.views import MethodView

from tenants.services import bans as services

from ..auth import principal
from ..database import session
from .common import TRUNK_NUMBER, Blueprint, Schema

URL = ""
blp = Blueprint("bans", __name__,
                description="Fail2ban-style bans after failed SIP authentication, and their policy")


class BanSchema(Schema):
    address = ma.fields.String(attribute="source", required=True, metadata={
        "description": "an IPv4 address, or the IPv6 network of the policy's prefix"})
    user_id = ma.fields.String(allow_none=True, metadata={
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
    user_ids = ma.fields.List(ma.fields.String(), dump_only=True,
                              metadata={"description": "SIP user IDs tried"})
    edges = ma.fields.List(ma.fields.String(), dump_only=True)
    first_attempt_at = ma.fields.DateTime(dump_only=True)
    last_attempt_at = ma.fields.DateTime(dump_only=True)

    def _kind(self, ban):
        return "address" if ban.user_id is None else "pair"


class BanQuerySchema(Schema):
    active = ma.fields.Boolean(load_default=True, allow_none=True, metadata={
        "description": "true (default): in force now; false: ended or lifted"})
    address = ma.fields.String()
    user_id = ma.fields.String()
    kind = ma.fields.String(validate=ma.validate.OneOf(["address", "pair"]))
    trunk_number = ma.fields.String(validate=TRUNK_NUMBER)


class LiftQuerySchema(Schema):
    user_id = ma.fields.String(metadata={"description": "lift only this user ID's lockout"})


class BanPolicySchema(Schema):
    max_retry = ma.fields.Integer(required=True, validate=ma.validate.Range(1, 1000))
    find_time = ma.fields.Integer(required=True, validate=ma.validate.Range(1, 86400))
    ban_time = ma.fields.Integer(required=True, validate=ma.validate.Range(1, 365 * 86400))
    ban_time_factor = ma.fields.Float(required=True, validate=ma.validate.Range(1, 100))
    max_ban_time = ma.fields.Integer(required=True, validate=ma.validate.Range(1, 10 * 365 * 86400))
    scan_user_ids = ma.fields.Integer(validate=ma.validate.Range(2, 1000), metadata={
        "description": "failures over this many user IDs from one address are a scan"})
    ipv6_prefix = ma.fields.Integer(validate=ma.validate.Range(48, 128))


class TrustedNetworkSchema(Schema):
    id = ma.fields.Integer(dump_only=True)
    cidr = ma.fields.String(required=True)
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


@blp.route("/ban-policy")
class Policy(MethodView):
    @blp.response(200, BanPolicySchema)
    def get(self):
        """The platform's ban policy (times in seconds)"""
        return services.get_policy(session())

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
