import marshmallow as ma
from flask.views import MethodView

from tenants.models import Endpoint
from tenants.services import queues as services

from ..auth import principal
from ..database import session
from .common import Blueprint, Enum, Schema, number_field

URL = "/tenants/<trunk>/queues"
blp = Blueprint("queues", __name__, description="ACD queues and agent login")


class AgentSchema(Schema):
    extension = ma.fields.Method("_extension", dump_only=True)
    endpoint = Enum(Endpoint, by_value=True, required=True)
    logged_in_at = ma.fields.DateTime(dump_only=True)

    def _extension(self, agent):
        return agent.extension.number


class QueueSchema(Schema):
    number = number_field(required=True)
    name = ma.fields.String(required=True, validate=ma.validate.Length(1, 200))
    agents = ma.fields.Nested(AgentSchema, many=True, dump_only=True)
    created_at = ma.fields.DateTime(dump_only=True)


class QueueUpdateSchema(QueueSchema):
    class Meta(Schema.Meta):
        exclude = ("number",)


@blp.route("")
class Queues(MethodView):
    @blp.response(200, QueueSchema(many=True))
    @blp.paginated()
    def get(self, trunk):
        """List a tenant's ACD queues"""
        return services.list_queues(session(), principal(), trunk)

    @blp.arguments(QueueSchema)
    @blp.response(201, QueueSchema)
    def post(self, body, trunk):
        """Create an ACD queue"""
        return services.create_queue(session(), principal(), trunk, **body)


@blp.route("/<queue>")
class QueueByNumber(MethodView):
    @blp.response(200, QueueSchema)
    def get(self, trunk, queue):
        """Get an ACD queue with its logged-in agents"""
        return services.get_queue(session(), principal(), trunk, queue)

    @blp.arguments(QueueUpdateSchema(partial=True))
    @blp.response(200, QueueSchema)
    def patch(self, body, trunk, queue):
        """Rename an ACD queue"""
        return services.update_queue(session(), principal(), trunk, queue, **body)

    @blp.response(204)
    def delete(self, trunk, queue):
        """Delete an ACD queue (its agents are logged out)"""
        services.delete_queue(session(), principal(), trunk, queue)


@blp.route("/<queue>/agents/<extension>")
class QueueAgent(MethodView):
    @blp.arguments(AgentSchema)
    @blp.response(200, AgentSchema)
    def put(self, body, trunk, queue, extension):
        """Log an endpoint of an extension in as an agent (409 if the other one is)"""
        return services.log_in_agent(session(), principal(), trunk, queue, extension, **body)

    @blp.response(204)
    def delete(self, trunk, queue, extension):
        """Log an extension's agent out of the queue"""
        services.log_out_agent(session(), principal(), trunk, queue, extension)
