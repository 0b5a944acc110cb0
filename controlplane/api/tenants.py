import marshmallow as ma
from flask.views import MethodView

from tenants.models import RingMode
from tenants.services import tenants as services

from ..auth import principal
from ..database import session
from .common import ID, TRUNK_NUMBER, Blueprint, Enum, Regexp, Schema

URL = "/tenants"
blp = Blueprint("tenants", __name__, description="Tenants: hosted customers, by trunk number")

FEATURE_CODE = Regexp(r"^\*?[0-9]{1,6}$", error="must be 1 to 6 digits, optionally after *")


class FeatureCodesSchema(Schema):
    ring_mode = ma.fields.String(validate=FEATURE_CODE, metadata={
        "description": "dialled from either endpoint to choose which ring (default 36)"})
    voicemail = ma.fields.String(validate=FEATURE_CODE, metadata={"description": "default *97"})


class TenantSchema(Schema):
    trunk_number = ma.fields.String(validate=TRUNK_NUMBER, metadata={
        "description": "five digits; allocated at random among the free ones when not given"})
    name = ma.fields.String(required=True, validate=ma.validate.Length(1, 200))
    reseller_id = ma.fields.Integer(allow_none=True, validate=ID)
    feature_codes = ma.fields.Nested(FeatureCodesSchema)
    dual_default_ring_mode = Enum(RingMode, by_value=True, metadata={
        "description": "ring mode an extension gets when dual registration is enabled"})
    created_at = ma.fields.DateTime(dump_only=True)


class TenantUpdateSchema(TenantSchema):
    class Meta(Schema.Meta):
        exclude = ("trunk_number",)


@blp.route("")
class Tenants(MethodView):
    @blp.response(200, TenantSchema(many=True))
    @blp.paginated()
    def get(self):
        """List the tenants within the caller's scope"""
        return services.list_tenants(principal())

    @blp.arguments(TenantSchema)
    @blp.response(201, TenantSchema)
    def post(self, body):
        """Create a tenant"""
        return services.create_tenant(session(), principal(), **body)


@blp.route("/<trunk>")
class TenantByTrunk(MethodView):
    @blp.response(200, TenantSchema)
    def get(self, trunk):
        """Get a tenant"""
        return services.get_tenant(session(), principal(), trunk)

    @blp.arguments(TenantUpdateSchema(partial=True))
    @blp.response(200, TenantSchema)
    def patch(self, body, trunk):
        """Change a tenant's name, owner or settings"""
        return services.update_tenant(session(), principal(), trunk, **body)

    @blp.response(204)
    def delete(self, trunk):
        """Delete a tenant and everything it has"""
        services.delete_tenant(session(), principal(), trunk)
