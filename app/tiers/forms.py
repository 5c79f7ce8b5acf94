"""Forms of the usage tiers pages."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, TextAreaField
from wtforms.validators import InputRequired, NumberRange, Optional


class MigrateForm(FlaskForm):
    from_version = IntegerField(
        "From version", validators=[InputRequired(), NumberRange(min=1, max=2**31 - 1)]
    )
    to_version = IntegerField("To version", validators=[InputRequired(), NumberRange(min=1, max=2**31 - 1)])
    customer_ids = TextAreaField(
        "Only these customers",
        validators=[Optional()],
        description="One customer id per line; leave empty to move everyone on the version.",
    )
    confirm = BooleanField("Move them")

    def chosen(self) -> list[str] | None:
        ids = [line.strip() for line in (self.customer_ids.data or "").splitlines() if line.strip()]
        return ids or None
