"""What the models pages show: each model's price and where it comes from, its deployments' regions."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.metering.pricing import resolve_price, to_usd
from app.models.catalog import Model, ModelTierDefault
from app.models.project import Project

CENTS = Decimal("0.01")
SOURCES = {"config": "configured", "genai-prices": "genai-prices"}


@dataclass(frozen=True)
class PriceShown:
    source: str  # "configured", "genai-prices" or "unpriced"
    input_usd: str | None  # per million tokens, exact: "0.15"
    output_usd: str | None


@dataclass(frozen=True)
class Row:
    model: Model
    price: PriceShown
    regions: list[str]


def usd_text(nusd: int) -> str:
    """Exact USD with cents and no other trailing zeros ("0.60", "10.00", "0.075")."""
    exact = to_usd(nusd).normalize()
    shown = exact.quantize(CENTS) if int(exact.as_tuple().exponent) > -2 else exact
    return f"{shown:f}"


def price_shown(model: Model) -> PriceShown:
    """The price the proxy charges for this model: the same lookup as its snapshot makes."""
    price = resolve_price(model.input_nusd_per_mtok, model.output_nusd_per_mtok, model.name)
    if price is None:
        return PriceShown("unpriced", None, None)
    return PriceShown(
        SOURCES[price.source], usd_text(price.input_nusd_per_mtok), usd_text(price.output_nusd_per_mtok)
    )


def models_of(session: Session, project: Project) -> list[Model]:
    return list(
        session.scalars(
            select(Model)
            .where(Model.project_id == project.id)
            .options(selectinload(Model.deployments))
            .order_by(Model.name)
        )
    )


def rows(session: Session, project: Project) -> list[Row]:
    return [
        Row(m, price_shown(m), sorted({d.region for d in m.deployments})) for m in models_of(session, project)
    ]


def tier_defaults(session: Session, project: Project) -> dict[str, str]:
    """Model tier -> the name of its default model."""
    found = session.execute(
        select(ModelTierDefault.model_tier, Model.name)
        .join(Model, Model.id == ModelTierDefault.model_id)
        .where(ModelTierDefault.project_id == project.id)
    )
    return {model_tier: name for model_tier, name in found}
