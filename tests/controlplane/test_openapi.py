"""The OpenAPI document: public, a summary for every operation, every list paginated."""

import pytest

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def spec(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def operations(spec):
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def list_operations(spec):
    """GETs of collections: paths that also take a POST (a create) or answer an array."""
    for method, path, op in operations(spec):
        if method != "get":
            continue
        schema = (op["responses"].get("200", {}).get("content", {})
                  .get("application/json", {}).get("schema", {}))
        if "post" in spec["paths"][path] or schema.get("type") == "array":
            yield path, op


def test_get_openapi_json_needs_no_key(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.get_json()["openapi"].startswith("3.")


def test_get_openapi_json_documents_contract_paths(spec):
    documented = {(m, p) for m, p, _op in operations(spec)}
    for method, path in [
        ("post", "/api/v1/resellers"),
        ("post", "/api/v1/api-keys"),
        ("get", "/api/v1/tenants"),
        ("post", "/api/v1/tenants/{trunk}/extensions"),
        ("put", "/api/v1/tenants/{trunk}/extensions/{number}/dual-registration"),
        ("get", "/api/v1/tenants/{trunk}/extensions/{number}/sip-credentials"),
        ("post", "/api/v1/tenants/{trunk}/extensions/{number}/sip-credentials/rotate"),
        ("put", "/api/v1/tenants/{trunk}/extensions/{number}/ring-mode"),
        ("post", "/api/v1/tenants/{trunk}/queues"),
    ]:
        assert (method, path) in documented


def test_openapi_every_operation_has_summary(spec):
    without = [f"{m.upper()} {p}" for m, p, op in operations(spec)
               if not (op.get("summary") or "").strip()]
    assert list(operations(spec))
    assert without == []


def test_openapi_summaries_are_unique(spec):
    summaries = [op.get("summary") for _m, _p, op in operations(spec)]
    assert len(summaries) == len(set(summaries))


def test_openapi_every_list_operation_is_paginated(spec):
    lists = list(list_operations(spec))
    unpaginated = []
    for path, op in lists:
        params = {p["name"] for p in op.get("parameters", []) if p.get("in") == "query"}
        headers = op["responses"].get("200", {}).get("headers", {})
        if not {"page", "page_size"} <= params or "X-Pagination" not in headers:
            unpaginated.append(path)
    assert len(lists) >= 7
    assert unpaginated == []


def test_openapi_every_list_operation_answers_an_array(spec):
    for path, op in list_operations(spec):
        schema = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema.get("type") == "array", path


def test_openapi_declares_bearer_security(spec):
    schemes = spec["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "bearer"} in schemes.values()
    assert spec.get("security")
