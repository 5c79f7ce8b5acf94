"""Admin sessions end on the server (sign-out, password change), the cookies' and frames' settings,
and the sign-in throttle shared by every worker (issue 17, SPEC 10)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import config, create_app
from app.auth.operations import Throttle
from app.extensions import db
from app.keys.operations import create_key
from app.models import SignInAttempt
from tests.admin.test_sign_in_and_customers import PASSWORD, client_for, csrf, form_post, sign_in
from tests.conftest import REDIS_URL
from tests.factories import World

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def signed_in(app, remember: bool = False):
    client = client_for(app)
    page = client.get("/auth/sign-in")
    data = {"email": "owner@example.com", "password": PASSWORD, "csrf_token": csrf(page.data)}
    resp = client.post("/auth/sign-in", data={**data, **({"remember": "y"} if remember else {})})
    assert resp.status_code == 302, resp.data.decode()[-600:]
    return client


def with_cookie(app, name: str, value: str):
    """A fresh client holding only this cookie: a copy replayed from somewhere else."""
    client = client_for(app)
    client.set_cookie(name, value)
    return client


def sends_to_sign_in(client) -> bool:
    resp = client.get("/dashboard")
    return resp.status_code == 302 and "/auth/sign-in" in resp.headers["Location"]


def sign_out(client):
    page = client.get("/dashboard")
    return client.post("/auth/sign-out", data={"csrf_token": csrf(page.data)})


def change_password(client, new: str):
    data = {"current": PASSWORD, "new": new, "confirm": new}
    return form_post(client, "/auth/password", data, "/auth/password")


def test_a_session_cookie_copied_before_sign_out_is_refused_after_it(owner, app):
    saved = owner.get_cookie("session").value
    laptop = signed_in(app)  # the same admin on another device
    assert with_cookie(app, "session", saved).get("/dashboard").status_code == 200
    assert sign_out(owner).status_code == 302
    assert sends_to_sign_in(with_cookie(app, "session", saved))
    assert sends_to_sign_in(laptop)  # every session of that admin, on every device
    assert sends_to_sign_in(owner)
    assert sign_in(owner).status_code == 302 and owner.get("/dashboard").status_code == 200


def test_a_password_change_ends_every_other_session(owner, app):
    saved = owner.get_cookie("session").value
    laptop = signed_in(app)
    changed = change_password(laptop, "a brand new passphrase")
    assert changed.status_code == 302, changed.data.decode()[-600:]
    assert laptop.get("/dashboard").status_code == 200  # the browser that changed it stays in
    assert sends_to_sign_in(owner)
    assert sends_to_sign_in(with_cookie(app, "session", saved))
    assert sign_in(owner).status_code == 401
    assert sign_in(owner, password="a brand new passphrase").status_code == 302


def test_a_password_set_from_the_cli_ends_every_session(owner, app):
    result = app.test_cli_runner().invoke(
        args=["admin", "password", "--email", "owner@example.com", "--password", "battery staple"]
    )
    assert result.exit_code == 0, result.output
    assert sends_to_sign_in(owner)


def test_a_kept_session_stops_working_after_sign_out_elsewhere(owner, app):
    kept = signed_in(app, remember=True)
    saved = kept.get_cookie("session").value
    assert with_cookie(app, "session", saved).get("/dashboard").status_code == 200
    assert sign_out(owner).status_code == 302  # signed out on another device
    assert sends_to_sign_in(with_cookie(app, "session", saved))
    assert sends_to_sign_in(kept)


def test_a_kept_browser_that_changes_the_password_stays_kept(owner, app):
    kept = signed_in(app, remember=True)
    old = kept.get_cookie("session").value
    assert change_password(kept, "a brand new passphrase").status_code == 302
    assert sends_to_sign_in(with_cookie(app, "session", old))
    resp = kept.get("/dashboard")
    assert resp.status_code == 200 and "Expires=" in cookie_headers(resp)["session"]


def aged(app, cookie: str, days: float, monkeypatch) -> str:
    """The same session, signed `days` ago (the signature carries its time)."""
    import itsdangerous.timed

    serializer = app.session_interface.get_signing_serializer(app)
    data = serializer.loads(cookie)
    real = itsdangerous.timed.time.time
    with monkeypatch.context() as patched:
        patched.setattr(itsdangerous.timed.time, "time", lambda: real() - days * 86400)
        return serializer.dumps(data)


@pytest.mark.parametrize("remember", [True, False])
def test_the_server_refuses_a_session_cookie_older_than_14_days(owner, app, monkeypatch, remember):
    cookie = signed_in(app, remember=remember).get_cookie("session").value
    assert (
        with_cookie(app, "session", aged(app, cookie, 13.9, monkeypatch)).get("/dashboard").status_code == 200
    )
    assert sends_to_sign_in(with_cookie(app, "session", aged(app, cookie, 14.1, monkeypatch)))


@pytest.mark.parametrize("identity", ["1", "abc", "1:x", ":1", "1:1:1", "99999:1", "\uff11:1", ""])
def test_a_malformed_or_unknown_identity_leads_to_the_sign_in_page(owner, app, identity):
    client = client_for(app)
    with client.session_transaction() as session:
        session["_user_id"] = identity
    assert sends_to_sign_in(client)


def cookie_headers(resp) -> dict[str, str]:
    return {value.split("=", 1)[0]: value for value in resp.headers.getlist("Set-Cookie")}


def sign_in_cookies(app) -> dict[str, str]:
    client = client_for(app)
    page = client.get("/auth/sign-in")
    data = {
        "email": "owner@example.com",
        "password": PASSWORD,
        "remember": "y",
        "csrf_token": csrf(page.data),
    }
    resp = client.post("/auth/sign-in", data=data)
    assert resp.status_code == 302
    return cookie_headers(resp)


def test_sign_in_cookies_are_http_only_same_site_lax_and_kept_for_14_days(owner, app):
    cookies = sign_in_cookies(app)
    assert set(cookies) == {"session"}  # no remember-me cookie: its age would go unchecked
    for header in cookies.values():
        assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" not in header, header
    expires = next(part for part in cookies["session"].split("; ") if part.startswith("Expires="))
    lasts = datetime.strptime(expires, "Expires=%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
    assert timedelta(days=13, hours=23) < lasts - datetime.now(UTC) <= timedelta(days=14)


def test_secure_cookies_when_served_over_https(owner, app, instance_dir):
    env = {
        "TOLLGATE_INSTANCE_PATH": str(instance_dir),
        "TOLLGATE_DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "TOLLGATE_SECRET_KEY": "s" * 48,
        "TOLLGATE_SECURE_COOKIES": "true",
    }
    https_app = create_app(config.load(env=env))
    https_app.config["TESTING"] = True
    try:
        for header in sign_in_cookies(https_app).values():
            assert "Secure" in header and "HttpOnly" in header and "SameSite=Lax" in header, header
    finally:
        with https_app.app_context():
            db.engine.dispose()


def test_the_secure_cookies_setting_is_true_or_false(instance_dir):
    base = {"TOLLGATE_INSTANCE_PATH": str(instance_dir), "TOLLGATE_SECRET_KEY": "s" * 48}
    assert config.load(env=base).flask_config()["SESSION_COOKIE_SECURE"] is False
    on = config.load(env={**base, "TOLLGATE_SECURE_COOKIES": "TRUE"}).flask_config()
    assert on["SESSION_COOKIE_SECURE"] is True
    off = config.load(env={**base, "TOLLGATE_SECURE_COOKIES": "false"}).flask_config()
    assert off["SESSION_COOKIE_SECURE"] is False
    for wrong in ("yes", "1", "on"):
        with pytest.raises(config.ConfigError, match="TOLLGATE_SECURE_COOKIES must be true or false"):
            config.load(env={**base, "TOLLGATE_SECURE_COOKIES": wrong})


def refuses_framing(resp) -> bool:
    return (
        resp.headers.get("X-Frame-Options") == "DENY"
        and resp.headers.get("Content-Security-Policy") == "frame-ancestors 'none'"
    )


def test_admin_pages_refuse_framing_and_machine_paths_do_not_pay_for_it(owner, app, world: World):
    stranger = client_for(app)
    responses = {
        "page": owner.get("/customers/acme"),
        "sign-in page": stranger.get("/auth/sign-in"),
        "404 page": owner.get("/customers/nobody-here"),
        "unknown path": stranger.get("/no/such/page"),
        "redirect to sign in": stranger.get("/customers"),
        "redirect after sign-out": sign_out(owner),
    }
    expected = {
        "page": 200,
        "sign-in page": 200,
        "404 page": 404,
        "unknown path": 404,
        "redirect to sign in": 302,
        "redirect after sign-out": 302,
    }
    assert {name: resp.status_code for name, resp in responses.items()} == expected
    for name, resp in responses.items():
        assert refuses_framing(resp), name
    _, admin_key = create_key(db.session, world.project, "ops", "admin")
    world.commit()
    machine = {
        "/v1/models": stranger.get("/v1/models", headers={"Authorization": f"Bearer {world.key}"}),
        "/api/me": stranger.get("/api/me", headers={"Authorization": f"Bearer {admin_key}"}),
        "/v1 refused": stranger.get("/v1/models"),
        "/healthz": stranger.get("/healthz"),
    }
    assert [resp.status_code for resp in machine.values()] == [200, 200, 401, 200]
    for path, resp in machine.items():
        assert "X-Frame-Options" not in resp.headers and "Content-Security-Policy" not in resp.headers, path


def test_failed_sign_ins_are_stored_as_digests(app, owner):
    client = client_for(app)
    before = set(db.session.scalars(select(SignInAttempt.id)))
    assert sign_in(client, email="guess@example.com", password="hunter2-hunter2").status_code == 401
    keys = db.session.scalars(select(SignInAttempt.key).where(SignInAttempt.id.not_in(before))).all()
    assert len(keys) == 2 and all(len(key) == 64 and "example.com" not in key for key in keys)


def test_the_throttle_is_shared_by_workers_through_the_database(app, world: World):
    workers = [Throttle(None), Throttle(None)]  # two processes, one database
    sessions = [Session(db.engine), Session(db.engine)]
    try:
        for attempt in range(5):
            worker, session = workers[attempt % 2], sessions[attempt % 2]
            assert worker.attempt(session, "Owner@Example.com ", "10.0.0.1", now=T0)
        for worker, session in zip(workers, sessions, strict=True):
            assert not worker.attempt(session, "owner@example.com", "10.0.0.1", now=T0)
            assert worker.attempt(session, "owner@example.com", "10.0.0.2", now=T0)
        later = T0 + timedelta(minutes=15)
        assert workers[0].attempt(sessions[0], "owner@example.com", "10.0.0.1", now=later)
        # Writing an attempt deleted the rows the window had passed: the table stays small.
        assert sessions[1].scalar(select(func.count()).select_from(SignInAttempt)) == 2
    finally:
        for session in sessions:
            session.close()


def test_a_right_password_starts_the_accounts_count_over(app, world: World):
    throttle = Throttle(None)
    for _ in range(4):
        assert throttle.attempt(db.session, "owner@example.com", "10.0.0.1", now=T0)
    throttle.succeeded(db.session, "owner@example.com", "10.0.0.1")
    for _ in range(5):
        assert throttle.attempt(db.session, "owner@example.com", "10.0.0.1", now=T0)
    assert not throttle.attempt(db.session, "owner@example.com", "10.0.0.1", now=T0)


def test_the_address_limit_is_shared_by_workers_through_the_database(app, world: World):
    workers = [Throttle(None), Throttle(None)]
    for attempt in range(20):
        assert workers[attempt % 2].attempt(db.session, f"guess{attempt}@example.com", "10.0.0.1", now=T0)
    assert not any(worker.attempt(db.session, "owner@example.com", "10.0.0.1", now=T0) for worker in workers)


def parallel_attempts(throttles: list[Throttle], sessions: list[Session | None]) -> list[bool]:
    """Every throttle tries the same account at once, as workers serving a burst of guesses do."""
    start = threading.Barrier(len(throttles))
    results: list[bool] = [False] * len(throttles)

    def guess(i: int) -> None:
        start.wait()
        results[i] = throttles[i].attempt(sessions[i], "owner@example.com", "10.0.0.1", now=T0)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(len(throttles))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_parallel_guesses_pass_no_more_than_five_through_the_database(app, world: World):
    sessions = [Session(db.engine) for _ in range(12)]
    try:
        # Never more than five. A burst may be refused whole: an attempt counts every row
        # committed before it counts, refused ones too until they are deleted (PostgreSQL often
        # sees all twelve at once); the next attempts are then counted afresh.
        passed = sum(parallel_attempts([Throttle(None) for _ in sessions], sessions))
        assert passed <= 5
        later = [
            Throttle(None).attempt(sessions[0], "owner@example.com", "10.0.0.1", now=T0) for _ in range(6)
        ]
        assert later == [True] * (5 - passed) + [False] * (1 + passed)  # five in the window, in all
    finally:
        for session in sessions:
            session.close()


def test_the_throttle_is_shared_by_workers_through_redis(
    world: World, redis_client: redis.Redis, redis_prefix: str
):
    workers = [Throttle(REDIS_URL, key_prefix=redis_prefix) for _ in range(12)]
    assert sum(parallel_attempts(workers, [None] * 12)) == 5  # counted before the password is checked
    assert not workers[0].attempt(db.session, "owner@example.com", "10.0.0.1")
    assert workers[0].attempt(db.session, "owner@example.com", "10.0.0.2")
    assert list(redis_client.scan_iter(match=f"{redis_prefix}:*")), "the windows live in Redis"
    assert db.session.scalar(select(func.count()).select_from(SignInAttempt)) == 0


def test_with_redis_away_the_throttle_counts_in_the_database(app, world: World):
    """A node whose Redis does not answer still signs admins in, and still limits guesses."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    throttle = Throttle(dead)
    for _ in range(5):
        assert throttle.attempt(db.session, "owner@example.com", "10.0.0.9", now=T0)
    assert not throttle.attempt(db.session, "owner@example.com", "10.0.0.9", now=T0)
    throttle.succeeded(db.session, "owner@example.com", "10.0.0.9")
    assert throttle.attempt(db.session, "owner@example.com", "10.0.0.9", now=T0)
