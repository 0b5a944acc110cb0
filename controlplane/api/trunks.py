import re

import marshmallow as ma
from flask.views import MethodView

from tenants.services import trunks as services

from ..auth import principal
from ..database import session
from .common import Blueprint, Regexp, Schema

URL = "/tenants/<trunk>/trunks"
blp = Blueprint("trunks", __name__, description="A tenant's outbound trunks (SIP gateways)")

TRUNK_NAME = Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                                error="letters, digits, '_', '.', '-'; at most 64")


_GATEWAY = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]{0,252})(?::([0-9]{1,5}))?")


def _validate_gateway(value):
    match = _GATEWAY.fullmatch(value)
    # 255: the width of the gateway column.
    if len(value) > 255 or match is None or (match[1] and not 0 < int(match[1]) < 65536):
        raise ma.ValidationError("must be a host name or address, with an optional :port")


class TrunkSchema(Schema):
    name = ma.fields.String(required=True, validate=TRUNK_NAME)
    gateway = ma.fields.String(required=True, validate=_validate_gateway, metadata={
        "description": "SIP gateway: host name or address, optional :port"})
    created_at = ma.fields.DateTime(dump_only=True)


@blp.route("")
class Trunks(MethodView):
    @blp.response(200, TrunkSchema(many=True))
    @blp.paginated()
    def get(self, trunk):
        """List a tenant's outbound trunks"""
        return services.list_trunks(session(), principal(), trunk)

    @blp.arguments(TrunkSchema)
    @blp.response(201, TrunkSchema)
    def post(self, body, trunk):
        """Add an outbound trunk"""
        return services.create_trunk(session(), principal(), trunk, **body)


@blp.route("/<name>")
class TrunkByName(MethodView):
    @blp.response(200, TrunkSchema)
    def get(self, trunk, name):
        """Get an outbound trunk"""
        return services.get_trunk(session(), principal(), trunk, name)

    @blp.arguments(TrunkSchema(partial=True))
    @blp.response(200, TrunkSchema)
    def patch(self, body, trunk, name):
        """Rename an outbound trunk or change its gateway"""
        return services.update_trunk(session(), principal(), trunk, name,
                                     new_name=body.get("name"), gateway=body.get("gateway"))

    @blp.response(204)
    def delete(self, trunk, name):
        """Remove an outbound trunk that no dual registration uses"""
        services.delete_trunk(session(), principal(), trunk, name)
