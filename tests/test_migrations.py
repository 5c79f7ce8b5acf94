"""The migrations keep the data they do not change, both ways, on SQLite (where a batch migration
rebuilds a table by copy, DROP and rename, and the app's foreign keys would cascade the DROP)."""

from __future__ import annotations

from pathlib import Path

from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from app import config, create_app
from app.cli import _ensure_default_project
from app.customers import operations as ops
from app.db import now_utc
from app.extensions import db
from app.keys.operations import create_key
from app.models.project import Project

TABLES = ("projects", "customers", "ledger_entries", "usage_tiers", "events", "api_keys")


def _counts() -> dict[str, int]:
    with db.engine.connect() as conn:
        return {table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() for table in TABLES}


def test_downgrading_the_newest_migrations_and_upgrading_again_keeps_every_row(tmp_path: Path):
    app = create_app(
        config.load(
            env={
                "TOLLGATE_INSTANCE_PATH": str(tmp_path),
                "TOLLGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}",
                "TOLLGATE_SECRET_KEY": "s" * 48,
            }
        )
    )
    with app.app_context():
        directory = app.extensions["migrate"].directory
        upgrade(directory=directory)
        _ensure_default_project(app.config["SECRET_KEY"])
        project = db.session.query(Project).one()
        ops.create_customer(
            db.session, project, {"customer_id": "c1", "token_balance": 500}, "test", now_utc()
        )
        create_key(db.session, project, "backend", "proxy")
        db.session.commit()
        db.session.close()
        before = _counts()
        assert all(before.values()), before  # a row in every table, or the check proves nothing

        downgrade(directory=directory, revision="0010")  # through 0012's and 0011's batch rebuilds
        assert _counts() == before
        upgrade(directory=directory)
        assert _counts() == before
        with db.engine.connect() as conn:  # the pooled connection has the app's foreign keys back
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        db.engine.dispose()
