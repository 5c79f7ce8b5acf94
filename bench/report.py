"""The printed report: per scenario, direct vs each database's gateway, then the targets, then notes."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bench.history import Summary
from bench.scenarios import Settings, scenarios

if TYPE_CHECKING:
    from bench.run import Measured, Section

LABEL_W, COL_W, RATIO_W, ADD_W = 36, 10, 8, 9
CPU_TARGET_MS = {"SQLite": 0.5, "PostgreSQL": 0.6}
DB_CPU_TARGET_MS = 0.15  # the PostgreSQL server's own CPU per call in (a)
LOG_MARKERS = ("[ERROR]", "[CRITICAL]", "[WARNING]", "Traceback", "Exception", "Error:", "WARNING")


def num(v: float | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return str(v)
    a = abs(v)
    return f"{v:.0f}" if a >= 1000 else f"{v:.1f}" if a >= 100 else f"{v:.2f}"


def _pct(m: Measured | None, metric: str, q: str) -> float | None:
    if m is None or not m.load.get(metric):
        return None
    return m.load[metric][q]


def _per_call(value: float | None, m: Measured | None) -> float | None:
    return None if m is None or value is None else value * 1000 / m.calls


def _xacts_per_call(m: Measured | None) -> float | None:
    return None if m is None or m.db_xacts is None else m.db_xacts / m.calls


Getter = Callable[["Measured | None"], float | None]


def _rows(key: str) -> list[tuple[str, Getter, str]]:
    """(label, getter, comparison): comparison is 'lat' (ratio and difference), 'rate' (ratio) or ''."""
    stream = key in ("c", "c2", "d")
    what = "stream duration" if stream else "latency"
    rows: list[tuple[str, Getter, str]] = [
        ("throughput (calls/s)", lambda m: m and m.load["throughput"], "rate"),
        (f"{what} p50 (ms)", lambda m: _pct(m, "latency", "p50"), "lat"),
        (f"{what} p99 (ms)", lambda m: _pct(m, "latency", "p99"), "lat"),
    ]
    if stream:
        rows += [
            ("first chunk p50 (ms)", lambda m: _pct(m, "ttfc", "p50"), "lat"),
            ("first chunk p99 (ms)", lambda m: _pct(m, "ttfc", "p99"), "lat"),
        ]
    rows += [
        ("gateway CPU (ms/call)", lambda m: _per_call(m and m.gateway_cpu_s, m), ""),
        ("PostgreSQL server CPU (ms/call)", lambda m: _per_call(m and m.db_cpu_s, m), ""),
        ("PostgreSQL transactions per call", _xacts_per_call, ""),
        ("PostgreSQL connections opened", lambda m: m and m.db_sessions, ""),
        ("fake upstream CPU (ms/call)", lambda m: _per_call(m and m.upstream_cpu_s, m), ""),
        ("load generator CPU (ms/call)", lambda m: _per_call(m and m.load["cpu_s"], m), ""),
        ("gateway peak RSS (MB)", lambda m: m and m.peak_rss_kb and m.peak_rss_kb / 1024, ""),
        ("other processes (cores busy)", lambda m: m and m.other_cores, ""),
    ]
    if key == "d":
        rows.append(("peak streams in flight", lambda m: m and m.load["peak_inflight"], ""))
    if key in ("b", "c2", "d"):
        rows.append(("load gen. send lag p99 (ms)", lambda m: _pct(m, "sched_lag", "p99"), ""))
    return rows


def _ratio(r: float) -> str:
    return f"{r:.0f}x" if r >= 100 else f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"


def _header(sections: list[Section]) -> str:
    line = f"{'':<{LABEL_W}}{'direct':>{COL_W}}"
    for s in sections:
        line += f"{s.label:>{COL_W + 2}}{'vs dir.':>{RATIO_W}}{'added':>{ADD_W}}"
    return line


def _count_line(direct: Measured, sections: list[Section], key: str) -> str:
    def cell(m: Measured | None) -> str:
        if m is None:
            return "-"
        return f"{m.load['ok']}/{sum(m.load['failures'].values())}"

    line = f"{'  calls ok/failed':<{LABEL_W}}{cell(direct):>{COL_W}}"
    for s in sections:
        line += f"{cell(s.results.get(key)):>{COL_W + 2}}{'':>{RATIO_W + ADD_W}}"
    return line


def _table(key: str, title: str, direct: Measured, sections: list[Section]) -> list[str]:
    out = [title, _header(sections), _count_line(direct, sections, key)]
    for label, get, comparison in _rows(key):
        d = get(direct)
        if d is None and all(get(s.results.get(key)) is None for s in sections):
            continue
        line = f"  {label:<{LABEL_W - 2}}{num(d):>{COL_W}}"
        for s in sections:
            g = get(s.results.get(key))
            ratio = _ratio(g / d) if comparison and g is not None and d else ""
            added = f"{g - d:+.2f}" if comparison == "lat" and g is not None and d is not None else ""
            line += f"{num(g):>{COL_W + 2}}{ratio:>{RATIO_W}}{added:>{ADD_W}}"
        out.append(line.rstrip())
    return out


def _targets(settings: Settings, direct: dict[str, Measured], sections: list[Section]) -> list[str]:
    def cpu(key: str) -> Callable[[Section], tuple[float | None, float]]:
        return lambda s: (_per_call(s.results[key].gateway_cpu_s, s.results[key]), CPU_TARGET_MS[s.label])

    def added(key: str, metric: str, q: str, limit: float) -> Callable[[Section], tuple[float | None, float]]:
        def get(s: Section) -> tuple[float | None, float]:
            g, d = _pct(s.results[key], metric, q), _pct(direct[key], metric, q)
            return (None if g is None or d is None else g - d), limit

        return get

    def failures(s: Section) -> tuple[float | None, float]:
        m = s.results["d"]
        return float(sum(m.load["failures"].values()) + (m.load["calls"] - m.load["ok"])), 0.0

    def duration_ratio(s: Section) -> tuple[float | None, float]:
        g, d = _pct(s.results["d"], "latency", "p50"), _pct(direct["d"], "latency", "p50")
        return (None if g is None or not d else g / d), 1.01

    def db_cpu(s: Section) -> tuple[float | None, float]:
        return _per_call(s.results["a"].db_cpu_s, s.results["a"]), DB_CPU_TARGET_MS

    def rss(s: Section) -> tuple[float | None, float]:
        kb = s.results["d"].peak_rss_kb
        return (kb / 1024 if kb else None), 150.0

    rate = f"{settings.rate:g}"
    rows: list[tuple[str, str, Callable[[Section], tuple[float | None, float]], str]] = [
        ("gateway CPU per non-streaming call, (a)", "<= 0.5 / 0.6 ms", cpu("a"), "ms"),
        ("gateway CPU per non-streaming call, (b)", "<= 0.5 / 0.6 ms", cpu("b"), "ms"),
        ("PostgreSQL server CPU per call, (a)", "<= 0.15 ms", db_cpu, "ms"),
        (f"added latency p50 at {rate} calls/s, (b)", "<= 1 ms", added("b", "latency", "p50", 1), "ms"),
        (f"added latency p99 at {rate} calls/s, (b)", "<= 3 ms", added("b", "latency", "p99", 3), "ms"),
        ("added time to first chunk p50, (c2)", "<= 1 ms", added("c2", "ttfc", "p50", 1), "ms"),
        (f"(d) {settings.long_streams} concurrent streams: failures", "0", failures, ""),
        ("(d) first chunk p50", "<= 10 ms", lambda s: (_pct(s.results["d"], "ttfc", "p50"), 10.0), "ms"),
        ("(d) stream duration p50 / direct", "<= 1.01x", duration_ratio, "x"),
        ("(d) gateway peak RSS", "<= 150 MB", rss, "MB"),
    ]  # fmt: skip
    live = [s for s in sections if not s.skipped]
    head = f"{'Targets':<44}{'target':<17}" + "".join(f"{s.label:>18}" for s in live)
    out = [head]
    for label, target, get, unit in rows:
        line = f"  {label:<42}{target:<17}"
        for s in live:
            value, limit = get(s)
            if value is None:
                line += f"{'n/a':>18}"
                continue
            verdict = "PASS" if value <= limit + 1e-9 else "MISS"
            line += f"{_shown(value, unit, label.startswith('added')) + ' ' + verdict:>18}"
        out.append(line)
    return out


def _shown(value: float, unit: str, signed: bool) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    if not unit:
        return f"{value:.0f}"
    return f"{value:+.2f} {unit}" if signed else f"{value:.2f} {unit}"


def log_findings(path: Path | None, limit: int = 8) -> list[str]:
    """Errors and warnings in the gateway's log, grouped by message with timestamps and pids removed."""
    if path is None or not path.exists():
        return []
    seen: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        if any(marker in line for marker in LOG_MARKERS):
            key = re.sub(r"^\[[^]]*\] \[\d+\] ", "", line)
            key = re.sub(r"\b\d{2,}\b", "N", key)[:160]
            seen[key] += 1
    return [f"{n}x {msg}" for msg, n in seen.most_common(limit)]


