"""The Integrations page's forms."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    FieldList,
    Form,
    FormField,
    IntegerField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    widgets,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from app.metering.credits import MAX_TOKENS
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


class PriceRow(Form):
    """One row of the price map; its tier choices are the project's tiers (set by the view)."""

    price_id = StringField("Stripe price id", validators=[Optional(), Length(max=255)])
    tokens = IntegerField(
        "Tokens", validators=[Optional(), NumberRange(min=0, max=MAX_TOKENS, message="0 or more tokens.")]
    )
    tier = SelectField("Tier", choices=[SelectChoice("", "no tier")])


class StripeForm(FlaskForm):
    webhook_secret = PasswordField(
        "Webhook signing secret",
        validators=[Optional(), Length(max=500)],
        description="whsec_… from the endpoint's page in Stripe's dashboard. "
        "Write-only: leave empty to keep the saved one.",
    )
    remove_webhook_secret = BooleanField("Remove the saved signing secret (every event is then refused)")
    api_key = PasswordField(
        "Stripe API key",
        validators=[Optional(), Length(max=500)],
        description="Reads each checkout session's line items for the price map: a restricted key (rk_…) "
        "with read access to Checkout Sessions is enough. Write-only: leave empty to keep the saved one.",
    )
    remove_api_key = BooleanField(
        "Remove the saved API key (only metadata.tollgate_* then says what was bought)"
    )
    prices = FieldList(FormField(PriceRow), min_entries=0)

    def with_tiers(self, keys: list[str]) -> StripeForm:
        for row in self.prices:
            row.tier.choices = [SelectChoice("", "no tier")] + [SelectChoice(key, key) for key in keys]
        return self

    def price_map(self) -> dict[str, dict] | None:
        """The rows as a price map (empty rows dropped); None, with the rows' errors, if a row is
        incomplete or repeats a price."""
        prices: dict[str, dict] = {}
        for row in self.prices:
            price_id = (row.price_id.data or "").strip()
            entry = {
                k: v
                for k, v in (("tokens", row.tokens.data), ("tier", row.tier.data or None))
                if v is not None
            }
            if not price_id:
                if entry:
                    row.price_id.errors = ["Give the Stripe price id of this row."]
                continue
            if price_id in prices:
                row.price_id.errors = ["This price is in the map already."]
            elif not entry.get("tokens") and not entry.get("tier"):
                row.price_id.errors = ["Give tokens (at least 1), a tier, or both."]
            prices[price_id] = entry
        return None if any(row.price_id.errors for row in self.prices) else prices
