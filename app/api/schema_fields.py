"""Marshmallow fields the API needs beyond marshmallow's own."""

from __future__ import annotations

from marshmallow import ValidationError, fields


class StrictBoolean(fields.Boolean):
    """true or false only: marshmallow's Boolean would read "yes", "on" or 1 as true."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise ValidationError("must be true or false")
        return value