def _notes(direct: dict[str, Measured], sections: list[Section]) -> list[str]:
    out = ["Notes"]
    for s in sections:
        if s.skipped:
            state = "FAILED" if s.skipped.startswith("failed") else "SKIPPED"
            out.append(f"  {s.label}: {state} - {' '.join(s.skipped.split())}")
            out += [f"      {f}" for f in s.log_findings]
            continue
        out.append(f"  {s.label}: {s.url}")
        restarted = [k for k, m in s.results.items() if m.workers_before != m.workers_after]
        if restarted:
            out.append(
                f"    worker pid changed during ({', '.join(restarted)}): the worker died or was restarted"
            )
        if any(m.rss_since_start for m in s.results.values()):
            out.append("    peak RSS could not be reset per scenario (clear_refs refused): it is since start")
        leaks = sum(m.load["usage_leaks"] for k, m in s.results.items() if k != "warm")
        if leaks:
            out.append(f"    {leaks} streams showed the usage chunk although the client did not ask for it")
        for key, m in s.results.items():
            for kind, n in m.load["failures"].items():
                out.append(f"    ({key}) {n} failed: {kind}")
        findings = s.log_findings
        out.append(f"    gunicorn log ({s.log_path}): " + ("no errors or warnings" if not findings else ""))
        out += [f"      {f}" for f in findings]
        out += [f"    {p}" for p in s.profile]
    for key, m in direct.items():
        for kind, n in m.load["failures"].items():
            out.append(f"  direct ({key}) {n} failed: {kind}")
    return out


