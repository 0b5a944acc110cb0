import marshmallow as ma
from flask.views import MethodView

from tenants.models import Role
from tenants.services import api_keys as services

from ..auth import principal
from ..database import session
from .common import ID, TRUNK_NUMBER, Blueprint, Enum, Schema

URL = "/api-keys"
blp = Blueprint("api_keys", __name__, description="API keys: platform, reseller and tenant")


class ApiKeySchema(Schema):
    id = ma.fields.String(attribute="key_id", dump_only=True)
    name = ma.fields.String(required=True, validate=ma.validate.Length(1, 200))
    role = Enum(Role, by_value=True, required=True)
    reseller_id = ma.fields.Integer(allow_none=True, load_default=None, validate=ID)
    trunk_number = ma.fields.String(allow_none=True, load_default=None, validate=TRUNK_NUMBER)
    created_at = ma.fields.DateTime(dump_only=True)
    last_used_at = ma.fields.DateTime(dump_only=True)
    revoked_at = ma.fields.DateTime(dump_only=True)


class NewApiKeySchema(ApiKeySchema):
    key = ma.fields.String(dump_only=True, metadata={"description": "shown only once"})


@blp.route("")
class ApiKeys(MethodView):
    @blp.response(200, ApiKeySchema(many=True))
    @blp.paginated()
    def get(self):
        """List the API keys within the caller's scope"""
        return services.list_api_keys(principal())

    @blp.arguments(ApiKeySchema)
    @blp.response(201, NewApiKeySchema)
    def post(self, body):
        """Create an API key (the key is shown only in this response)"""
        key, token = services.create_api_key(session(), principal(), **body)
        key.key = token
        return key


@blp.route("/<key_id>")
class ApiKeyById(MethodView):
    @blp.response(200, ApiKeySchema)
    def get(self, key_id):
        """Get an API key (never its secret)"""
        return services.get_api_key(session(), principal(), key_id)

    @blp.response(204)
    def delete(self, key_id):
        """Revoke an API key"""
        services.revoke_api_key(session(), principal(), key_id)
