"""Bearer API keys. The principal of a request scopes everything it may see."""

from flask import g, request

from tenants.services.api_keys import authenticate

from . import database
from .errors import error_response

PUBLIC_PATHS = {"/api/v1/openapi.json", "/api/v1/health"}


def init_app(app):
    app.before_request(_authenticate)


def _authenticate():
    if not request.path.startswith("/api/") or request.path in PUBLIC_PATHS:
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    principal = None
    if scheme.lower() == "bearer" and token.strip():
        principal = authenticate(database.session(), token.strip())
    if principal is None:
        response = error_response(401, "a valid API key is required (Authorization: Bearer <key>)")
        response.headers["WWW-Authenticate"] = 'Bearer realm="trunkline"'
        return response
    g.principal = principal
    database.session().info["principal"] = principal
    return None


def principal():
    return g.principal
