import marshmallow as ma
from flask.views import MethodView

from tenants.services import resellers as services

from ..auth import principal
from ..database import session
from .common import Blueprint, Schema

URL = "/resellers"
blp = Blueprint("resellers", __name__, description="Resellers own tenants")


class ResellerSchema(Schema):
    id = ma.fields.Integer(dump_only=True)
    name = ma.fields.String(required=True, validate=ma.validate.Length(1, 200))
    created_at = ma.fields.DateTime(dump_only=True)


@blp.route("")
class Resellers(MethodView):
    @blp.response(200, ResellerSchema(many=True))
    @blp.paginated()
    def get(self):
        """List resellers"""
        return services.list_resellers(principal())

    @blp.arguments(ResellerSchema)
    @blp.response(201, ResellerSchema)
    def post(self, body):
        """Create a reseller"""
        return services.create_reseller(session(), principal(), **body)


@blp.route("/<int:reseller_id>")
class ResellerById(MethodView):
    @blp.response(200, ResellerSchema)
    def get(self, reseller_id):
        """Get a reseller"""
        return services.get_reseller(session(), principal(), reseller_id)

    @blp.arguments(ResellerSchema)
    @blp.response(200, ResellerSchema)
    def patch(self, body, reseller_id):
        """Rename a reseller"""
        return services.update_reseller(session(), principal(), reseller_id, **body)

    @blp.response(204)
    def delete(self, reseller_id):
        """Delete a reseller that owns no tenant"""
        services.delete_reseller(session(), principal(), reseller_id)
