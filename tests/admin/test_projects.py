"""Projects in the admin: create with a first key shown once, rename, switch (issue 5, build 10)."""

from __future__ import annotations

import re

from app.extensions import db
from app.models.customer import Customer
from app.models.project import Project
from app.models.tier import UsageTier
from tests.admin.test_sign_in_and_customers import form_post
from tests.factories import World, chat


def _project(slug: str) -> Project | None:
    db.session.expire_all()
    return db.session.scalar(db.select(Project).where(Project.slug == slug))


def test_a_new_project_gets_the_default_tier_and_a_key_that_works(owner, world: World, app):
    made = form_post(owner, "/projects", {"slug": "side-app", "name": "Side app"}, "/projects")
    page = made.data.decode()
    assert made.status_code == 201, page[-2000:]
    secret = re.search(r'id="new-secret" type="text" readonly value="(tg-[A-Za-z0-9_-]{40})"', page).group(1)
    project = _project("side-app")
    default = db.session.get(UsageTier, project.default_tier_id)
    assert (default.key, default.version, default.name) == ("default", 1, "Default New Customer Tier")
    # The admin now looks at the new project: its (empty) customer list, its name in the switcher.
    assert "acme" not in owner.get("/customers").data.decode()
    assert re.search(
        r'<option value="side-app" selected>Side app</option>', owner.get("/tiers").data.decode()
    )
    assert secret not in owner.get("/projects").data.decode()  # shown once
    app.extensions["tollgate.gateway"].cache.invalidate()
    # The key is the new project's: a call for "acme" there is a new customer there, not world's acme.
    reply = chat(world.url, secret, "acme")
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "model_not_found"  # no models yet
    owners = db.session.scalars(db.select(Customer.project_id).where(Customer.external_id == "acme")).all()
    assert sorted(owners) == sorted([world.project.id, project.id])
    assert world.customer("acme").token_balance == 1000


def test_switching_projects_changes_what_every_page_shows(owner, world: World):
    form_post(owner, "/projects", {"slug": "other", "name": "Other"}, "/projects")
    assert "acme" not in owner.get("/customers").data.decode()
    back = owner.get(f"/projects/switch?project={world.project.slug}")
    assert back.status_code == 302
    assert "acme" in owner.get("/customers").data.decode()
    assert owner.get("/projects/switch?project=nope").status_code == 404


def test_rename_and_bad_input_change_nothing(owner, world: World):
    slug = world.project.slug
    assert (
        form_post(owner, f"/projects/{slug}/rename", {"name": "  Renamed  "}, "/projects").status_code == 302
    )
    assert _project(slug).name == "Renamed"
    refused = form_post(owner, f"/projects/{slug}/rename", {"name": ""}, "/projects")
    page = refused.data.decode()
    assert refused.status_code == 400 and f'id="rename-error-{slug}">A name is required.' in page
    assert _project(slug).name == "Renamed"
    count = db.session.scalar(db.select(db.func.count()).select_from(Project))
    for bad, message in [
        ({"slug": "Has Spaces", "name": "x"}, "Slug must be lower-case"),  # the label's word
        ({"slug": slug, "name": "Again"}, "already exists"),
        ({"slug": "fine", "name": ""}, "A name is required."),
    ]:
        resp = form_post(owner, "/projects", bad, "/projects")
        page = resp.data.decode()
        assert resp.status_code == 400 and message in page and 'class="field-error"' in page
    assert db.session.scalar(db.select(db.func.count()).select_from(Project)) == count


def test_a_form_left_open_for_one_project_changes_nothing_after_a_switch(owner, world: World):
    form_post(owner, "/projects", {"slug": "other", "name": "Other"}, "/projects")
    owner.get(f"/projects/switch?project={world.project.slug}")
    page = owner.get("/customers/acme?tab=usage").data.decode()  # rendered for the world's project
    assert f'name="project" value="{world.project.slug}"' in page
    fields = dict(re.findall(r'<input type="hidden" name="(csrf_token|project)" value="([^"]*)"', page))
    owner.get("/projects/switch?project=other")  # a second tab switches
    stale = owner.post("/customers/acme/tokens", data={**fields, "mode": "add", "amount": "777"})
    assert stale.status_code == 302
    assert "Nothing was changed" in owner.get(stale.headers["Location"], follow_redirects=True).data.decode()
    assert world.customer("acme").token_balance == 1000
    owner.get(f"/projects/switch?project={world.project.slug}")
    fresh = owner.post("/customers/acme/tokens", data={**fields, "mode": "add", "amount": "777"})
    assert fresh.status_code == 302 and world.customer("acme").token_balance == 1777
