"""Forms of the usage tiers pages.

The version form collects SPEC 4 fields into the same spec dict the API takes. It checks every field
it can on its own, in plain words, so that one submit lists every problem (an operator should not
discover them one Save at a time); the domain (`tier_values`) stays the final judge, in the API's
words, for whatever only it can know (a key already taken).
"""

from __future__ import annotations

import re
from decimal import Decimal
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

from app.metering import periods
from app.metering.pricing import MoneyError, to_nusd, usd_str
from app.models.tier import ANCHORS, MODEL_TIERS, UsageTier
from app.tiers.spec import BIG, KEY, SMALL, tier_spec


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
    # How many the preview showed: a move of everyone on a version checks it still is that many.
    previewed = IntegerField(validators=[Optional(), NumberRange(min=0)])

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


# Rules about two fields at once, in this form's words: the form's own checks say them, and so does
# a domain refusal of the same rule (app/form_errors.py swaps the code names of any other).
NO_PERIOD = (
    "Tokens per replenishment needs a replenishment period: with period “none” nothing is ever "
    "replenished. Set a period (day, month, 30d …) or clear the tokens."
)
NO_RESTRICT_TO = "Choose the model tier to restrict to: “When a limit is reached” is set to restrict."
NOT_RESTRICTING = (
    "“Restrict to” is used only when “When a limit is reached” is restrict: set it to “—”, or choose "
    "restrict."
)
SOFT_ABOVE = "Soft budget per period (USD) must not be above the budget per period (USD)."

PERIOD_FORMS = "Enter a period such as month, week, 30d or 12h (or none: limits never reset)."
# A length as people write it: "30 days", "2 weeks", "every 12 hours", "3 mo".
TYPED_LENGTH = re.compile(r"(?:every\s+)?([0-9]{1,9})\s*([a-z]+)")  # past 9 digits no period fits
# Unit words → the period grammar's unit and how many of it one makes (it has no weeks or years).
UNIT_WORDS = {
    "s": ("s", 1), "sec": ("s", 1), "second": ("s", 1),
    "m": ("m", 1), "min": ("m", 1), "minute": ("m", 1),
    "h": ("h", 1), "hr": ("h", 1), "hour": ("h", 1),
    "d": ("d", 1), "day": ("d", 1),
    "w": ("d", 7), "wk": ("d", 7), "week": ("d", 7),
    "mo": ("mo", 1), "month": ("mo", 1),
    "y": ("mo", 12), "yr": ("mo", 12), "year": ("mo", 12),
}  # fmt: skip
# "monthly" is the calendar month, as the period "month" is.
CALENDAR_WORDS = {"hourly": "hour", "daily": "day", "weekly": "week", "monthly": "month", "yearly": "year"}


def typed_period(text: str) -> str:
    """The period grammar's spelling of what was typed ("30 days" → 30d, "Monthly" → month), or
    ValidationError naming the accepted forms."""
    if re.fullmatch(r"\s*(?:every\s+)?[0-9]+\s*M\s*", text):  # 3M: months to some, minutes to the grammar
        raise ValidationError("Enter “3mo” for three months or “3m” for three minutes: “M” is either.")
    typed = " ".join(text.lower().split())
    typed = CALENDAR_WORDS.get(typed, typed)
    if typed == periods.NONE or typed in periods.CALENDAR_UNITS:
        return typed
    match = TYPED_LENGTH.fullmatch(typed)
    if match is None:
        raise ValidationError(PERIOD_FORMS)
    count, word = int(match.group(1)), match.group(2)
    if word not in UNIT_WORDS and len(word) > 2 and word.endswith("s"):
        word = word[:-1]  # "days", "hrs"; never "ms" (milliseconds, not minutes)
    if word not in UNIT_WORDS:
        raise ValidationError(PERIOD_FORMS)
    if count == 1 and word in periods.CALENDAR_UNITS:
        # "1 week": the calendar week (from Monday), or 7 days from when the customer joined?
        unit, size = UNIT_WORDS[word]
        raise ValidationError(
            f"Enter “{word}” for the calendar {word}, or “{size}{unit}” for a {word} counted from when "
            "the customer joined."
        )
    unit, size = UNIT_WORDS[word]
    if not 1 <= count * size <= periods.MAX_COUNT:
        raise ValidationError(f"Enter a length from 1 to {periods.MAX_COUNT:,} of its unit, such as 30d.")
    return f"{count * size}{unit}"


