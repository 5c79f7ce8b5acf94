"""Form errors for people: each error next to its field, all of them in a summary at the top of the
form, and in the words of the form's labels rather than the code names the API uses.

Domain operations name fields the way `/api` does (`replenish_tokens`): right for a JSON client,
opaque to an operator looking at a form labelled "Tokens per replenishment". The admin's views put
a domain refusal on a form with `show_refusal`, which says it in the labels' words.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from flask import Flask, get_template_attribute
from markupsafe import Markup
from wtforms import Field, FieldList, Form, FormField, HiddenField

from app.errors import DomainError

CODE_NAME = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")  # replenish_tokens, max_budget_usd
LEADING_NAME = re.compile(r"[a-z]+\b")  # "period: …", "key must …": a one-word field name leads


@dataclass(frozen=True)
class Problem:
    """One error of a form: the id of the input it is about (None: the whole form), and what to say."""

    target: str | None
    text: str


def problems(form: object) -> list[Problem]:
    """Every error of the form, in the order of its fields, the form's own errors first."""
    if not isinstance(form, Form):  # None, or a form the page does not have (Undefined)
        return []
    found = [Problem(None, str(error)) for error in form.form_errors]
    for field in form:
        found += _field_problems(field, _as_is)
    return found


def _as_is(label: str) -> str:
    return label


def _field_problems(field: Field, named: Callable[[str], str]) -> list[Problem]:
    if isinstance(field, FormField):  # a row of fields: "premium" + "Calls" reads "Premium calls"
        return [p for sub in field.form for p in _field_problems(sub, _within(field.label.text))]
    if isinstance(field, FieldList):
        return [
            p for number, entry in enumerate(field.entries, start=1) for p in _row_problems(entry, number)
        ]
    label = named(field.label.text)
    target = None if isinstance(field, HiddenField) else field.id
    return [Problem(target, _labelled(label, str(error))) for error in field.errors]


def _within(container: str) -> Callable[[str], str]:
    return lambda label: f"{container[:1].upper()}{container[1:]} {label.lower()}"


def _row_problems(entry: Field, number: int) -> Iterator[Problem]:
    def named(label: str) -> str:
        return f"{label}, row {number}"

    for sub in entry.form if isinstance(entry, FormField) else [entry]:
        yield from _field_problems(sub, named)


def _labelled(label: str, message: str) -> str:
    """The message as the summary lists it: prefixed by the label unless it names the field already."""
    return message if label.lower() in message.lower() else f"{label}: {message}"


def in_label_words(form: Form, message: str) -> str:
    """A domain message with the code names of the form's fields replaced by their labels.

    A form may word some refusals itself (`refusal_words`: the start of the domain's message → the
    form's sentence), for rules about two fields that a word-for-word swap would leave awkward.
    """
    for start, sentence in getattr(form, "refusal_words", {}).items():
        if message.startswith(start):
            return sentence
    text = CODE_NAME.sub(lambda m: _label_in_sentence(form, m.group(0), m.start() == 0), message)
    leading = LEADING_NAME.match(text)
    if leading and leading.group(0) in form:
        text = form[leading.group(0)].label.text + text[leading.end() :]
    return text[:1].upper() + text[1:]


def _label_in_sentence(form: Form, name: str, first: bool) -> str:
    if name not in form:
        return name
    label = form[name].label.text
    # Mid-sentence a label reads in lower case ("above budget per period"), but a name stays ("LiteLLM").
    word = label.split(" ", 1)[0]
    return label if first or not word[1:].islower() else label[:1].lower() + label[1:]


def show_refusal(
    form: Form, refused: DomainError, fallback: str | None = None, names: Mapping[str, str] | None = None
) -> None:
    """Put a domain refusal next to the field it names (`names` maps the API's name of a field to the
    form's where they differ; else `fallback`), or at the top of the form; in the labels' words."""
    name = (names or {}).get(refused.field or "", refused.field)
    if name is None or name not in form:
        name = fallback
    target = form[name] if name is not None and name in form else None
    text = in_label_words(form, refused.message)
    if target is None or isinstance(target, FormField | FieldList | HiddenField):
        form.form_errors.append(text)
    else:
        target.errors = [*target.errors, text]


def error_summary(form: object) -> Markup:
    """The summary at the top of an invalid form (nothing for a valid one): the forms macro's."""
    return Markup(get_template_attribute("_macros/forms.html", "error_summary")(form))


def register(app: Flask) -> None:
    """Template globals, so that a form template calls `error_summary(form)` without an import."""
    app.add_template_global(problems, "form_problems")
    app.add_template_global(error_summary, "error_summary")
