"""No input makes the API answer 500, and every error comes in the one error shape.

Hypothesis throws bodies at every write operation the OpenAPI document lists (bodies shaped
like the operation's schema with bad values inside, arbitrary JSON, and raw bytes under any
content type) and arbitrary path segments and query strings at every GET. The edges'
endpoints get the same with an edge token (an API key would only ever see their 401), and
the event batches and the change feed's query get fuzzed on their own. The inputs that once
broke something are kept below as plain parametrized cases.
"""

import datetime as dt
import json
import re
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from controlplane.api.edge_feed import EventSchema
from tenants.models import utcnow
from tenants.services.edges import EVENT_TYPES

from .checks import assert_error, assert_error_shape

FUZZ = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.filter_too_much],
)
WRITE_METHODS = ("post", "put", "patch")
PARAM = re.compile(r"\{(\w+)\}")
EDGE_PATHS = "/edge/"


_SPEC = {}


class Target(dict):
    def __repr__(self):  # Hypothesis prints its arguments: not the whole OpenAPI document
        return f"Target(trunk={self['trunk']!r})"


@pytest.fixture
def target(api):
    """A tenant with one of everything, so that every path of the API names something."""
    reseller = api.reseller("Fuzz Reseller")
    trunk = api.tenant("Fuzz Tenant", reseller_id=reseller["id"])["trunk_number"]
    api.ok(api.post(f"/tenants/{trunk}/trunks", {"name": "carrier", "gateway": "gw.example"}),
           201)
    api.extension(trunk, "101")
    api.ok(api.put(f"/tenants/{trunk}/extensions/101/dual-registration",
                   {"enabled": True, "sip_peer": True}), 200)
    api.ok(api.post(f"/tenants/{trunk}/ring-groups", {"number": "600", "name": "Sales"}), 201)
    api.ok(api.post(f"/tenants/{trunk}/queues", {"number": "700", "name": "Hotline"}), 201)
    key = api.ok(api.post("/api-keys", {"role": "tenant", "name": "k", "trunk_number": trunk}),
                 201)
    edge = api.ok(api.post("/edges", {"name": "fuzz-edge"}), 201)
    if not _SPEC:  # the same for every app; building it is not free
        _SPEC.update(api.client.get("/api/v1/openapi.json").get_json())
    return Target(spec=_SPEC, trunk=trunk, reseller_id=reseller["id"], key_id=key["id"],
                  edge=api.as_(edge["token"]))


def fill(path, target):
    """A path of the spec with every parameter naming an existing object."""
    values = {
        "trunk": target["trunk"], "reseller_id": target["reseller_id"],
        "key_id": target["key_id"], "name": "carrier", "queue": "700", "extension": "101",
        "number": "600" if "/ring-groups/" in path else "101",
        "address": "192.0.2.1", "network_id": "1",
    }
    return PARAM.sub(lambda m: str(values.get(m[1], "1")), path).removeprefix("/api/v1")


def operations(spec, methods):
    return sorted((method, path, op) for path, item in spec["paths"].items()
                  for method, op in item.items() if method in methods)


def url_quote(text):
    """Percent-encoded UTF-8, lone surrogates included (as the invalid bytes they make)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def send(api, target, method, path, **kwargs):
    """Call path with the platform key, or with the target's edge token for an edge path."""
    client = target["edge"] if path.startswith(EDGE_PATHS) else api
    response = getattr(client, method)(path, **kwargs)
    event(f"{method} {response.status_code}")  # shown by --hypothesis-show-statistics
    assert response.status_code < 500, (method, path, response.get_json(silent=True))
    if response.status_code >= 400:
        assert_error_shape(response)
    return response


# Strategies

any_text = st.text(alphabet=st.characters(codec=None), max_size=40)
huge_int = st.integers(min_value=-(2**70), max_value=2**70)
scalars = (st.none() | st.booleans() | st.integers() | huge_int
           | st.floats(allow_nan=True, allow_infinity=True) | any_text)
