"""Forms of the usage tiers pages.

The version form collects SPEC 4 fields into the same spec dict the API takes; the domain
(`tier_values`) stays the one judge of what is valid, the form only catches what HTML can send wrong.
"""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    Form,
    FormField,
    IntegerField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

from app.metering.pricing import usd_str
from app.models.tier import ANCHORS, MODEL_TIERS, UsageTier
from app.tiers.spec import BIG, SMALL, tier_spec


class MigrateForm(FlaskForm):
    """Who moves from which version to which; the view lists the tier's versions as the choices."""

    # Not checked against the choices here: a version that is not (or no longer) there is the
    # domain's to refuse, in the same words as /api.
    from_version = SelectField(
        "From version", coerce=int, validate_choice=False, validators=[InputRequired("Choose a version.")]
    )
    to_version = SelectField(
        "To version", coerce=int, validate_choice=False, validators=[InputRequired("Choose a version.")]
    )
    customer_ids = TextAreaField(
        "Only these customers",
        validators=[Optional(), Length(max=200_000)],
        description="One customer id per line; leave empty to move everyone on the version.",
    )
    confirm = BooleanField("Move them")

    def with_versions(self, versions: list[UsageTier], counts: dict[int, int], default_id: int | None):
        """Each version as a choice, with its customer count and whether new customers start on it."""
        choices = [
            SelectChoice(v.version, _version_choice(v, counts.get(v.id, 0), v.id == default_id))
            for v in versions
        ]
        self.from_version.choices = choices
        self.to_version.choices = choices
        return self

    def chosen(self) -> list[str] | None:
        ids = [line.strip() for line in (self.customer_ids.data or "").splitlines() if line.strip()]
        return ids or None


def _version_choice(tier: UsageTier, customers: int, default: bool) -> str:
    text = f"v{tier.version} · {tier.name} · {customers:,} customer{'' if customers == 1 else 's'}"
    return text + (" · default" if default else "")


def _count(label: str, minimum: int = 0, maximum: int = BIG, **kwargs) -> IntegerField:
    message = f"Enter a whole number from {minimum:,}, or leave it empty."
    return IntegerField(
        label, validators=[Optional(), NumberRange(min=minimum, max=maximum, message=message)], **kwargs
    )


class LimitRow(Form):
    """One model tier's limits; empty means unlimited."""

    calls = _count("Calls")
    tokens = _count("Tokens")


# One row per model tier, in MODEL_TIERS order; inputs are named limits-<model tier>-calls|tokens.
LimitRows = type(
    "LimitRows", (Form,), {tier: FormField(LimitRow, label=tier.replace("_", " ")) for tier in MODEL_TIERS}
)


def _choices(options: tuple[str, ...], empty: str | None = None) -> list[SelectChoice]:
    head = [SelectChoice("", empty)] if empty is not None else []
    return head + [SelectChoice(option, option) for option in options]


