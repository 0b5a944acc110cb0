"""Pieces every resource module uses."""

import marshmallow as ma
from flask_smorest import Blueprint as _Blueprint
from flask_smorest import Page
from sqlalchemy import func, select

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


class Blueprint(_Blueprint):
    DEFAULT_PAGINATION_PARAMETERS = {"page": 1, "page_size": 50, "max_page_size": 1000}

    def paginated(self):
        return self.paginate(SelectPage)


class Schema(ma.Schema):
    """Unknown fields are an error, never silently dropped."""

    class Meta:
        unknown = ma.RAISE
        ordered = True


def number_field(**kwargs):
    return ma.fields.String(validate=ma.validate.Regexp(r"^[0-9]{2,6}$",
                            error="must be 2 to 6 digits"), **kwargs)


TRUNK_NUMBER = ma.validate.Regexp(r"^[1-9][0-9]{4}$", error="must be five digits, 10000-99999")


class Enum(ma.fields.Enum):
    """Dumps plain strings too: the models store the enums' values."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is not None and not isinstance(value, self.enum):
            value = self.enum(value)
        return super()._serialize(value, attr, obj, **kwargs)
