"""Forms of the customer page."""

from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import BooleanField, IntegerField, SelectField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

from app.metering.credits import MAX_TOKENS
from app.models.project import SHEDDING_TIERS


class DetailsForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(message="A name is required."), Length(max=256)])
    alias = StringField("Alias", validators=[Optional(), Length(max=256)])
    email = StringField("Email", validators=[Optional(), Length(max=320)])
    shedding_tier = SelectField("Shedding tier", choices=[SelectChoice(t, t) for t in SHEDDING_TIERS])
    allowed_regions = StringField("Allowed regions", description="Comma-separated; empty means any region.")
    blocked = BooleanField("Blocked")

    def __init__(self, *args, known_regions: frozenset[str] = frozenset(), **kwargs):
        super().__init__(*args, **kwargs)
        self.known_regions = known_regions

    def validate_email(self, field):
        if field.data and ("@" not in field.data or field.data.startswith("@") or field.data.endswith("@")):
            raise ValidationError("That is not an email address.")

    def validate_allowed_regions(self, field):
        unknown = [r for r in self.regions() if r not in self.known_regions]
        if unknown:
            known = ", ".join(sorted(self.known_regions)) or "none yet"
            raise ValidationError(f"Unknown region {unknown[0]!r}: the project's deployments are in {known}.")

    def regions(self) -> list[str]:
        return [r.strip() for r in (self.allowed_regions.data or "").split(",") if r.strip()]


class TokensForm(FlaskForm):
    mode = SelectField(
        "Change", choices=[SelectChoice("add", "Add tokens"), SelectChoice("set", "Set balance")]
    )
    amount = IntegerField(
        "Tokens",
        validators=[
            InputRequired(message="Enter a whole number of tokens."),
            NumberRange(min=-MAX_TOKENS, max=MAX_TOKENS),
        ],
    )
    reason = StringField("Reason", validators=[Optional(), Length(max=500)])

    def validate_amount(self, field):
        if self.mode.data == "set" and field.data is not None and field.data < 0:
            raise ValidationError("A balance cannot be set below 0.")
        if self.mode.data == "add" and field.data == 0:
            raise ValidationError("Adding 0 tokens changes nothing.")


class TierForm(FlaskForm):
    tier = SelectField("Usage tier", coerce=int)


class NewCustomerForm(FlaskForm):
    """A customer made by hand; the proxy makes the rest on their first call."""

    customer_id = StringField(
        "Customer id",
        validators=[DataRequired(message="A customer id is required."), Length(max=256)],
        description=Markup(
            "The id your app's calls name the customer by: the <code>X-Customer-Id</code> header,"
            " or the body's <code>customer.customer_id</code> or <code>user</code>."
        ),
    )
    name = StringField("Name", validators=[Optional(), Length(max=256)])
    email = StringField("Email", validators=[Optional(), Length(max=320)])
    tokens = IntegerField(
        "Initial tokens",
        validators=[Optional(), NumberRange(min=0, max=MAX_TOKENS, message="Enter 0 or more tokens.")],
        description="Empty: the project's initial tokens for new customers.",
    )
    tier = SelectField("Usage tier", coerce=int)

    validate_email = DetailsForm.validate_email


class TokensToCredit(IntegerField):
    """A whole number of tokens, or empty; anything else is refused in the label's words."""

    def process_formdata(self, valuelist):
        if valuelist and not valuelist[0].strip():  # left empty: no amount given
            self.data = None
            return
        try:
            super().process_formdata(valuelist)
        except ValueError as refused:
            raise ValueError("Tokens to credit: enter a whole number of tokens, like 5000.") from refused


class ApproveForm(FlaskForm):
    """Approve one customer: the tokens to credit (empty: the project's approval_tokens)."""

    NO_AMOUNT = "Tokens to credit: enter an amount (the project has no approval amount in its settings)."

    # Named apart from the other forms of the pages it is on (New customer's `tokens`).
    approve_tokens = TokensToCredit("Tokens to credit")

    def __init__(self, *args, approval_tokens: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.approval_tokens = approval_tokens
        if approval_tokens is not None:
            self.approve_tokens.description = (
                f"Empty: the project's approval amount, {approval_tokens:,} tokens."
            )

    def validate_approve_tokens(self, field):
        if field.process_errors:  # not a whole number: already said
            return
        if field.data is None and self.approval_tokens is None:
            raise ValidationError(self.NO_AMOUNT)
        if field.data is not None and not 1 <= field.data <= MAX_TOKENS:
            raise ValidationError(f"Tokens to credit: enter from 1 to {MAX_TOKENS:,} tokens.")


class BulkApproveForm(ApproveForm):
    """Approve the customers ticked in the approval queue, each with the same amount."""

    approve_ids = SelectMultipleField("Customers to approve", validate_choice=False)
