"""Sign-in form."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length


class SignInForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    remember = BooleanField("Keep me signed in")


class PasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired(message="Enter your password.")])
    new = PasswordField(
        "New password", validators=[Length(min=8, max=1024, message="At least 8 characters.")]
    )
    confirm = PasswordField(
        "New password again", validators=[EqualTo("new", message="The two new passwords differ.")]
    )
