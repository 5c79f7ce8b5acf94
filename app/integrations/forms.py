"""The Integrations page's forms."""

from flask_wtf import FlaskForm
from wtforms import SelectMultipleField, StringField, widgets
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from app.models.event import EVENT_TYPES


class HookForm(FlaskForm):
    target_url = StringField(
        "Target URL",
        validators=[DataRequired(message="Give the URL to deliver to."), Length(max=2000)],
        description="http or https; deliveries are signed per Standard Webhooks with the secret shown once.",
    )
    events = SelectMultipleField(
        "Events",
        choices=[SelectChoice(t, t) for t in EVENT_TYPES],
        validators=[DataRequired(message="Choose at least one event type.")],
        widget=widgets.ListWidget(prefix_label=False),
        option_widget=widgets.CheckboxInput(),
    )


class LiteLLMForm(FlaskForm):
    litellm_webhook_url = StringField(
        "LiteLLM webhook URL",
        validators=[Optional(), Length(max=2000)],
        description="LiteLLM's spend_tracked and budget alerts for each customer call; empty: off "
        "(or WEBHOOK_URL, when the server has it).",
    )
