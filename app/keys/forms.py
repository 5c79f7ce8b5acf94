"""The API key form."""

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length


class KeyForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(message="Give the key a name."), Length(max=200)])
    scope = SelectField(
        "Scope",
        choices=[
            SelectChoice("proxy", "proxy: model calls only"),
            SelectChoice("admin", "admin: also the management API"),
        ],
    )
