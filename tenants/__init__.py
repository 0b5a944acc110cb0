"""The Trunkline domain: models and services of the hosted PBX.

Nothing in this package knows about HTTP or Flask. Services are plain functions that take
a SQLAlchemy session and keyword arguments, commit once, and raise the errors of
:mod:`tenants.errors`.
"""
