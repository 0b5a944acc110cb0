"""The Trunkline control plane: the HTTP API (Flask + Flask-Smorest), auth and the CLI."""

from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from flask_smorest import Api

from . import auth, database, errors
from .config import load_config


def create_app(test_config=None):
    app = Flask(__name__)
    app.config.update(load_config())
    app.config.update(
        API_TITLE="Trunkline",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        JSON_SORT_KEYS=False,
    )
    if test_config:
        app.config.update(test_config)
    app.json.sort_keys = False

    database.init_app(app)
    api = Api(app, spec_kwargs={
        "marshmallow_plugin": MarshmallowPlugin(schema_name_resolver=_schema_name),
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    })
    errors.init_app(app, api)
    auth.init_app(app)

    from .api import register

    register(api)
    return app


def _schema_name(schema):
    """OpenAPI component names: ExtensionSchema -> Extension, a partial one -> ExtensionPatch."""
    cls = schema if isinstance(schema, type) else type(schema)
    name = cls.__name__.removesuffix("Schema")
    if not isinstance(schema, type) and schema.partial:
        name += "Patch"
    return name
