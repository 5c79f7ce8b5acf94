"""Every page of the admin at a desktop and a phone width (issue 16, acceptance 4).

The pages come from the app's own url_map: every GET rule of a browser blueprint, its path
arguments filled from a seeded project (customers, tiers, models, a webhook, a Stripe event…). A
rule added later with arguments this file cannot fill fails the test by name, so no page goes
unmeasured. Each page, signed in as the owner and again as a viewer (read-only forms), at
1280 x 900 and 375 x 812: no sideways scroll of the document (the widest elements are named when
there is), no console error, and a full-page screenshot in TOLLGATE_SCREENSHOTS (default
build/screenshots/, named <who>-<endpoint>[-<variant>]-<desktop|phone>.png), whose path the run
prints. The sign-in page, an error page and, once the `portal` blueprint exists, a customer's usage
page are measured signed out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests
from flask import Flask
from sqlalchemy import select

from app.cli import add_admin
from app.customers.operations import migrate_customers
from app.db import now_utc
from app.events.hooks import create_hook
from app.extensions import db
from app.integrations.operations import configure_stripe
from app.keys.operations import configure_key, create_key
from app.models.catalog import Model
from app.projects.operations import create_project
from app.tiers.operations import clone_tier
from tests.browser.conftest import sign_in
from tests.factories import World, assign, chat
from tests.integrations.conftest import API_KEY, PACK, SECRET, Stripe, checkout_session, event

try:
    from playwright.sync_api import Page
except ImportError as missing:  # fail loudly: the browser tests never skip
    raise ImportError(
        "Playwright for Python is not installed: run `.venv/bin/pip install -e '.[dev]'`"
    ) from missing

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("TOLLGATE_SCREENSHOTS") or ROOT / "build" / "screenshots")
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 375, "height": 812}}
# Blueprints that answer programs, not people: their GET rules are not admin pages.
MACHINE_BLUEPRINTS = ("api", "litellm", "monitoring", "v1", "stripe_webhook")
# Pages that are one rule but several screens: the customer page's tabs.
VARIANTS = {
    "customers.detail": [{"tab": t} for t in ("details", "usage", "ledger", "requests")],
    # The list as it is, the approval queue (initech), and the customers refused in the last 24 h.
    "customers.index": [{}, {"awaiting": 1}, {"refused": 1}],
    "dashboard.index": [{"range": r} for r in ("24h", "7d", "30d")],
}
VIEWER, VIEWER_PASSWORD = "viewer.with.a.long.address@subsidiary.example.com", "another password"
LONG_ID = "org_01J9ZK3T7QW8X-enterprise-customer-with-a-long-identifier@subsidiary.example.com"
LONG_URL = (
    "https://hooks.example-enterprise-integrations.com/services/T0123456789/B0123456789/tollgate-events"
)


@dataclass
class Seeded:
    """Values for the path arguments of the admin's rules, and what the signed-out pages need."""

    # endpoint -> [(label, values, the status the page answers with)]
    arguments: dict[str, list[tuple[str, dict[str, object], int]]] = field(default_factory=dict)
    portal_path: str | None = None