DOLLARS = "Enter an amount in dollars, like 25 or 9.99."
AMOUNT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def typed_dollars(text: str) -> str:
    """An amount as people write it ("25", "9.99", "$25", "25 USD") in the API's form ("25"), or
    ValidationError in plain words."""
    typed = re.sub(r"(?i)\s*usd$", "", text.strip()).replace("$", "", 1).strip()
    if not AMOUNT.fullmatch(typed):
        raise ValidationError(DOLLARS)
    if typed.startswith("-"):
        raise ValidationError("Enter an amount of 0 or more, like 25 or 9.99.")
    try:
        to_nusd(typed)
    except MoneyError:
        if -Decimal(typed).as_tuple().exponent > 9:  # type: ignore[operator]
            raise ValidationError("Enter at most 9 decimals: 0.000000001 is the smallest amount.") from None
        raise ValidationError(f"Enter an amount below ${(2**63 - 1) // 10**9:,}.") from None
    return typed


class TierVersionForm(FlaskForm):
    # Domain refusals of the rules the form checks itself, said as the form says them.
    refusal_words = {
        "replenish_tokens needs a period": NO_PERIOD,
        "on_limit restrict needs restrict_to": NO_RESTRICT_TO,
        "restrict_to is used only with on_limit restrict": NOT_RESTRICTING,
        "soft_budget_usd must not be above max_budget_usd": SOFT_ABOVE,
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
        description="none, hour, day, week, month or year (calendar), or a length such as 30d, 12h or "
        "3mo (“30 days” works too).",
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

    def validate_key(self, field) -> None:
        if not KEY.match(field.data):
            raise ValidationError(
                "Use lower-case letters, digits, - and _ only (up to 64), like growth or pro-2."
            )

    def validate_period(self, field) -> None:
        field.data = typed_period(field.data)
        if field.data == periods.NONE and self.replenish_tokens.data is not None:
            raise ValidationError(NO_PERIOD)

    def validate_restrict_to(self, field) -> None:
        if self.on_limit.data == "restrict" and not field.data:
            raise ValidationError(NO_RESTRICT_TO)
        if self.on_limit.data != "restrict" and field.data:
            raise ValidationError(NOT_RESTRICTING)

    def validate_max_budget_usd(self, field) -> None:
        field.data = typed_dollars(field.data)

    def validate_soft_budget_usd(self, field) -> None:
        field.data = typed_dollars(field.data)
        try:
            budget = typed_dollars(self.max_budget_usd.data or "")
        except ValidationError:
            return  # no budget, or one that is wrong itself (said next to it)
        if to_nusd(field.data) > to_nusd(budget):
            raise ValidationError(SOFT_ABOVE)

    def validate_model_budgets_usd(self, field) -> None:
        field.errors.extend(self._budget_lines()[1])  # every bad line at once, not the first

    def model_budgets(self) -> dict[str, str]:
        return self._budget_lines()[0]

    def _budget_lines(self) -> tuple[dict[str, str], list[str]]:
        """The “model = USD” lines as {model: USD}, and what is wrong with each line that is not."""
        budgets: dict[str, str] = {}
        wrong: list[str] = []
        for number, line in enumerate((self.model_budgets_usd.data or "").splitlines(), start=1):
            if not line.strip():
                continue
            model, sep, usd = (part.strip() for part in line.partition("="))
            try:
                if not sep or not model or not usd:
                    raise ValidationError("write it as “model = USD”, like gpt-4o = 25.")
                if model in budgets:
                    raise ValidationError(f"{model} is listed twice.")
                budgets[model] = typed_dollars(usd)
            except ValidationError as problem:
                text = str(problem)  # mid-sentence: "Line 2: enter an amount…", but a model keeps its case
                wrong.append(f"Line {number}: {'e' + text[1:] if text.startswith('Enter') else text}")
        return budgets, wrong

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
        spec["max_budget_usd"] = (self.max_budget_usd.data or "").strip() or None  # as validated
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
