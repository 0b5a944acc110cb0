import marshmallow as ma
from flask.views import MethodView

from tenants.models import RingStrategy
from tenants.services import ring_groups as services

from ..auth import principal
from ..database import session
from .common import Blueprint, Enum, Schema, number_field

URL = "/tenants/<trunk>/ring-groups"
blp = Blueprint("ring_groups", __name__,
                description="Ring groups; extensions subscribe through their ring_groups")


class RingGroupSchema(Schema):
    number = number_field(required=True)
    name = ma.fields.String(required=True, validate=ma.validate.Length(1, 200))
    strategy = Enum(RingStrategy, by_value=True)
    ring_seconds = ma.fields.Integer(validate=ma.validate.Range(5, 300))
    members = ma.fields.Method("_members", dump_only=True, metadata={
        "description": "numbers of the subscribed extensions"})
    created_at = ma.fields.DateTime(dump_only=True)

    def _members(self, group):
        return [m.number for m in group.members]


class RingGroupUpdateSchema(RingGroupSchema):
    class Meta(Schema.Meta):
        exclude = ("number",)


@blp.route("")
class RingGroups(MethodView):
    @blp.response(200, RingGroupSchema(many=True))
    @blp.paginated()
    def get(self, trunk):
        """List a tenant's ring groups"""
        return services.list_ring_groups(session(), principal(), trunk)

    @blp.arguments(RingGroupSchema)
    @blp.response(201, RingGroupSchema)
    def post(self, body, trunk):
        """Create a ring group"""
        return services.create_ring_group(session(), principal(), trunk, **body)


@blp.route("/<number>")
class RingGroupByNumber(MethodView):
    @blp.response(200, RingGroupSchema)
    def get(self, trunk, number):
        """Get a ring group"""
        return services.get_ring_group(session(), principal(), trunk, number)

    @blp.arguments(RingGroupUpdateSchema(partial=True))
    @blp.response(200, RingGroupSchema)
    def patch(self, body, trunk, number):
        """Change a ring group"""
        return services.update_ring_group(session(), principal(), trunk, number, **body)

    @blp.response(204)
    def delete(self, trunk, number):
        """Delete a ring group (its subscriptions go with it)"""
        services.delete_ring_group(session(), principal(), trunk, number)
