"""Which project a browser is looking at: kept in the signed cookie session, named in every form.

A form carries the project its page was rendered for; `owner_required` refuses a submission whose
project is no longer the browser's, so a form left open in one tab cannot change another project
after a switch in a second tab.
"""

from __future__ import annotations

from flask import request
from flask import session as cookie
from markupsafe import Markup

FIELD = "project"


def project_field() -> Markup:
    """The hidden input every admin form carries (a Jinja global, so macros reach it too)."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(FIELD, cookie.get(FIELD, ""))


def rendered_for_another_project() -> bool:
    return request.form.get(FIELD, "") != cookie.get(FIELD, "")
