"""Forms of the admin users page."""

from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from app.models.admin_user import ROLES

ROLE_CHOICES = [SelectChoice(role, role) for role in ROLES]


class AddAdminForm(FlaskForm):
    email = StringField(
        "Email", validators=[DataRequired(message="Enter an email address."), Length(max=320)]
    )
    password = PasswordField(
        "Password", validators=[Length(min=8, max=1024, message="At least 8 characters.")]
    )
    role = SelectField("Role", choices=ROLE_CHOICES, default="viewer")  # least access unless chosen


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)
