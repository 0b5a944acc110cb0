"""A small HTTP client of the API for tests, and builders of common fixtures' data."""

import importlib.util
import os
import shutil
import sysconfig

from sipedge import compiled


def expected_core_build(environ=os.environ):
    """How the suite expects the SIP core to run: 'python' under TRUNKLINE_PURE_PYTHON or
    where it cannot be built (no C compiler, Python headers or Cython: scripts/bootstrap
    then only warns), else 'compiled', as the edge ships."""
    if compiled.pure_requested(environ):
        return "python"
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = os.path.join(sysconfig.get_paths()["include"], "Python.h")
    buildable = (shutil.which(compiler) and os.path.exists(headers)
                 and importlib.util.find_spec("Cython") is not None)
    return "compiled" if buildable else "python"


class ApiClient:
    PREFIX = "/api/v1"

    def __init__(self, client, token):
        self.client, self.token = client, token

    def as_(self, key):
        return ApiClient(self.client, key)

    def _call(self, method, path, **kwargs):
        headers = kwargs.pop("headers", {})
        if self.token is not None:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        return getattr(self.client, method)(self.PREFIX + path, headers=headers, **kwargs)

    def get(self, path, **kw):
        return self._call("get", path, **kw)

    def post(self, path, json=None, **kw):
        return self._call("post", path, json=json, **kw)

    def put(self, path, json=None, **kw):
        return self._call("put", path, json=json, **kw)

    def patch(self, path, json=None, **kw):
        return self._call("patch", path, json=json, **kw)

    def delete(self, path, **kw):
        return self._call("delete", path, **kw)

    # builders

    def ok(self, response, status=None):
        expected = status or (200, 201, 204)
        expected = expected if isinstance(expected, tuple) else (expected,)
        assert response.status_code in expected, (response.status_code, response.get_json())
        return response.get_json()

    def reseller(self, name="Reseller"):
        return self.ok(self.post("/resellers", {"name": name}), 201)

    def tenant(self, name="Acme", **fields):
        return self.ok(self.post("/tenants", {"name": name, **fields}), 201)

    def extension(self, trunk, number="101", name="Alice", **fields):
        return self.ok(self.post(f"/tenants/{trunk}/extensions",
                                 {"number": number, "name": name, **fields}), 201)

    def key(self, role, **fields):
        return self.ok(self.post("/api-keys", {"role": role, "name": f"{role} key", **fields}),
                       201)["key"]
