"""One error shape everywhere: {"code", "status", "message", "errors"?}.

Domain errors map to statuses here and nowhere else. An unexpected exception is logged with
its traceback and answered with a 500 that says nothing about it.
"""

import logging
from http import HTTPStatus

from flask import jsonify
from werkzeug.exceptions import HTTPException

from tenants.errors import Conflict, Invalid, NotFound
from tenants.feed import Gone
from tenants.scope import Forbidden

log = logging.getLogger(__name__)

_STATUS = {NotFound: 404, Conflict: 409, Invalid: 422, Forbidden: 403, Gone: 410}


def error_response(code, message, errors=None):
    payload = {"code": code, "status": HTTPStatus(code).phrase, "message": message}
    if errors:
        payload["errors"] = errors
    response = jsonify(payload)
    response.status_code = code
    return response


def init_app(app, api):
    for exc_type, code in _STATUS.items():
        app.register_error_handler(exc_type, _domain_handler(code))
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)


def _domain_handler(code):
    def handler(exc):
        errors = {"json": exc.fields} if exc.fields and code in (409, 422) else None
        return error_response(code, exc.message, errors)

    return handler


def _http_error(exc):
    data = getattr(exc, "data", None) or {}
    errors = data.get("errors") or data.get("messages")
    if exc.code == 422:
        message = "invalid input: " + _describe(errors) if errors else "invalid input"
    else:
        message = data.get("message") or exc.description
    response = error_response(exc.code, message, errors)
    for name, value in (data.get("headers") or {}).items():
        response.headers[name] = value
    if exc.code == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def _describe(errors, prefix=""):
    """Flatten webargs' {"json": {"field": [...]}} into "field: message; ..."."""
    parts = []
    for key, value in errors.items():
        name = key if key in ("json", "query", "_schema") and not prefix else (
            f"{prefix}.{key}" if prefix else str(key))
        if isinstance(value, dict):
            parts.append(_describe(value, "" if key in ("json", "query") and not prefix else name))
        else:
            messages = value if isinstance(value, list) else [value]
            parts.append(f"{name}: {' '.join(str(m) for m in messages)}")
    return "; ".join(p for p in parts if p)


def _unexpected(exc):
    log.exception("unhandled error")
    return error_response(500, "internal error; it has been logged")