# Any moment datetimes hold, at any UTC offset (so that converting to UTC may overflow).
any_time = st.builds(
    lambda moment, offset: moment.replace(tzinfo=dt.timezone(offset)).isoformat(),
    st.datetimes(),
    st.timedeltas(min_value=-dt.timedelta(hours=23, minutes=59),
                  max_value=dt.timedelta(hours=23, minutes=59)).map(
        lambda d: dt.timedelta(minutes=d // dt.timedelta(minutes=1))))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)


def from_schema(spec, schema, depth=0):
    """Values shaped like an OpenAPI schema, often with a wrong value somewhere inside."""
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if "allOf" in schema:
        return from_schema(spec, schema["allOf"][0], depth)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = {name: from_schema(spec, sub, depth + 1)
                 for name, sub in schema.get("properties", {}).items()
                 if not sub.get("readOnly")}
        required = {name: props.pop(name) for name in schema.get("required", ()) if name in props}
        shaped = st.fixed_dictionaries(required, optional=props)
    elif kind == "array":
        shaped = st.lists(from_schema(spec, schema.get("items", {}), depth + 1), max_size=3)
    elif "enum" in schema:
        shaped = st.sampled_from(schema["enum"])
    elif kind == "string":
        shaped = any_text
        if "pattern" in schema:
            shaped = st.from_regex(schema["pattern"]) | shaped
        if schema.get("format") == "email":
            shaped = st.emails() | shaped
        if schema.get("format") == "date-time":
            shaped = any_time | shaped
    elif kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        shaped = st.integers(min_value=low, max_value=high) | huge_int
    elif kind == "boolean":
        shaped = st.booleans()
    else:
        shaped = json_values
    # Mostly well-shaped (so that bodies get past the schema), now and then anything at all.
    junk = json_values if depth < 2 else scalars
    return st.integers(0, 9).flatmap(lambda dice: junk if dice == 0 else shaped)


def body_schema(op):
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    return body.get("schema", {"type": "object"})


# The fuzz tests


@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_write_with_schema_shaped_body_never_500(api, target, data):
    ops = operations(target["spec"], WRITE_METHODS)
    method, path, op = data.draw(st.sampled_from(ops), label="operation")
    body = data.draw(from_schema(target["spec"], body_schema(op)), label="body")
    send(api, target, method, fill(path, target), json=body)


@FUZZ
@given(data=st.data())
def test_write_with_arbitrary_json_never_500(api, target, data):
    ops = operations(target["spec"], WRITE_METHODS)
    method, path, _op = data.draw(st.sampled_from(ops), label="operation")
    send(api, target, method, fill(path, target), json=data.draw(json_values, label="body"))


CONTENT_TYPES = ["application/json", "application/json; charset=latin-1", "text/plain",
                 "application/x-www-form-urlencoded", "multipart/form-data", "application/xml",
                 "", "application/json; boundary=x"]


@FUZZ
@given(data=st.data())
def test_write_with_raw_body_never_500(api, target, data):
    ops = operations(target["spec"], WRITE_METHODS)
    method, path, _op = data.draw(st.sampled_from(ops), label="operation")
    raw = data.draw(st.binary(max_size=200)
                    | any_text.map(lambda t: t.encode("utf-8", "surrogatepass"))
                    | json_values.map(lambda v: json.dumps(v).encode()), label="raw body")
    content_type = data.draw(st.sampled_from(CONTENT_TYPES), label="content type")
    send(api, target, method, fill(path, target), data=raw, content_type=content_type)


@FUZZ
@given(data=st.data())
def test_get_with_arbitrary_path_segment_never_500(api, target, data):
    ops = [o for o in operations(target["spec"], ("get",)) if PARAM.search(o[1])]
    _method, path, _op = data.draw(st.sampled_from(ops), label="operation")
    names = PARAM.findall(path)
    name = data.draw(st.sampled_from(names), label="parameter")
    segment = data.draw(any_text.filter(bool) | huge_int.map(str), label="segment")
    templated = path.replace("{" + name + "}", url_quote(segment))
    send(api, target, "get", fill(templated, target))


@FUZZ
@given(data=st.data())
def test_list_with_arbitrary_query_never_500(api, target, data):
    ops = [o for o in operations(target["spec"], ("get",)) if "X-Pagination" in
           o[2]["responses"].get("200", {}).get("headers", {})]
    _method, path, op = data.draw(st.sampled_from(ops), label="operation")
    names = [p["name"] for p in op.get("parameters", []) if p.get("in") == "query"]
    query = data.draw(st.dictionaries(
        st.sampled_from(names) | any_text.filter(bool),
        huge_int.map(str) | st.integers(-5, 5).map(str) | any_text, max_size=3), label="query")
    encoded = "&".join(f"{url_quote(k)}={url_quote(v)}" for k, v in query.items())
    send(api, target, "get", fill(path, target), query_string=encoded)


# The edges' own input: event batches and the change feed's query


def mostly(valid, nasty):
    """Mostly a valid value (so that the event gets past the schema), now and then not."""
    return st.integers(0, 5).flatmap(lambda dice: nasty if dice == 0 else valid)


def edge_event(trunk):
    """An event of any type with the fields its type needs and some it may have, most of
    them well-shaped around the target's extension, so that they reach the services."""
    addresses = st.sampled_from(["192.0.2.7", "2001:db8::7", "::ffff:192.0.2.7"])
    beyond_bigint = st.integers(2**63 - 2, 2**70) | huge_int
    fields = {
        "at": mostly(st.timedeltas(min_value=-dt.timedelta(hours=23),
                                   max_value=dt.timedelta(minutes=4)).map(
                         lambda d: (utcnow() + d).isoformat()),
                     any_time | scalars),
        "address": mostly(addresses, any_text),
        "user_id": mostly(st.sampled_from([f"{trunk}101", f"{trunk}101r", f"{trunk}999"]),
                          any_text),
        "reason": mostly(st.sampled_from(["wrong_password", "unknown_user", "stale_nonce"]),
                         any_text),
        "contact": mostly(st.just("sip:desk@192.0.2.7:5060"), any_text),
        "source_address": mostly(addresses, any_text),
        "source_port": mostly(st.integers(1, 65535), huge_int),
        "transport": mostly(st.sampled_from(["udp", "tcp", "tls"]), any_text),
        "user_agent": mostly(st.none() | st.just("desk phone"), any_text),
        "expires": mostly(st.integers(1, 7 * 86400), huge_int),
        "mode": mostly(st.sampled_from(["home", "remote", "both"]), any_text),
        "applied_version": mostly(st.integers(0, 100), beyond_bigint),
        "addresses": mostly(st.lists(addresses, max_size=3), json_values),
    }
    optional = {"registration": ("user_agent",), "unregistration": ("contact",),
                "heartbeat": ("addresses",)}

    def of_type(kind):
        needs = EventSchema.NEEDS[kind]
        return st.fixed_dictionaries(
            {"type": st.just(kind), **{f: fields[f] for f in needs}},
            optional={f: fields[f] for f in ("at", *optional.get(kind, ()))})

    return st.sampled_from(EVENT_TYPES).flatmap(of_type)


@settings(FUZZ, max_examples=200)
@given(data=st.data())
def test_edge_event_batch_never_500(api, target, data):
    batch = {"batch_id": data.draw(st.uuids(), label="batch id").hex,
             "events": data.draw(st.lists(edge_event(target["trunk"]), max_size=4),
                                 label="events")}
    send(api, target, "post", "/edge/events", json=batch)


@FUZZ
@given(data=st.data())
def test_edge_changes_with_arbitrary_query_never_500(api, target, data):
    numbers = (st.integers(2**63 - 2, 2**70) | huge_int | st.integers(-5, 5)).map(str)
    query = data.draw(st.fixed_dictionaries(
        {"after": mostly(numbers, any_text),
         # Never a wait that is valid and not 0: the example would sit in the long-poll.
         "wait": mostly(st.just("0"), st.sampled_from(
             ["-1", "55.5", "nan", "inf", "-inf", "1e400", "", "soon"]))},
        optional={"limit": mostly(numbers, any_text), "colour": any_text}), label="query")
    encoded = "&".join(f"{url_quote(k)}={url_quote(v)}" for k, v in query.items())
    send(api, target, "get", "/edge/changes", query_string=encoded)


# Inputs that once made a 500 (or nearly): kept as plain regression cases.

T = "{trunk}"
REGRESSIONS = [
    # (method, path, body, status, field)
    ("post", "/tenants", {"name": "x", "reseller_id": 10**20}, 422, "reseller_id"),
    ("post", "/tenants", {"name": "x", "reseller_id": 2**31}, 422, "reseller_id"),
    ("patch", f"/tenants/{T}", {"reseller_id": -(2**63) - 1}, 422, "reseller_id"),
    ("post", "/api-keys", {"role": "reseller", "name": "x", "reseller_id": 2**64}, 422,
     "reseller_id"),
    ("post", "/tenants", {"name": "nul\x00byte"}, 422, "name"),
    ("post", "/tenants", {"name": "lone \ud800 surrogate"}, 422, "name"),
    ("post", "/tenants", {"name": "x", "trunk_number": "12345\n"}, 422, "trunk_number"),
    ("post", f"/tenants/{T}/extensions", {"number": "101\n", "name": "x"}, 422, "number"),
    ("post", f"/tenants/{T}/extensions", {"number": "123456\n", "name": "x"}, 422, "number"),
    ("patch", f"/tenants/{T}", {"feature_codes": {"ring_mode": "55\n"}}, 422,
     "feature_codes.ring_mode"),
    ("patch", f"/tenants/{T}/extensions/101", {"caller_id_number": "+4930\n"}, 422,
     "caller_id_number"),
    ("patch", f"/tenants/{T}/extensions/101", {"voicemail": {"pin": "1234\n"}}, 422,
     "voicemail.pin"),
    ("patch", f"/tenants/{T}/extensions/101",
     {"voicemail": {"email": "a" * 250 + "@example.com"}}, 422, "voicemail.email"),
    ("patch", f"/tenants/{T}/extensions/101",
     {"forwarding": {"busy": {"enabled": True, "destination": "+" + "1" * 32}}}, 422,
     "forwarding.busy.destination"),
    ("put", f"/tenants/{T}/extensions/101/dual-registration",
     {"enabled": True, "sip_peer": False, "external_number": "+4930", "trunk": "car\x00rier"},
     422, "trunk"),
    ("post", f"/tenants/{T}/trunks", {"name": "gw\n", "gateway": "gw.example"}, 422, "name"),
    ("post", f"/tenants/{T}/trunks", {"name": "long", "gateway": "g" * 253 + ":5060"}, 422,
     "gateway"),
    ("post", f"/tenants/{T}/trunks", {"name": "v6", "gateway": "[" + "1:" * 150 + "1]"}, 422,
     "gateway"),
    ("post", f"/tenants/{T}/ring-groups", {"number": "601", "name": "x", "ring_seconds": 1e308},
     422, "ring_seconds"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), REGRESSIONS,
                         ids=[f"{m}-{f}-{i}" for i, (m, _p, _b, _s, f) in enumerate(REGRESSIONS)])
def test_write_with_nasty_value_is_422(api, target, method, path, body, status, field):
    response = getattr(api, method)(path.replace(T, target["trunk"]), json=body)
    assert_error(response, status, field)


@pytest.mark.parametrize("path", [
    "/resellers/99999999999999999999",
    "/resellers/2147483648",
    "/tenants/%00",
    "/tenants/1234%00",
    "/tenants/{trunk}/extensions/10%00",
    "/tenants/{trunk}/trunks/carrier%00",
    "/tenants/{trunk}/ring-groups/%00600",
    "/tenants/{trunk}/queues/70%000",
    "/api-keys/%00",
    "/tenants/{trunk}%0A",
    "/tenants/{trunk}/extensions/101%0A",
])
def test_get_with_nasty_path_segment_is_404(api, target, path):
    assert_error(api.get(path.replace("{trunk}", target["trunk"])), 404)


@pytest.mark.parametrize("query", [
    {"page": str(10**20)},
    {"page": str(2**62)},
    {"page": "0"},
    {"page": "-1"},
    {"page": "one"},
    {"page_size": str(10**20)},
    {"page_size": "0"},
])
def test_list_with_nasty_page_is_422(api, target, query):
    response = api.get(f"/tenants/{target['trunk']}/extensions", query_string=query)
    assert response.status_code == 422, response.get_json()
    body = assert_error_shape(response)
    assert set(body["errors"]["query"]) == set(query)


def test_list_with_last_possible_page_is_empty(api, target):
    response = api.get(f"/tenants/{target['trunk']}/extensions",
                       query_string={"page": str(2**31 - 1), "page_size": "1000"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == []


@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b'{"name": "x", "ring_seconds": Infinity}',
    b'{"name": NaN}',
    b"\xff\xfe\x00",
    b"",
])
def test_post_with_unparsable_json_is_4xx(api, target, raw):
    response = api.post(f"/tenants/{target['trunk']}/ring-groups", data=raw,
                        content_type="application/json")
    assert 400 <= response.status_code < 500, response.get_json(silent=True)
    assert_error_shape(response)


HOUR = dt.timedelta(hours=1)
EDGE_REGRESSIONS = [
    # (event, field); a timedelta `at` is that far from now
    ({"type": "heartbeat", "applied_version": 2**63}, "applied_version"),
    ({"type": "heartbeat", "applied_version": 10**30}, "applied_version"),
    ({"type": "heartbeat", "applied_version": 0, "at": "9999-12-31T23:59:59+00:00"}, "at"),
    ({"type": "heartbeat", "applied_version": 0, "at": "9999-12-31T23:59:59-14:00"}, "at"),
    ({"type": "heartbeat", "applied_version": 0, "at": "0001-01-01T00:00:00+14:00"}, "at"),
    ({"type": "heartbeat", "applied_version": 0, "at": "2000-01-01T00:00:00+00:00"}, "at"),
    ({"type": "heartbeat", "applied_version": 0, "at": "2026-01-01T00:00:00"}, "at"),  # naive
    ({"type": "registration", "user_id": "{trunk}101", "contact": "sip:desk@192.0.2.7",
      "source_address": "192.0.2.7", "source_port": 5060, "transport": "udp",
      "expires": 7 * 86400, "at": 24 * HOUR}, "at"),
    ({"type": "auth_failure", "address": "192.0.2.7", "user_id": "{trunk}101",
      "reason": "wrong_password", "at": -48 * HOUR}, "at"),
    ({"type": "registration", "user_id": "{trunk}101", "contact": "sip:desk@192.0.2.7",
      "source_address": "192.0.2.7", "source_port": 2**70, "transport": "udp",
      "expires": 300}, "source_port"),
]


def _event(template, trunk):
    event = {k: v.replace("{trunk}", trunk) if isinstance(v, str) else v
             for k, v in template.items()}
    if isinstance(event.get("at"), dt.timedelta):
        event["at"] = (utcnow() + event["at"]).isoformat()
    return event


@pytest.mark.parametrize(("event", "field"), EDGE_REGRESSIONS,
                         ids=[f"{e['type']}-{f}-{i}" for i, (e, f) in enumerate(EDGE_REGRESSIONS)])
def test_edge_event_with_nasty_value_is_422(api, target, event, field):
    response = target["edge"].post("/edge/events", {
        "batch_id": "nasty", "events": [_event(event, target["trunk"])]})
    assert_error(response, 422, f"events.0.{field}")


def test_edge_event_at_the_limits_is_applied(api, target):
    batch = {"batch_id": "limits", "events": [
        {"type": "heartbeat", "applied_version": 2**63 - 1,
         "at": (utcnow() + dt.timedelta(minutes=4)).isoformat()},
        {"type": "auth_success", "address": "192.0.2.7", "user_id": target["trunk"] + "101",
         "at": (utcnow() - dt.timedelta(hours=23)).isoformat()},
    ]}
    assert api.ok(target["edge"].post("/edge/events", batch), 200)["applied"] == 2
    [edge] = api.ok(api.get("/edges"), 200)
    assert edge["applied_version"] == 2**63 - 1


@pytest.mark.parametrize("after", [str(2**63), str(10**30), "-1", "1e3", "0x10"])
def test_edge_changes_after_a_nasty_version_is_422(target, after):
    response = target["edge"].get("/edge/changes", query_string={"after": after, "wait": "0"})
    assert response.status_code == 422, response.get_json()
    assert set(assert_error_shape(response)["errors"]["query"]) == {"after"}


def test_edge_changes_after_the_last_possible_version_is_empty(target):
    response = target["edge"].get("/edge/changes",
                                  query_string={"after": str(2**63 - 1), "wait": "0"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["changes"] == []
