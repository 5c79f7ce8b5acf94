"""Every aggregate, imported so that Alembic and create_app see the whole metadata."""

from app.models.admin_user import AdminUser, SignInAttempt
from app.models.api_key import ApiKey
from app.models.catalog import Deployment, Model, ModelTierDefault, SheddingState
from app.models.customer import Customer
from app.models.event import Delivery, DeliveryAttempt, Event, Hook, HookEventType
from app.models.idempotency import IdempotencyRecord, SchedulerLease
from app.models.ledger import LedgerEntry
from app.models.project import ConfigStamp, Project
from app.models.purchase import ChargeRefund, InboundWebhook, Purchase
from app.models.tier import UsageTier
from app.models.usage import PeriodCounter, RefusalCount, UsageRecord

__all__ = [
    "AdminUser",
    "ApiKey",
    "ChargeRefund",
    "ConfigStamp",
    "Customer",
    "Delivery",
    "DeliveryAttempt",
    "Deployment",
    "Event",
    "Hook",
    "HookEventType",
    "IdempotencyRecord",
    "InboundWebhook",
    "LedgerEntry",
    "Model",
    "ModelTierDefault",
    "PeriodCounter",
    "Project",
    "Purchase",
    "RefusalCount",
    "SchedulerLease",
    "SheddingState",
    "SignInAttempt",
    "UsageRecord",
    "UsageTier",
]
