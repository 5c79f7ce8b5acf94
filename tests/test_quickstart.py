"""The README's quickstart, as a new user runs it (issue 16, acceptance 5): a fresh clone of this
repository, the README's `make run`, the `export TOLLGATE_KEY=…` line it prints pasted into bash, then
the README's curl call and its anthropic SDK snippet. Runs the real gunicorn + gevent server that
`make run` starts.

The clone is of HEAD (uncommitted changes are not in it; CI's checkout has none). It borrows this
checkout's `.venv` through a symlink and `make -o .venv/.installed`, so nothing is installed again:
the venv's editable finder comes after the current directory on sys.path, so the clone's own `app`
package is the one that runs (asserted below).
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
from pathlib import Path

from tests.conftest import stop_group, wait_until_serving

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def readme_setup(root: Path = ROOT) -> list[str]:
    """The quickstart's first command (`make run`), as words."""
    text = (root / "README.md").read_text()
    block = text.split("<!-- quickstart-setup -->", 1)[1]
    command = re.search(r"```sh\n(.+?)\n", block).group(1).split("#", 1)[0].split()
    assert command[0] == "make", command
    return command


def fresh_clone(tmp_path: Path) -> Path:
    """HEAD cloned into tmp_path, with this checkout's venv lent to it."""
    clone = tmp_path / "tollgate"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    (clone / ".venv").symlink_to(ROOT / ".venv")
    ran = subprocess.run(
        [".venv/bin/python", "-c", "import app; print(app.__file__)"],
        cwd=clone,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(ran.stdout.strip()) == clone / "app" / "__init__.py"
    return clone


def readme_curl(root: Path = ROOT) -> str:
    text = (root / "README.md").read_text()
    block = text.split("<!-- quickstart-curl -->", 1)[1]
    return re.search(r"```sh\n(curl .+?)\n```", block, re.S).group(1)


def readme_anthropic(root: Path = ROOT) -> str:
    text = (root / "README.md").read_text()
    block = text.split("<!-- quickstart-anthropic -->", 1)[1]
    return re.search(r"```python\n(.+?)\n```", block, re.S).group(1)


def test_fresh_clone_make_run_then_the_printed_export_and_readme_curl(tmp_path: Path):
    clone = fresh_clone(tmp_path)
    port = free_port()
    bind = f"127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env.update(TOLLGATE_INSTANCE_PATH=str(tmp_path), TOLLGATE_BIND=bind)
    log = open(tmp_path / "make-run.log", "w+")  # noqa: SIM115 - outlives the block: closed in finally
    make = readme_setup(clone)  # `make run`, told that the borrowed venv is installed already
    proc = subprocess.Popen(
        [*make[:1], "-o", ".venv/.installed", *make[1:]],
        cwd=clone,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until_serving(f"http://{bind}", proc)
        log.seek(0)
        output = log.read()
        key = re.search(r"Proxy key for project 'default': (tg-[A-Za-z0-9_-]{40})", output).group(1)
        assert re.search(r"Admin login: admin@localhost / \S+", output)
        # The two lines to paste: the export, then the README's very curl call.
        lines = output.splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith("export TOLLGATE_KEY="))
        export = lines[at]
        command = readme_curl(clone).replace("127.0.0.1:8000", bind)
        assert lines[at + 1] == command
        done = subprocess.run(
            ["bash", "-c", f"{export}\n{command}"],
            env=env,  # no TOLLGATE_KEY but the one the export line sets
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        reply = json.loads(done.stdout)
        assert reply["choices"][0]["message"]["content"]
        used = reply["usage"]["total_tokens"]
        assert used > 0
        with sqlite3.connect(tmp_path / "tollgate.db") as db:
            balance = db.execute("SELECT token_balance FROM customers WHERE external_id = 'acme'").fetchone()
        assert balance == (10_000 - used,)
        # The anthropic SDK snippet, as printed: a message and a stream, for the same customer.
        script = readme_anthropic(clone).replace("127.0.0.1:8000", bind)
        ran = subprocess.run(
            [str(ROOT / ".venv/bin/python"), "-c", script],
            env={**env, "TOLLGATE_KEY": key},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        first_line, streamed = ran.stdout.split("\n", 1)
        text, tokens = first_line.rsplit(" ", 1)
        assert text.startswith("Hello from Tollgate's mock model.") and streamed.startswith(text)
        with sqlite3.connect(tmp_path / "tollgate.db") as db:
            rows = db.execute("SELECT endpoint, total_tokens FROM usage_records ORDER BY id").fetchall()
            after = db.execute("SELECT token_balance FROM customers WHERE external_id = 'acme'").fetchone()
        assert [r[0] for r in rows] == ["chat/completions", "messages", "messages"]
        assert rows[1][1] == int(tokens)
        assert after == (10_000 - sum(r[1] for r in rows),)
    finally:
        stop_group(proc)
        log.close()
