"""Creating projects. Operations flush; the caller commits."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import stamp
from app.errors import Conflict, Invalid
from app.models.project import Project
from app.tiers.operations import ensure_default_tier

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def find_project(session: Session, slug: str) -> Project | None:
    return session.scalar(select(Project).where(Project.slug == slug))


def create_project(session: Session, slug: str, name: str, **settings) -> Project:
    """A project with the `default` tier as its default tier (SPEC 4)."""
    if not SLUG.match(slug):
        raise Invalid("slug must be lower-case letters, digits and dashes (at most 63)", "slug")
    if not name.strip():
        raise Invalid("name must not be empty", "name")
    if find_project(session, slug) is not None:
        raise Conflict(f"project {slug!r} already exists", "slug")
    project = Project(slug=slug, name=name.strip(), **settings)
    session.add(project)
    session.flush()
    project.default_tier_id = ensure_default_tier(session, project).id
    stamp.bump(session)
    session.flush()
    return project


def rename_project(session: Session, project: Project, name: str) -> Project:
    if not name.strip():
        raise Invalid("name must not be empty", "name")
    project.name = name.strip()
    session.flush()
    return project
