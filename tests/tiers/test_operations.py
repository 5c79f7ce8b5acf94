"""Tier versions: create, edit while unlocked, clone, migrate, and refusals (issue 4, acceptance 4 and 8)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.customers.operations import migrate_customers
from app.db import now_utc
from app.errors import Invalid, NotFound
from app.extensions import db
from app.models import Event, UsageTier
from app.tiers.operations import TierLocked, clone_tier, create_tier, edit_tier, find_version
from app.tiers.spec import tier_spec
from tests.factories import World, assign

PRO = {
    "key": "pro",
    "name": "Pro",
    "period": "month",
    "limits": {"premium": {"calls": 10, "tokens": None}},
    "max_budget_usd": "12.5",
    "rpm_limit": 60,
}


def test_every_project_has_the_default_tier_as_its_default(world: World):
    tier = db.session.get(UsageTier, world.project.default_tier_id)
    assert (tier.key, tier.version, tier.name) == ("default", 1, "Default New Customer Tier")
    spec = tier_spec(tier)
    assert (
        spec["prepaid"] and spec["period"] == "none" and spec["limits"] == {} and spec["on_limit"] == "block"
    )
    assert spec["hard_cap"] and spec["default_reserve_tokens"] == 1024


def test_edit_unlocked_then_locked_after_first_assignment(world: World):
    tier = world.add_tier(PRO)
    edit_tier(db.session, tier, {"rpm_limit": 120, "limits": {"premium": {"calls": 20, "tokens": 5000}}})
    world.commit()
    assert tier.rpm_limit == 120 and tier.limits == {"premium": {"calls": 20, "tokens": 5000}}
    assert tier_spec(tier)["max_budget_usd"] == "12.500000000"
    world.give_customer("c1", 100)
    assign(world, "c1", tier)
    assert tier.locked
    with pytest.raises(TierLocked) as refused:
        edit_tier(db.session, tier, {"rpm_limit": 1})
    assert refused.value.code == "tier_locked"
    db.session.rollback()
    assert db.session.get(UsageTier, tier.id).rpm_limit == 120


def test_clone_makes_an_editable_next_version(world: World):
    v1 = world.add_tier(PRO)
    world.give_customer("c1", 100)
    assign(world, "c1", v1)
    v2 = clone_tier(db.session, v1)
    world.commit()
    assert (v2.key, v2.version, v2.locked) == ("pro", 2, False)
    assert tier_spec(v2) | {"version": 1, "locked": True} == tier_spec(v1)
    edit_tier(db.session, v2, {"limits": {"premium": {"calls": 99, "tokens": None}}})
    world.commit()
    assert find_version(db.session, world.project, "pro", 1).limits == {
        "premium": {"calls": 10, "tokens": None}
    }


def test_migrate_moves_only_the_chosen_customers_and_records_each(world: World):
    v1 = world.add_tier(PRO)
    for cid in ("a", "b", "c"):
        world.give_customer(cid, 100)
        assign(world, cid, v1)
    v2 = clone_tier(db.session, v1)
    world.commit()
    moved = migrate_customers(db.session, world.project, "pro", 1, 2, ["a", "c"], "tests", now_utc())
    world.commit()
    assert moved == 2
    assert {c: world.customer(c).tier_id for c in "abc"} == {"a": v2.id, "b": v1.id, "c": v2.id}
    changes = db.session.scalars(
        select(Event).where(
            Event.type == "customer.tier_changed", Event.data["to"]["version"].as_integer() == 2
        )
    ).all()
    assert sorted(e.customer_external_id for e in changes) == ["a", "c"]
    assert changes[0].data["from"] == {"key": "pro", "version": 1}
    with pytest.raises(NotFound):
        migrate_customers(db.session, world.project, "pro", 1, 2, ["a"], "tests", now_utc())  # a is on v2 now
    db.session.rollback()
    assert migrate_customers(db.session, world.project, "pro", 1, 2, None, "tests", now_utc()) == 1  # b


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"limits": {"premium": {"calls": -1}}}, "calls"),
        ({"limits": {"gold": {"calls": 1}}}, "limits"),
        ({"on_limit": "restrict"}, "restrict_to"),
        ({"period": "fortnight"}, "period"),
        ({"period": "30d\n"}, "period"),
        ({"max_budget_usd": "-5"}, "max_budget_usd"),
        ({"max_budget_usd": "NaN"}, "max_budget_usd"),
        ({"rpm_limit": 0}, "rpm_limit"),
        ({"rpm_limit": 2**40}, "rpm_limit"),  # past the column: refused, not a database error
        ({"replenish_mode": "double"}, "replenish_mode"),
        ({"hard_cap": "yes"}, "hard_cap"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_tier_input_is_refused_and_changes_nothing(world: World, change, field):
    before = db.session.scalar(select(func.count()).select_from(UsageTier))
    with pytest.raises(Invalid) as refused:
        create_tier(db.session, world.project, {**PRO, **change})
    assert refused.value.field == field, refused.value.message
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(UsageTier)) == before
    tier = world.add_tier(PRO)
    with pytest.raises(Invalid):
        edit_tier(db.session, tier, change)
    db.session.rollback()
    assert tier_spec(db.session.get(UsageTier, tier.id))["limits"] == PRO["limits"]


def test_migrate_refuses_bad_versions_and_changes_nothing(world: World):
    v1 = world.add_tier(PRO)
    world.give_customer("a", 100)
    assign(world, "a", v1)
    with pytest.raises(Invalid):
        migrate_customers(db.session, world.project, "pro", 1, 1, None, "tests", now_utc())
    with pytest.raises(NotFound):
        migrate_customers(db.session, world.project, "pro", 1, 7, None, "tests", now_utc())
    with pytest.raises(NotFound):
        migrate_customers(db.session, world.project, "nope", 1, 2, None, "tests", now_utc())
    db.session.rollback()
    assert world.customer("a").tier_id == v1.id
