"""Forms of the projects page."""

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length


class ProjectForm(FlaskForm):
    slug = StringField(
        "Slug",
        validators=[DataRequired(message="A slug is required."), Length(max=63)],
        description="Lower-case letters, digits and dashes; used in the config file. It cannot change.",
    )
    name = StringField("Name", validators=[DataRequired(message="A name is required."), Length(max=200)])


class RenameForm(FlaskForm):
    name = StringField("New name", validators=[DataRequired(message="A name is required."), Length(max=200)])
