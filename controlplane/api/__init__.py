"""The REST API under /api/v1: one module per resource, each a Flask-Smorest Blueprint."""

from . import (
    api_keys, audit, bans, edge_feed, edges, extensions, queues, resellers, ring_groups, tenants,
    trunks,
)

PREFIX = "/api/v1"


def register(api):
    for module in (resellers, api_keys, tenants, trunks, extensions, ring_groups, queues, audit,
                   bans, edges, edge_feed):
        api.register_blueprint(module.blp, url_prefix=PREFIX + module.URL)
