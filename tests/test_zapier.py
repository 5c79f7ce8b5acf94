"""The Zapier app (zapier/, SPEC 7.3; issue 11, acceptance 4): its own tests, driven by
zapier-platform-core's app tester, run with Node against this live Tollgate. `make test` installs its
pinned packages first (`npm ci`, zapier/package-lock.json); without them this fails, never skips."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from app.extensions import db
from app.integrations.operations import configure_stripe
from app.keys.operations import create_key
from tests.factories import World
from tests.integrations.conftest import SECRET, Stripe, checkout_session, event

ZAPIER = Path(__file__).resolve().parent.parent / "zapier"


def test_the_zapier_apps_tests_pass_against_a_live_tollgate(world: World):
    node = shutil.which("node")
    if node is None or not (ZAPIER / "node_modules" / "zapier-platform-core").is_dir():
        pytest.fail(
            "Node and zapier/node_modules are needed: run `make zapier/node_modules` (make test does)"
        )
    _, admin = create_key(db.session, world.project, "zapier", "admin")
    configure_stripe(db.session, world.project, world.secret_key, webhook_secret=SECRET)
    world.commit()
    buyer = Stripe(world, f"{world.url}/integrations/stripe/default/webhook")
    purchase = checkout_session(client_reference_id="zap-buyer", metadata={"tollgate_tokens": "12345"})
    assert buyer.deliver(event("checkout.session.completed", purchase)) == "credited"
    env = {
        **os.environ,
        "TOLLGATE_URL": world.url,
        "TOLLGATE_API_KEY": admin,
        "TOLLGATE_PURCHASE_CUSTOMER": "zap-buyer",
    }
    done = subprocess.run(
        [node, "--test", "--test-reporter=tap", "test/"],
        cwd=ZAPIER,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    passed = re.search(r"^# pass (\d+)$", done.stdout, re.M)
    assert "\n# fail 0\n" in done.stdout and passed and int(passed.group(1)) >= 20, done.stdout[-3000:]
