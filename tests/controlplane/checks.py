"""Assertions that several API test modules share."""

import json


def error_fields(body):
    """Dotted names of the fields an error body names under errors.json.

    Schema errors nest ({"forwarding": {"always": {"destination": [...]}}}) while domain
    errors name a dotted path ({"forwarding.always.destination": [...]}); both name the
    same field, so both flatten to "forwarding.always.destination".
    """
    names = set()

    def walk(node, prefix):
        for key, value in node.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                walk(value, name)
            else:
                names.add(name)

    walk(((body or {}).get("errors") or {}).get("json") or {}, "")
    return names


def assert_error_shape(response):
    body = response.get_json(silent=True)
    assert isinstance(body, dict), (response.status_code, response.data[:200])
    assert body.get("code") == response.status_code, body
    assert isinstance(body.get("status"), str) and body["status"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    return body


def assert_error(response, status, *fields):
    """An error response of that status, in the one error shape, naming each field."""
    assert response.status_code == status, (response.status_code, response.get_json(silent=True))
    body = assert_error_shape(response)
    named = error_fields(body)
    for field in fields:
        assert field in named, (field, body)
    return body


def pagination(response):
    header = response.headers.get("X-Pagination")
    assert header, f"no X-Pagination header: {dict(response.headers)}"
    return json.loads(header)
