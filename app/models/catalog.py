"""The model catalog: public model names, their prices, and the deployments that serve them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, UTCDateTime, now_utc

PROVIDERS = ("openai", "azure", "anthropic", "mock")


class Model(Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    model_tier: Mapped[str] = mapped_column(String(16), default="standard")
    # nano-USD per million tokens; null = take the genai-prices price, else unpriced.
    input_nusd_per_mtok: Mapped[int | None] = mapped_column(BigInteger)
    output_nusd_per_mtok: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    deployments: Mapped[list[Deployment]] = relationship(
        back_populates="model", cascade="all, delete-orphan", order_by="Deployment.id"
    )


class Deployment(Base):
    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(16))
    base_url: Mapped[str] = mapped_column(Text, default="")
    api_key: Mapped[str | None] = mapped_column(Text)  # encrypted at rest
    api_version: Mapped[str | None] = mapped_column(String(32))
    upstream_model: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(32), default="us")
    weight: Mapped[int] = mapped_column(Integer, default=1)
    timeout_s: Mapped[int] = mapped_column(Integer, default=600)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    model: Mapped[Model] = relationship(back_populates="deployments")


class ModelTierDefault(Base):
    """The project's default model per model tier: the target of a tier's `restrict`."""

    __tablename__ = "model_tier_defaults"
    __table_args__ = (UniqueConstraint("project_id", "model_tier"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    model_tier: Mapped[str] = mapped_column(String(16))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))


class SheddingState(Base):
    """A model's effective shedding level as last announced (`shedding.changed`, SPEC 7.1, 8): the
    processes that see it change race on this row, so each change is announced once."""

    __tablename__ = "shedding_states"

    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(16), default="off")
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
