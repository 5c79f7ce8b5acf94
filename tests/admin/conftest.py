"""The admin tests' signed-in owner (a viewer account beside it) and customer `acme` with 1,000 tokens."""

from __future__ import annotations

import pytest

from app.cli import add_admin
from app.extensions import db
from tests.admin.test_sign_in_and_customers import PASSWORD, client_for, sign_in
from tests.factories import World


@pytest.fixture
def owner(app, world: World):
    add_admin("owner@example.com", PASSWORD)
    add_admin("viewer@example.com", PASSWORD, role="viewer")
    db.session.commit()
    world.give_customer("acme", 1000)
    client = client_for(app)
    sign_in(client)
    yield client
    app.extensions["tollgate.signin_throttle"].__init__(None)  # a fresh window for the next test
