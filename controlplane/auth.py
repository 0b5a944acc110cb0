"""Bearer API keys. The principal of a request scopes everything it may see."""

from flask import g, request

from tenants.services.api_keys import authenticate
from tenants.services.edges import authenticate_edge

from . import database
from .errors import error_response

PUBLIC_PATHS = {"/api/v1/openapi.json"}
EDGE_PATHS = database.EDGE_PATHS


def init_app(app):
    app.before_request(_authenticate)


def _authenticate():
    if not request.path.startswith("/api/") or request.path in PUBLIC_PATHS:
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    if request.path.startswith(EDGE_PATHS):
        # Edge tokens reach only the edge endpoints, and API keys never do. Looked up without
        # SQLite's write lock (an edge's reads and event batches must not queue for it here).
        edge = authenticate_edge(database.reading_session(), token) if token else None
        if edge is None:
            return _unauthorized("a valid edge token is required (Authorization: Bearer <token>)")
        g.edge = edge
        return None
    principal = authenticate(database.session(), token) if token else None
    if principal is None:
        return _unauthorized("a valid API key is required (Authorization: Bearer <key>)")
    g.principal = principal
    database.session().info["principal"] = principal
    return None


def _unauthorized(message):
    response = error_response(401, message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="trunkline"'
    return response


def principal():
    return g.principal
