import marshmallow as ma
from flask.views import MethodView

from tenants.services import edges as services

from ..auth import principal
from ..database import session
from .common import Blueprint, Schema

URL = ""
blp = Blueprint("edges", __name__,
                description="The fleet of SIP edges, the SIP Status screen and reloads")


class EdgeSchema(Schema):
    id = ma.fields.Integer(dump_only=True)
    name = ma.fields.String(required=True, validate=ma.validate.Regexp(
        r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", error="letters, digits, '_', '.', '-'; at most 64"))
    created_at = ma.fields.DateTime(dump_only=True)
    revoked_at = ma.fields.DateTime(dump_only=True)
    last_seen = ma.fields.DateTime(attribute="last_seen_at", dump_only=True)
    applied_version = ma.fields.Integer(dump_only=True)
    behind = ma.fields.Integer(dump_only=True, metadata={
        "description": "outbox versions not yet applied (0: up to date)"})
    addresses = ma.fields.List(ma.fields.String(), dump_only=True)


class NewEdgeSchema(EdgeSchema):
    token = ma.fields.String(dump_only=True, metadata={"description": "shown only once"})


class RegistrationSchema(Schema):
    user_id = ma.fields.String()
    extension = ma.fields.Function(lambda r: r.extension.number)
    endpoint = ma.fields.String()
    contact = ma.fields.String()
    source = ma.fields.Function(lambda r: (f"[{r.source_address}]:{r.source_port}"
                                           if ":" in r.source_address
                                           else f"{r.source_address}:{r.source_port}"))
    transport = ma.fields.String()
    user_agent = ma.fields.String()
    registered_at = ma.fields.DateTime()
    expires_at = ma.fields.DateTime()
    edge = ma.fields.Function(lambda r: r.edge.name)


class ReloadSchema(Schema):
    version = ma.fields.Integer()


class ReloadEdgeSchema(Schema):
    name = ma.fields.String()
    applied = ma.fields.Boolean()
    applied_version = ma.fields.Integer()
    last_seen_at = ma.fields.DateTime()


class ReloadStatusSchema(Schema):
    version = ma.fields.Integer()
    applied = ma.fields.Integer(metadata={"description": "edges that have applied it"})
    total = ma.fields.Integer()
    edges = ma.fields.Nested(ReloadEdgeSchema, many=True)


def _with_lag(edge, version):
    edge.behind = max(version - edge.applied_version, 0) if edge.revoked_at is None else None
    return edge


@blp.route("/edges")
class Edges(MethodView):
    @blp.response(200, EdgeSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List the fleet: last contact and applied configuration version of each edge"""
        edges, total, version = services.list_edges(
            session(), principal(), page=pagination_parameters.page,
            page_size=pagination_parameters.page_size)
        pagination_parameters.item_count = total
        return [_with_lag(edge, version) for edge in edges]

    @blp.arguments(EdgeSchema)
    @blp.response(201, NewEdgeSchema)
    def post(self, body):
        """Enroll an edge (its token is shown only in this response)"""
        edge, token = services.enroll_edge(session(), principal(), **body)
        edge.token, edge.behind = token, None
        return edge


@blp.route("/edges/<int:edge_id>")
class EdgeById(MethodView):
    @blp.response(200, EdgeSchema)
    def get(self, edge_id):
        """Get an edge"""
        return services.get_edge(session(), principal(), edge_id)

    @blp.response(204)
    def delete(self, edge_id):
        """Revoke an edge's token"""
        services.revoke_edge(session(), principal(), edge_id)


@blp.route("/tenants/<trunk>/registrations")
class Registrations(MethodView):
    @blp.response(200, RegistrationSchema(many=True))
    @blp.paginated()
    def get(self, trunk):
        """SIP Status: every registered endpoint of the tenant, with the edge holding it"""
        return services.list_registrations(session(), principal(), trunk)


@blp.route("/tenants/<trunk>/extensions/<number>/registrations")
class ExtensionRegistrations(MethodView):
    @blp.response(200, RegistrationSchema(many=True))
    @blp.paginated()
    def get(self, trunk, number):
        """SIP Status of one extension: its home and remote (r) entries"""
        return services.list_registrations(session(), principal(), trunk, number=number)


@blp.route("/tenants/<trunk>/reload")
class Reload(MethodView):
    @blp.response(202, ReloadSchema)
    def post(self, trunk):
        """Ask every edge to re-read the tenant (the hosted "PBX reload")"""
        return {"version": services.request_reload(session(), principal(), trunk)}


@blp.route("/tenants/<trunk>/reloads/<int:version>")
class ReloadStatus(MethodView):
    @blp.response(200, ReloadStatusSchema)
    def get(self, trunk, version):
        """Which edges have applied a reload"""
        return services.reload_status(session(), principal(), trunk, version)
