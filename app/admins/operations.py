"""Admin users: add, change role, remove; there is always an owner left. Operations flush."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from app.errors import Conflict, Invalid, NotFound
from app.models.admin_user import ROLES, AdminUser

MIN_PASSWORD = 8


def add_admin(session: Session, email: str, password: str, role: str = "owner") -> AdminUser:
    email = email.strip().lower()
    if "@" not in email or email.startswith("@") or email.endswith("@"):
        raise Invalid("email must be an email address", "email")
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"password must be at least {MIN_PASSWORD} characters", "password")
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}", "role")
    if session.scalar(select(AdminUser).where(AdminUser.email == email)) is not None:
        raise Conflict(f"an admin with email {email} already exists", "email")
    user = AdminUser(email=email, password_hash=generate_password_hash(password), role=role)
    session.add(user)
    session.flush()
    return user


def _owners(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AdminUser).where(AdminUser.role == "owner")) or 0


def change_role(session: Session, user: AdminUser, role: str) -> None:
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}", "role")
    if user.role == "owner" and role != "owner" and _owners(session) == 1:
        raise Conflict("the last owner cannot stop being an owner", "role")
    user.role = role
    session.flush()


def remove_admin(session: Session, user: AdminUser) -> None:
    if user.role == "owner" and _owners(session) == 1:
        raise Conflict("the last owner cannot be removed", "id")
    session.delete(user)
    session.flush()


def find_admin(session: Session, user_id: int) -> AdminUser:
    user = session.get(AdminUser, user_id)
    if user is None:
        raise NotFound("no such admin", "id")
    return user


def set_password(session: Session, user: AdminUser, new: str) -> None:
    """A new password ends every session the admin has (the caller may sign one in again)."""
    if len(new) < MIN_PASSWORD:
        raise Invalid(f"password must be at least {MIN_PASSWORD} characters", "password")
    user.password_hash = generate_password_hash(new)
    end_sessions(session, user)


def end_sessions(session: Session, user: AdminUser) -> None:
    """Retire the admin's login identity: every session cookie issued so far stops
    working, on every device (SPEC 10). Counted in SQL, so two at once both take effect."""
    user.session_version = AdminUser.session_version + 1
    session.flush()


def find_by_email(session: Session, email: str) -> AdminUser:
    user = session.scalar(select(AdminUser).where(AdminUser.email == email.strip().lower()))
    if user is None:
        raise NotFound(f"no admin with email {email}", "email")
    return user