class TierVersionForm(FlaskForm):
    # Refusals about two fields at once, in this form's words (app/form_errors.py swaps the rest).
    refusal_words = {
        "replenish_tokens needs a period": "Tokens per replenishment needs a replenishment period: with "
        "period “none” nothing is ever replenished. Set a period (day, month, 30d …) or clear the tokens.",
        "on_limit restrict needs restrict_to": "Choose the model tier to restrict to: “When a limit is "
        "reached” is set to restrict.",
        "restrict_to is used only with on_limit restrict": "“Restrict to” is used only when “When a limit "
        "is reached” is restrict: set it to “—”, or choose restrict.",
        "soft_budget_usd must not be above max_budget_usd": "Soft budget per period (USD) must not be above "
        "the budget per period (USD).",
    }

    key = StringField(
        "Key",
        validators=[DataRequired(message="A key is required."), Length(max=64)],
        description="Lower-case letters, digits, - and _. It cannot change later.",
    )
    name = StringField("Name", validators=[DataRequired(message="A name is required."), Length(max=200)])
    description = TextAreaField("Description", validators=[Optional(), Length(max=2000)])
    prepaid = BooleanField("Prepaid: calls draw down the token balance and stop at 0", default=True)
    period = StringField(
        "Period",
        default="none",
        validators=[DataRequired(message="A period is required: none, month, 30d …")],
        description="none, hour, day, week, month, year, or a length such as 30d, 12h, 1mo.",
    )
    anchor = SelectField(
        "Anchor",
        choices=_choices(ANCHORS, "The period's own (calendar units: calendar; lengths: assignment)"),
    )
    replenish_tokens = _count(
        "Tokens per replenishment", description="Given back each period by “Replenish by”; empty: none."
    )
    replenish_mode = SelectField(
        "Replenish by",
        choices=[SelectChoice("reset", "reset: set the balance"), SelectChoice("add", "add: add, up to max")],
    )
    max_balance = _count("Max balance", description="Caps an add replenishment; empty: no cap.")
    limits = FormField(LimitRows, label="Limits per model tier")
    on_limit = SelectField(
        "When a limit is reached",
        choices=[
            SelectChoice("block", "block the call"),
            SelectChoice("allow", "allow it and track the overage"),
            SelectChoice("restrict", "restrict to a cheaper model tier"),
        ],
    )
    restrict_to = SelectField("Restrict to", choices=_choices(MODEL_TIERS, "—"))
    max_budget_usd = StringField("Budget per period (USD)", validators=[Optional(), Length(max=40)])
    soft_budget_usd = StringField(
        "Soft budget per period (USD)",
        validators=[Optional(), Length(max=40)],
        description="Crossing it sends an event; nothing is blocked.",
    )
    model_budgets_usd = TextAreaField(
        "Budgets per model (USD)",
        validators=[Optional(), Length(max=20_000)],
        description="One “model = USD” per line, e.g. gpt-4o = 25.00",
    )
    rpm_limit = _count("Requests per minute", minimum=1, maximum=SMALL)
    tpm_limit = _count("Tokens per minute", minimum=1)
    max_parallel_requests = _count("Parallel requests", minimum=1, maximum=SMALL)
    default_reserve_tokens = IntegerField(
        "Completion tokens reserved when a call gives no max_tokens",
        default=1024,
        validators=[
            InputRequired(message="Enter a whole number of tokens."),
            NumberRange(min=1, max=SMALL, message=f"Enter a whole number from 1 to {SMALL:,}."),
        ],
    )
    hard_cap = BooleanField(
        "Hard cap: lower max_tokens to what the balance, limits and budgets still allow", default=True
    )

    def validate_model_budgets_usd(self, field) -> None:
        self.model_budgets()  # raises ValidationError on the first malformed line

    def model_budgets(self) -> dict[str, str]:
        budgets: dict[str, str] = {}
        for number, line in enumerate((self.model_budgets_usd.data or "").splitlines(), start=1):
            if not line.strip():
                continue
            model, sep, usd = line.partition("=")
            if not sep or not model.strip() or not usd.strip():
                raise ValidationError(f"Line {number}: write it as “model = USD”.")
            if model.strip() in budgets:
                raise ValidationError(f"Line {number}: {model.strip()} is listed twice.")
            budgets[model.strip()] = usd.strip()
        return budgets

    def spec(self) -> dict[str, Any]:
        """The SPEC 4 fields as the API would receive them (money stays text for the domain to parse)."""
        spec: dict[str, Any] = {
            name: getattr(self, name).data
            for name in (
                "key",
                "name",
                "description",
                "prepaid",
                "period",
                "replenish_tokens",
                "replenish_mode",
                "max_balance",
                "on_limit",
                "rpm_limit",
                "tpm_limit",
                "max_parallel_requests",
                "default_reserve_tokens",
                "hard_cap",
            )
        }
        spec["period"] = spec["period"].strip()
        spec["anchor"] = self.anchor.data or None
        spec["restrict_to"] = self.restrict_to.data or None
        spec["max_budget_usd"] = (self.max_budget_usd.data or "").strip() or None
        spec["soft_budget_usd"] = (self.soft_budget_usd.data or "").strip() or None
        spec["model_budgets_usd"] = self.model_budgets()
        spec["limits"] = {
            tier: {"calls": row["calls"], "tokens": row["tokens"]}
            for tier, row in self.limits.data.items()
            if row["calls"] is not None or row["tokens"] is not None
        }
        if spec["anchor"] is None:
            del spec["anchor"]  # the domain picks the period's default anchor
        return spec


def _usd_text(nusd: int | None) -> str | None:
    """Dollars as a person writes them: 40.50, 0.000000001 (exact, never rounded)."""
    if nusd is None:
        return None
    whole, _, fraction = usd_str(nusd).partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


def form_data(tier: UsageTier) -> dict[str, Any]:
    """A stored version as the form's initial data: its SPEC 4 form, with money as people write it."""
    data = {k: v for k, v in tier_spec(tier).items() if k not in ("version", "locked")}
    data["limits"] = {t: data["limits"].get(t) or {"calls": None, "tokens": None} for t in MODEL_TIERS}
    data["restrict_to"] = tier.restrict_to or ""
    data["max_budget_usd"] = _usd_text(tier.max_budget_nusd)
    data["soft_budget_usd"] = _usd_text(tier.soft_budget_nusd)
    data["model_budgets_usd"] = "\n".join(
        f"{model} = {_usd_text(nusd)}" for model, nusd in (tier.model_budgets_nusd or {}).items()
    )
    return data
