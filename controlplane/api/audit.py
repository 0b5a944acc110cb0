import marshmallow as ma
from flask.views import MethodView

from tenants.services import audit_log as services

from ..auth import principal
from ..database import session
from .common import TRUNK_NUMBER, Blueprint, Schema

URL = "/audit-events"
blp = Blueprint("audit", __name__, description="Who did what, when: every write and reveal")


class AuditQuerySchema(Schema):
    trunk_number = ma.fields.String(validate=TRUNK_NUMBER)
    action = ma.fields.String(validate=ma.validate.Length(1, 64))


class AuditEventSchema(Schema):
    id = ma.fields.Integer()
    at = ma.fields.DateTime()
    actor_role = ma.fields.String()
    actor_key_id = ma.fields.String()
    actor_name = ma.fields.String()
    action = ma.fields.String()
    object_type = ma.fields.String()
    object_id = ma.fields.String()
    details = ma.fields.Dict()


@blp.route("")
class AuditEvents(MethodView):
    @blp.arguments(AuditQuerySchema, location="query", unknown=ma.EXCLUDE)
    @blp.response(200, AuditEventSchema(many=True))
    @blp.paginated()
    def get(self, query):
        """List audit events within the caller's scope, newest first"""
        return services.list_audit_events(session(), principal(), **query)
