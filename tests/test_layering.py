"""The layout of DESIGN.md, checked: no import circles in `app/`; the admin and the API reach the
proxy only through its public helpers; the upstream client and the proxy import nothing of the admin.

Imports are read from the source (module level and inside functions alike: a late import hides a
circle, it does not remove it); only `if TYPE_CHECKING:` imports, which never run, are left out.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"

# What the admin, the API and their operations may import from app/proxy, and why.
PROXY_PUBLIC = {
    "app.proxy.gateway": "the per-process state: the API authenticates keys with the proxy's snapshot",
    "app.proxy.errors": "the OpenAI error shape the API's own errors share (SPEC 3.3, 6)",
    "app.proxy.levels": "a settings change announces the shedding levels it moves (SPEC 8)",
    "app.proxy.autoshed": "each model's effective shedding level, for /api/health and /metrics",
    "app.proxy.health": "the shared health view the dashboard shows",
    "app.proxy.telemetry": "the process's counters /metrics renders",
    "app.proxy.providers": "the Test button calls a deployment as a proxied call would",
    "app.proxy.providers.deployment": "the deployment as the Test button hands it to `send`",
}
# The app factory wires every part together: it is the one module that may import them all.
FACTORY = "app"
# The admin's blueprints and their operations, the API, the portal and the integrations.
ADMIN = (
    "app.admins",
    "app.api",
    "app.auth",
    "app.catalog",
    "app.customers",
    "app.dashboard",
    "app.integrations",
    "app.keys",
    "app.portal",
    "app.projects",
    "app.settings",
    "app.tiers",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(APP.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in APP.rglob("*.py")}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(name: str, node: ast.AST, package: str) -> set[str]:
    """The app modules an import statement loads (`from app import x` loads app.x when x is a module)."""
    modules = _modules()
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:
        parts = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*parts, base] if base else parts)
    found = set()
    for alias in node.names:
        full = f"{base}.{alias.name}"
        if full in modules:
            found.add(full)
        elif base in modules:
            found.add(base)
    return found


@cache
def imports_of(name: str) -> frozenset[str]:
    path = _modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for other in child.orelse:
                    visit_node(other)
            else:
                visit_node(child)

    def visit_node(node: ast.AST) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.update(_imported(name, node, package))
        else:
            visit(node)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard(name)
    return frozenset(found)


def circles() -> list[list[str]]:
    """Every import circle (strongly connected set of modules), by Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in imports_of(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            members = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                members.append(w)
                if w == v:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for name in sorted(_modules()):
        if name not in index:
            visit(name)
    return found


def _within(name: str, packages: tuple[str, ...] | str) -> bool:
    packages = (packages,) if isinstance(packages, str) else packages
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_there_are_modules_to_check():
    names = _modules()
    assert {"app", "app.proxy.relay", "app.proxy.formats.chat", "app.upstream.client"} <= set(names)
    assert "app.proxy.relay" in imports_of("app.proxy.entry")


def test_no_import_circles_in_app():
    assert circles() == []


def reaches_into_the_proxy() -> set[tuple[str, str]]:
    """(module, proxy module) for every import of a proxy internal from outside the proxy (the
    factory aside): the admin's blueprints and operations, the API, monitoring, the CLI..."""
    return {
        (name, target)
        for name in _modules()
        if name != FACTORY and not _within(name, ("app.proxy", "app.upstream"))
        for target in imports_of(name)
        if _within(target, "app.proxy") and target not in PROXY_PUBLIC
    }


def test_the_admin_and_the_api_use_only_the_proxys_public_helpers():
    assert reaches_into_the_proxy() == set()


def test_the_upstream_client_knows_no_proxy_and_the_proxy_no_admin():
    for name in _modules():
        if _within(name, "app.upstream"):
            assert not any(_within(t, ("app.proxy", *ADMIN)) for t in imports_of(name)), name
        if _within(name, "app.proxy"):
            assert not any(_within(t, ADMIN) for t in imports_of(name)), name


def test_the_check_finds_a_circle_and_a_reach_into_the_proxy(monkeypatch):
    """The checks above would fail on the layout this issue replaced: a late import in a function
    (the mock provider's of the client) closing a circle, and the Test button reaching the relay."""
    real = imports_of.__wrapped__
    planted = {
        "app.upstream.client": {"app.proxy.providers.mock"},
        "app.catalog.probe": {"app.proxy.relay"},
    }

    def with_plants(name: str) -> frozenset[str]:
        return real(name) | planted.get(name, set())

    monkeypatch.setitem(globals(), "imports_of", with_plants)
    assert any({"app.upstream.client", "app.proxy.providers.mock"} <= set(c) for c in circles())
    assert reaches_into_the_proxy() == {("app.catalog.probe", "app.proxy.relay")}
