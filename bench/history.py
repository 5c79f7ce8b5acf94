"""The results kept per measured commit (`bench/results/<date>-<commit>.txt`, committed), the one-line
summary per database each report starts with, and the ratio of each figure against the previous
committed results file: how a change moved the figures, read from one run each."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = RESULTS.parent.parent
KEPT = re.compile(r"^\d{8}-[0-9a-f]{7,40}(?:-dirty)?\.txt$")
# summary SQLite: cpu_a=1.51 cpu_b=2.25 added_b_p50=+2.03 added_b_p99=+7.26 ttfc_c2=+4.45 cpu_m=1.64
LINE = re.compile(r"^summary (?P<label>\S+): (?P<figures>.*)$")
FIGURE = re.compile(r"(?P<name>[a-z0-9_]+)=(?P<value>[+-]?\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class Summary:
    label: str
    figures: dict[str, float]

    def line(self) -> str:
        shown = " ".join(f"{name}={_fmt(name, value)}" for name, value in self.figures.items())
        return f"summary {self.label}: {shown}"


def _fmt(name: str, value: float) -> str:
    return f"{value:+.2f}" if name.startswith(("added", "ttfc")) else f"{value:.2f}"


def parse(text: str) -> dict[str, Summary]:
    """The summary lines of a results file, by database label."""
    found = {}
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if m:
            figures = {f["name"]: float(f["value"]) for f in FIGURE.finditer(m["figures"])}
            found[m["label"]] = Summary(m["label"], figures)
    return found


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def file_name(now: float | None = None) -> str:
    """This run's results file: today's date and the commit measured (`-dirty` if app code changed)."""
    commit = _git("rev-parse", "--short=10", "HEAD") or "unknown"
    if _git("status", "--porcelain", "--", "app", "migrations", "wsgi.py", "gunicorn.conf.py"):
        commit += "-dirty"
    return time.strftime("%Y%m%d", time.localtime(now)) + f"-{commit}.txt"


def previous(current: str) -> Path | None:
    """The results file most recently committed, other than this run's (newest commits first:
    a day's files sort by commit hash, not by time)."""
    added = _git("log", "--diff-filter=A", "--name-only", "--format=", "--", str(RESULTS.relative_to(ROOT)))
    for line in added.splitlines():
        name = Path(line).name
        if KEPT.match(name) and name != current and (RESULTS / name).exists():
            return RESULTS / name
    return None


def against(now: dict[str, Summary], before_path: Path | None) -> list[str]:
    """Each figure of this run against the same figure in the previous committed results file."""
    if before_path is None:
        return ["  no earlier committed results file in bench/results/ to compare with"]
    before = parse(before_path.read_text())
    out = [f"  against {before_path.name} (now / then; latency figures: now - then, in ms):"]
    for label, summary in now.items():
        then = before.get(label)
        if then is None:
            out.append(f"    {label}: not measured then")
            continue
        parts = []
        for name, value in summary.figures.items():
            old = then.figures.get(name)
            if old is None:
                parts.append(f"{name} new")
            elif name.startswith(("added", "ttfc")):
                parts.append(f"{name} {value - old:+.2f}")
            elif old:
                parts.append(f"{name} {value / old:.2f}x")
        out.append(f"    {label}: " + ", ".join(parts))
    return out
