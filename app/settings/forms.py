"""The project settings form (SPEC 10)."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, NumberRange, Optional, ValidationError

from app.errors import Invalid
from app.models.project import SHEDDING_LEVELS, SHEDDING_TIERS
from app.portal import origins

TOKENS = NumberRange(min=0, max=10**15, message="Enter 0 or more tokens.")


class SettingsForm(FlaskForm):
    new_customer_initial_tokens = IntegerField(
        "Initial tokens for new customers",
        validators=[InputRequired(message="Enter 0 or more tokens."), TOKENS],
        description="0: a new customer's calls are refused until you approve it (the approval queue).",
    )
    approval_tokens = IntegerField(
        "Approval amount (tokens)",
        validators=[
            Optional(),
            NumberRange(min=1, max=10**15, message="Enter 1 or more tokens, or leave it empty."),
        ],
        description="What Approve credits when no amount is typed. Empty: Approve asks for an amount.",
    )
    default_tier = SelectField("Default tier for new customers", coerce=int)
    default_shedding_tier = SelectField(
        "Default shedding tier", choices=[SelectChoice(t, t) for t in SHEDDING_TIERS]
    )
    default_allowed_regions = StringField(
        "Default allowed regions", description="Comma-separated; empty means any."
    )
    low_balance_tokens = IntegerField("Low-balance threshold (tokens)", validators=[Optional(), TOKENS])
    require_customer = BooleanField("Refuse calls that name no customer")
    shedding_level = SelectField(
        "Shedding level", choices=[SelectChoice(level, level) for level in SHEDDING_LEVELS]
    )
    capacity = IntegerField(
        "Capacity (calls in flight)", validators=[Optional(), NumberRange(min=1, max=10**7)]
    )
    auto_shedding = BooleanField("Shed automatically under load")
    portal_frame_origins = TextAreaField(
        "Sites that may embed the customer usage page",
        description="One origin a line, like https://app.example.com (https://*.example.com for its "
        "subdomains). Empty: no site may show the page in an iframe.",
    )

    def __init__(self, *args, known_regions: frozenset[str] = frozenset(), **kwargs):
        super().__init__(*args, **kwargs)
        self.known_regions = known_regions

    def regions(self) -> list[str]:
        return [r.strip() for r in (self.default_allowed_regions.data or "").split(",") if r.strip()]

    def validate_default_allowed_regions(self, field):
        unknown = [r for r in self.regions() if r not in self.known_regions]
        if unknown:
            known = ", ".join(sorted(self.known_regions)) or "none yet"
            raise ValidationError(f"Unknown region {unknown[0]!r}: the project's deployments are in {known}.")

    def frame_origins(self) -> list[str]:
        return (self.portal_frame_origins.data or "").replace(",", " ").split()

    def validate_portal_frame_origins(self, field):
        try:
            origins.check(self.frame_origins())
        except Invalid as refused:
            raise ValidationError(refused.message.removeprefix(f"{origins.FIELD}: ")) from None
