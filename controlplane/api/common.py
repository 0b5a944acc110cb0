"""Pieces every resource module uses."""

import json

import marshmallow as ma
from flask import abort, request
from flask_smorest import Blueprint as _Blueprint
from flask_smorest import Page
from sqlalchemy import func, select
from webargs.flaskparser import FlaskParser

from .. import database


class SelectPage(Page):
    """Pages through a SQLAlchemy select built by a service: LIMIT/OFFSET plus a count."""

    @property
    def items(self):
        params = self.page_params
        stmt = self.collection.limit(params.page_size).offset(params.first_item)
        return database.session().scalars(stmt).all()

    @property
    def item_count(self):
        counted = self.collection.order_by(None).subquery()
        return database.session().scalar(select(func.count()).select_from(counted))


# Row ids are 32-bit integers, other numbers (outbox versions) 64-bit; a larger one names
# nothing, and would not even fit a query.
MAX_ID, MAX_BIGINT = 2**31 - 1, 2**63 - 1


class _Parser(FlaskParser):
    def _raw_load_json(self, req):
        try:
            return super()._raw_load_json(req)
        except RecursionError:
            # json.loads recurses once per level: a body nested deeper than the stack is
            # invalid JSON to us (400), not a crash.
            raise json.JSONDecodeError("nested too deeply", "(request body)", 0) from None


class _PaginationParser(FlaskParser):
    def parse(self, argmap, req=None, **kwargs):
        kwargs.setdefault("validate", _page_within_reach)
        return super().parse(argmap, req, **kwargs)


def _page_within_reach(params):
    # flask-smorest bounds page_size but not page: page * page_size would become an OFFSET
    # wider than the databases' 64-bit integers.
    if params.page > MAX_ID:
        raise ma.ValidationError({"page": [f"must be at most {MAX_ID}"]})


class Blueprint(_Blueprint):
    ARGUMENTS_PARSER = _Parser()
    PAGINATION_ARGUMENTS_PARSER = _PaginationParser()
    DEFAULT_PAGINATION_PARAMETERS = {"page": 1, "page_size": 50, "max_page_size": 1000}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.before_request(_reject_unstorable_path_values)

    def paginated(self):
        return self.paginate(SelectPage)


def _reject_unstorable_path_values():
    """A path segment with a NUL, or a number wider than its column, names nothing (and
    would not even fit a query: PostgreSQL refuses NULs, both refuse huge integers)."""
    for name, value in (request.view_args or {}).items():
        widest = MAX_ID if name.endswith("_id") else MAX_BIGINT
        if (isinstance(value, str) and "\x00" in value) or (
            isinstance(value, int) and not 0 <= value <= widest
        ):
            abort(404)


def _unstorable(text):
    """Why no database would take this string: NULs, lone surrogates (JSON allows both)."""
    if "\x00" in text:
        return "must not contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text"
    return None


class Schema(ma.Schema):
    """Unknown fields are an error, never silently dropped."""

    class Meta:
        unknown = ma.RAISE
        ordered = True

    @ma.pre_load
    def _reject_unstorable_strings(self, data, **_kwargs):
        if isinstance(data, dict):
            errors = {key: [_unstorable(value)] for key, value in data.items()
                      if isinstance(value, str) and _unstorable(value)}
            if errors:
                raise ma.ValidationError(errors)
        return data


class Regexp(ma.validate.Regexp):
    """Matches the whole value: `re.match` with `$` also takes a trailing newline, and
    "101\n" would then be stored as an extension number."""

    def __call__(self, value):
        if self.regex.fullmatch(value) is None:
            raise ma.ValidationError(self._format_error(value))
        return value


ID = ma.validate.Range(1, MAX_ID, error="names nothing")


def number_field(**kwargs):
    return ma.fields.String(validate=Regexp(r"^[0-9]{2,6}$",
                            error="must be 2 to 6 digits"), **kwargs)


TRUNK_NUMBER = Regexp(r"^[1-9][0-9]{4}$", error="must be five digits, 10000-99999")


class Enum(ma.fields.Enum):
    """Dumps plain strings too: the models store the enums' values."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is not None and not isinstance(value, self.enum):
            value = self.enum(value)
        return super()._serialize(value, attr, obj, **kwargs)