def seed(world: World, stripe_api) -> Seeded:
    """A project with something on every page: customers with and without names, calls served and
    refused, a locked tier version and its clone, models and deployments, keys with limits, a
    webhook with deliveries, a Stripe event, a viewer, a second project."""
    session, project = db.session, world.project
    pro = world.add_tier(
        {
            "key": "pro",
            "name": "Pro",
            "period": "month",
            "replenish_tokens": 1_000_000,
            "limits": {"standard": {"calls": 500, "tokens": 2_000_000}, "premium": {"calls": 0, "tokens": 0}},
            "on_limit": "block",
            "max_budget_usd": "50",
        }
    )
    hook, _ = create_hook(session, project, LONG_URL, ["customer.created", "tokens.low"], world.secret_key)
    world.add_model(
        "claude-long-context-reasoning-2026",
        [
            {
                "provider": "anthropic",
                "base_url": "https://api.anthropic.example.com/v1/some/very/long/path/segment",
                "model": "claude-long-context-reasoning-2026-01-15",
                "region": "eu",
            }
        ],
        model_tier="super_premium",
    )
    world.add_model("in-house-unpriced", [{"provider": "mock", "model": "mock", "region": "us"}])
    key, _ = create_key(session, project, "billing backend", "admin")
    configure_key(
        session, key, {"rpm_limit": 600, "models": ["gpt-test"], "max_budget_nusd": 5 * 10**9}, now_utc()
    )
    create_key(session, project, "frontend", "proxy")
    add_admin(VIEWER, VIEWER_PASSWORD, "viewer")
    create_project(session, "staging", "Staging environment for the EU region")
    world.add_tier({"key": "pro-plus", "name": "Pro Plus with a longer name", "prepaid": True})
    configure_stripe(
        session,
        project,
        world.secret_key,
        webhook_secret=SECRET,
        api_key=API_KEY,
        prices={PACK: {"tokens": 1000, "tier": "pro"}},
    )
    world.commit()

    for customer in ("acme", LONG_ID, "globex"):
        assert chat(world.url, world.key, customer).status_code == 200
    world.give_customer("initech", 0)
    assert chat(world.url, world.key, "initech").status_code == 429  # a refusal, insufficient_tokens
    world.app.extensions["tollgate.gateway"].refusals.flush()
    world.customer("globex").name = "Globex Corporation"
    assign(world, "globex", pro)  # locks pro v1
    clone_tier(session, pro)
    world.commit()
    migrate_customers(session, project, "pro", 1, 2, None, "tests", now_utc())
    world.commit()

    purchase = checkout_session(client_reference_id="acme")
    stripe_api.add_session(purchase["id"], [(PACK, 1)])
    stripe = Stripe(world, f"{world.url}/integrations/stripe/{project.slug}/webhook")
    assert stripe.deliver(event("checkout.session.completed", purchase)) == "credited"  # acme on pro v2
    clone_tier(session, pro)  # v3: editable
    world.commit()

    model = session.scalar(select(Model).where(Model.name == "claude-long-context-reasoning-2026"))
    return Seeded(
        arguments={
            "customers.detail": [
                ("acme", {"customer_id": "acme"}, 200),
                ("long-id", {"customer_id": LONG_ID}, 200),
            ],
            "catalog.detail": [("long-name", {"model_id": model.id}, 200)],
            "tiers.migrate_form": [("pro", {"key": "pro"}, 200)],
            # After the migrate of pro v1 to v2: v1 is not the default, so no offer; the page still reads.
            "tiers.migrated": [("pro-1-2", {"key": "pro", "from_version": 1, "to_version": 2}, 200)],
            # A locked version's edit page says why and offers Clone (409); the clone is editable.
            "tiers.edit_form": [
                ("locked", {"key": "pro", "version": 1}, 200),
                ("v3", {"key": "pro", "version": 3}, 200),
            ],
            "integrations.deliveries": [("hook", {"public_id": hook.public_id}, 200)],
            # The switcher's GET action: back to the dashboard, in the project it names.
            "projects.switch": [("default", {"project": project.slug}, 200)],
        },
        portal_path=portal_path(world, "acme"),
    )


def portal_path(world: World, customer_id: str) -> str | None:
    """A usage-page link made the way an operator makes one (the API), once the portal exists."""
    if "portal" not in world.app.blueprints:
        return None
    _, admin_key = create_key(db.session, world.project, "portal links", "admin")
    world.commit()
    answer = requests.post(
        f"{world.url}/api/customers/{customer_id}/portal-link",
        headers={"Authorization": f"Bearer {admin_key}"},
        json={"expires_in_days": 30},
        timeout=30,
    )
    assert answer.status_code in (200, 201), answer.text
    link = urlsplit(answer.json()["url"])
    return f"{link.path}?{link.query}" if link.query else link.path


def admin_pages(app: Flask, seeded: Seeded) -> list[tuple[str, str, str, int]]:
    """(endpoint, name, path, status) of every GET page of the browser blueprints, with each variant."""
    pages, unfilled = [], []
    with app.test_request_context():
        for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
            blueprint = rule.endpoint.rpartition(".")[0]
            if "GET" not in rule.methods or not blueprint or blueprint == "portal":
                continue  # `root`, `favicon` and `static` are no blueprint's; the portal: signed out
            if blueprint.startswith(MACHINE_BLUEPRINTS) or rule.endpoint == "auth.sign_in":
                continue
            fills = seeded.arguments.get(rule.endpoint, [] if rule.arguments else [("", {}, 200)])
            if not fills:
                unfilled.append(f"{rule.endpoint} ({rule.rule})")
            for label, values, status in fills:
                for variant in VARIANTS.get(rule.endpoint, [{}]):
                    name = "-".join(
                        [rule.endpoint, label, *(f"{k}-{v}" for k, v in variant.items())]
                    ).replace("--", "-")
                    path = app.url_for(rule.endpoint, **values, **variant)
                    pages.append((rule.endpoint, name.strip("-"), path, status))
    assert not unfilled, (
        "admin pages whose path arguments tests/browser/test_every_page.py does not fill "
        f"(add them to seed()): {', '.join(unfilled)}"
    )
    return pages