def summaries(direct: dict[str, Measured], sections: list[Section]) -> dict[str, Summary]:
    """One line of figures per database: what the targets judge, and what a change moves."""
    out = {}
    for s in sections:
        if s.skipped:
            continue
        r = s.results

        def added(key: str, metric: str, q: str, r: dict[str, Measured] = r) -> float | None:
            g, d = _pct(r.get(key), metric, q), _pct(direct.get(key), metric, q)
            return None if g is None or d is None else g - d

        figures = {
            "cpu_a": _per_call(r["a"].gateway_cpu_s, r["a"]) if "a" in r else None,
            "cpu_b": _per_call(r["b"].gateway_cpu_s, r["b"]) if "b" in r else None,
            "db_cpu_a": _per_call(r["a"].db_cpu_s, r["a"]) if "a" in r else None,
            "added_b_p50": added("b", "latency", "p50"),
            "added_b_p99": added("b", "latency", "p99"),
            "ttfc_c2": added("c2", "ttfc", "p50"),
            "cpu_c": _per_call(r["c"].gateway_cpu_s, r["c"]) if "c" in r else None,
            "cpu_m": _per_call(r["m"].gateway_cpu_s, r["m"]) if "m" in r else None,
        }
        label = s.label.replace(" ", "")
        out[label] = Summary(label, {k: v for k, v in figures.items() if v is not None})
    return out


def render(
    settings: Settings,
    direct: dict[str, Measured],
    sections: list[Section],
    elapsed_s: float,
    environment: str,
    compared: list[str] | None = None,
) -> str:
    live = [s for s in sections if not s.skipped]
    lines = [
        "=" * 100,
        f"Tollgate benchmark, {time.strftime('%Y-%m-%d %H:%M:%S')}, {elapsed_s:.0f} s in all",
        f"  {environment}",
        f"  gateway: gunicorn -c gunicorn.conf.py wsgi:app, {settings.workers} gevent worker"
        f"{'s' if settings.workers > 1 else ''}, metering on, "
        f"{settings.customers} rotating customers (each created in a warm-up before measuring)",
        "  fake upstream, load generator and gateway are separate processes sharing the machine's cores;",
        "  'vs dir.' = gateway / direct, 'added' = gateway - direct (ms), both from this run.",
        "  Streams: 'stream duration' = send to [DONE], 'first chunk' = send to the first content event;",
        "  open-loop scenarios count both from the scheduled send time.",
        *(
            [
                "  --webhooks: WEBHOOK_URL set (each customer call owes a spend_tracked report), 3 webhook",
                "  subscriptions on customer.created; no sender runs, so only what they add to calls counts.",
            ]
            if settings.webhooks
            else []
        ),
        f"  Redis: {settings.redis_url or 'none (each process keeps its own view)'}",
        "=" * 100,
        *(summary.line() for summary in summaries(direct, sections).values()),
        *(compared or []),
    ]
    for sc in scenarios(settings):
        lines.append("")
        lines += _table(sc.key, sc.title, direct[sc.key], live)
    lines.append("")
    if live:
        lines += _targets(settings, direct, live)
        lines.append(
            "  (CPU target: 0.5 ms on SQLite, 0.6 ms on PostgreSQL; CPU = utime+stime of the gunicorn master"
            " and worker over the run / calls)"
        )
        lines.append("")
    lines += _notes(direct, sections)
    return "\n".join(lines)
