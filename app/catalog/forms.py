"""Forms of the models pages.

They collect what was typed into the spec dicts the config file uses; the domain
(`app.catalog.operations`) stays the one judge of what is valid, the forms only catch what HTML
can send wrong. The model page holds one deployment form per deployment, told apart by a prefix;
CSRFProtect checks every POST of the app, so these forms leave the token to it (a prefixed form
would otherwise want a prefixed token field).
"""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import ValidationError

from app.models.catalog import PROVIDERS
from app.models.tier import MODEL_TIERS

TIER_CHOICES = [SelectChoice(t, t.replace("_", " ")) for t in MODEL_TIERS]


def _text(value: str | None) -> str:
    return (value or "").strip()


class _Form(FlaskForm):
    class Meta:
        csrf = False  # CSRFProtect checks the request (see above)


class ModelForm(_Form):
    model_tier = SelectField("Model tier", choices=TIER_CHOICES)
    input_per_mtok = StringField(
        "Input price (USD per 1M tokens)", description="Leave both prices empty to use genai-prices' price."
    )
    output_per_mtok = StringField("Output price (USD per 1M tokens)")

    def validate_output_per_mtok(self, field: StringField) -> None:
        if bool(_text(self.input_per_mtok.data)) != bool(_text(field.data)):
            raise ValidationError("Give both prices, or leave both empty to use genai-prices' price.")

    def spec(self) -> dict[str, Any]:
        given = _text(self.input_per_mtok.data), _text(self.output_per_mtok.data)
        price = dict(zip(("input_per_mtok", "output_per_mtok"), given, strict=True)) if any(given) else None
        return {"model_tier": self.model_tier.data, "price": price}


class NewModelForm(ModelForm):
    name = StringField("Name", description="What clients send as “model”, e.g. gpt-4o-mini.")

    def spec(self) -> dict[str, Any]:
        return {"name": _text(self.name.data), **super().spec()}


class DeploymentForm(_Form):
    provider = SelectField("Provider", choices=[SelectChoice(p, p) for p in PROVIDERS], default="openai")
    base_url = StringField(
        "Base URL",
        description="e.g. https://api.openai.com/v1 (anthropic: https://api.anthropic.com); empty for mock.",
    )
    api_key = PasswordField("API key")
    remove_api_key = BooleanField("Remove the stored key")
    api_version = StringField(
        "API version",
        description="Azure's api-version, or anthropic's anthropic-version; empty for the default.",
    )
    model = StringField("Upstream model", description="The model name (Azure: deployment name) upstream.")
    region = StringField("Region", default="us")
    weight = IntegerField("Weight", default=1)
    timeout_s = IntegerField("Timeout (seconds)", default=600)
    enabled = BooleanField("Enabled", default=True)

    def validate_remove_api_key(self, field: BooleanField) -> None:
        if field.data and self.api_key.data:
            raise ValidationError("Either type a new key or remove the stored one, not both.")

    def spec(self) -> dict[str, Any]:
        spec = {
            "provider": self.provider.data,
            "base_url": _text(self.base_url.data),
            "model": _text(self.model.data),
            "region": _text(self.region.data),
            "api_version": _text(self.api_version.data) or None,
            "weight": self.weight.data,
            "timeout_s": self.timeout_s.data,
            "enabled": self.enabled.data,
        }
        if self.remove_api_key.data:
            spec["api_key"] = None
        elif self.api_key.data:
            spec["api_key"] = self.api_key.data
        return spec


class TierDefaultsForm(_Form):
    """One select per model tier (fields added below); the choices are the project's models."""

    def chosen(self) -> dict[str, str | None]:
        return {tier: self[tier].data or None for tier in MODEL_TIERS}


for _tier in MODEL_TIERS:
    setattr(TierDefaultsForm, _tier, SelectField(f"Default {_tier.replace('_', ' ')} model"))


class DeleteForm(_Form):
    confirm = BooleanField("Yes, delete this model and its deployments")

    def validate_confirm(self, field: BooleanField) -> None:
        if not field.data:
            raise ValidationError("Tick the box to confirm.")