# The elements that stick out past the right edge of the viewport, innermost first (those whose
# own children do not stick out too): what makes a page scroll sideways.
WIDEST = """() => {
  const edge = window.innerWidth + 0.5;
  const out = [...document.body.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > edge);
  const culprits = out.filter(e => ![...e.children].some(c => out.includes(c)));
  return culprits.sort((a, b) => b.getBoundingClientRect().right - a.getBoundingClientRect().right)
    .slice(0, 3).map(e => {
      const name = e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
        + [...e.classList].map(c => '.' + c).join('');
      const text = (e.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 60);
      return `${name} (right edge ${Math.round(e.getBoundingClientRect().right)} px) "${text}"`;
    });
}"""


@dataclass
class Measure:
    """Visits pages in one tab and notes every page that scrolls sideways or logs an error."""

    page: Page
    who: str  # in the screenshots' names and the failures
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    shots: int = 0

    def __post_init__(self) -> None:
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(self._located(m)))
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught {exc}"))

    @staticmethod
    def _located(message) -> str:
        return f"{message.text} ({message.location.get('url', '')})"

    def visit(self, name: str, path: str, status: int | None = 200) -> None:
        """Measure one page; `status` None: whatever it answers (a viewer reads the owner's pages)."""
        name = f"{self.who}-{name}"
        self.page.set_viewport_size(VIEWPORTS["desktop"])
        self.errors.clear()
        answer = self.page.goto(path)
        if answer is None or (status is not None and answer.status != status):
            got = answer.status if answer else "nothing"
            self.failures.append(f"{name} ({path}): HTTP {got}, expected {status}")
        for width, viewport in VIEWPORTS.items():
            self.page.set_viewport_size(viewport)
            self._measure(name, path, width)
        # An error page's own status is logged as a failed load of the page itself: that one is expected.
        url = self.page.url
        errors = [e for e in self.errors if not (status != 200 and e.endswith(f"({url})"))]
        if errors:
            self.failures.append(f"{name} ({path}): console errors: {'; '.join(errors)}")

    def _measure(self, name: str, path: str, width: str) -> None:
        scroll, inner = self.page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if scroll > inner:
            widest = "; ".join(self.page.evaluate(WIDEST)) or "no single element"
            self.failures.append(
                f"{name} ({path}) at {width} {inner} px scrolls sideways: {scroll} px wide; widest: {widest}"
            )
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
        self.shots += 1


def test_every_admin_page_fits_a_phone_and_a_desktop(
    admin, app: Flask, world: World, stripe_api, chromium, live_url: str, capsys
):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    seeded = seed(world, stripe_api)
    pages = admin_pages(app, seeded)
    assert {"dashboard.index", "customers.detail", "integrations.deliveries", "auth.password"} <= {
        endpoint for endpoint, *_ in pages
    }
    owner = Measure(admin, "owner")
    for _, name, path, status in pages:
        owner.visit(name, path, status)
    owner.visit("error-404", "/customers/no-such-customer", status=404)

    viewer_tab, signed_out_tab = (new_tab(chromium, live_url) for _ in range(2))
    viewer_tab.goto("/auth/sign-in")
    sign_in(viewer_tab, VIEWER, VIEWER_PASSWORD)
    viewer_tab.wait_for_url("**/dashboard")
    viewer = Measure(viewer_tab, "viewer")
    for _, name, path, _ in pages:
        viewer.visit(name, path, status=None)
    signed_out = Measure(signed_out_tab, "signed-out")
    signed_out.visit("auth.sign_in", "/auth/sign-in")
    signed_out.visit("error-404", "/no-such-page", status=404)
    if seeded.portal_path:
        signed_out.visit("portal", seeded.portal_path)
    for tab in (viewer_tab, signed_out_tab):
        tab.context.close()

    with capsys.disabled():
        shots = owner.shots + viewer.shots + signed_out.shots
        print(f"\n{shots} screenshots of every admin page in {SCREENSHOTS}")
    failures = owner.failures + viewer.failures + signed_out.failures
    assert not failures, f"{len(failures)} page problems:\n" + "\n".join(failures)


def new_tab(chromium, live_url: str) -> Page:
    context = chromium.new_context(base_url=live_url, viewport=VIEWPORTS["desktop"])
    context.set_default_timeout(10_000)
    return context.new_page()
