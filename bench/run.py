"""The orchestrator: fake upstream, direct runs, then the gateway on each database, then the report."""

from __future__ import annotations

import contextlib
import json
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import gateway as gw
from bench import history, procstat, profile, report
from bench.scenarios import Scenario, Settings, parse, scenarios

RESULTS = Path(__file__).resolve().parent / "results"
PG_STATS_FLUSH_S = 1.5


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_fd_limit() -> None:
    """500 streams need ~1,000 sockets in the gateway; children inherit the raised soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Upstream:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.upstream", "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=gw.ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "listening":
            raise RuntimeError(f"fake upstream did not start: {line}")
        self.port = int(line[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@dataclass
class Target:
    """Where the load goes: straight to the upstream, or through a gateway."""

    label: str
    port: int
    model: str
    paced_model: str
    auth: str
    messages_model: str
    pace_prefix: str = ""
    gateway: gw.Gateway | None = None
    db_marker: str | None = None  # text in the command line of the database's server processes
    db_counters: Callable[[], tuple[int, int] | None] | None = None

    def db_cpu(self) -> dict[int, float]:
        if self.db_marker is None:
            return {}
        return {pid: procstat.cpu_seconds(pid, children=False) for pid in procstat.pids_with(self.db_marker)}

    def spec(self, scenario: Scenario, customers: int) -> dict:
        spec = scenario.load()
        prefix = self.pace_prefix if scenario.paced else ""
        spec.update(
            host="127.0.0.1",
            port=self.port,
            path=f"{prefix}/v1/messages" if scenario.api == "messages" else f"{prefix}/v1/chat/completions",
            model=self.messages_model
            if scenario.api == "messages"
            else self.paced_model
            if scenario.paced
            else self.model,
            auth=self.auth,
            customers=customers,
        )
        return spec


@dataclass
class Measured:
    load: dict  # the load generator's result
    upstream_cpu_s: float
    wall_s: float
    machine_busy_s: float
    gateway_cpu_s: float | None = None
    db_cpu_s: float | None = None
    db_sessions: int | None = None
    db_xacts: int | None = None
    peak_rss_kb: int | None = None
    rss_since_start: bool = False
    workers_before: list[int] = field(default_factory=list)
    workers_after: list[int] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return max(1, self.load["calls"])

    @property
    def other_cores(self) -> float:
        """Cores kept busy by everything else on the machine while this ran: noise, if not zero."""
        ours = self.upstream_cpu_s + self.load["cpu_s"] + (self.gateway_cpu_s or 0) + (self.db_cpu_s or 0)
        return max(0.0, self.machine_busy_s - ours) / max(self.wall_s, 1e-9)


def measure(target: Target, scenario: Scenario, settings: Settings, upstream: Upstream) -> Measured:
    spec = target.spec(scenario, settings.customers)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.loadgen", json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=gw.ROOT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("load generator did not start")
        g = target.gateway
        workers = g.workers() if g else []
        reset = all(procstat.reset_peak_rss(w) for w in workers)
        counters0 = target.db_counters() if target.db_counters else None
        gw0 = g.cpu_seconds() if g else None
        up0, db0 = procstat.cpu_seconds(upstream.proc.pid), target.db_cpu()
        busy0, t0 = procstat.machine_busy_seconds(), time.monotonic()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out = proc.stdout.readline()
        busy1, t1 = procstat.machine_busy_seconds(), time.monotonic()
        up1, db1 = procstat.cpu_seconds(upstream.proc.pid), target.db_cpu()
        gw1 = g.cpu_seconds() if g else None
        proc.wait(timeout=scenario.budget_s)
    finally:
        if proc.poll() is None:
            proc.kill()
    if not out:
        raise RuntimeError(f"load generator exited {proc.returncode} without a result")
    m = Measured(json.loads(out), up1 - up0, t1 - t0, busy1 - busy0)
    if target.db_marker is not None:
        m.db_cpu_s = sum(cpu - db0.get(pid, 0.0) for pid, cpu in db1.items())
    if target.db_counters is not None:
        time.sleep(PG_STATS_FLUSH_S)  # backends publish their statistics up to a second late
        counters1 = target.db_counters()
        if counters0 is not None and counters1 is not None:
            m.db_sessions, m.db_xacts = counters1[0] - counters0[0], counters1[1] - counters0[1]
    if g is not None:
        m.gateway_cpu_s = gw1 - gw0
        m.workers_before, m.workers_after = workers, g.workers()
        peaks = [procstat.status_kb(w, "VmHWM") for w in m.workers_after]
        m.peak_rss_kb = max((p for p in peaks if p is not None), default=None)
        m.rss_since_start = not reset
    return m


def run_suite(target: Target, settings: Settings, upstream: Upstream) -> dict[str, Measured]:
    results = {}
    for scenario in scenarios(settings):
        log(f"{target.label}: {scenario.title}")
        results[scenario.key] = m = measure(target, scenario, settings, upstream)
        fails = sum(m.load["failures"].values())
        log(f"  {m.load['ok']} ok, {fails} failed, {m.load['throughput']:.1f}/s")
    return results


def warm_up(target: Target, settings: Settings, upstream: Upstream) -> Measured:
    """Every customer once (the first call creates it), plus a few streams, before measuring."""
    plain = Scenario("warm", "warm-up", "closed", concurrency=settings.concurrency, count=settings.customers)
    m = measure(target, plain, settings, upstream)
    stream = Scenario("warm-s", "warm-up", "closed", stream=True, max_tokens=settings.chunks,
                      concurrency=settings.concurrency, count=settings.concurrency * 4)  # fmt: skip
    measure(target, stream, settings, upstream)
    return m


@dataclass
class Section:
    """One database's gateway runs, or why there are none."""

    label: str
    url: str = ""
    results: dict[str, Measured] = field(default_factory=dict)
    warmup: Measured | None = None
    skipped: str | None = None
    log_findings: list[str] = field(default_factory=list)
    log_path: Path | None = None
    profile: list[str] = field(default_factory=list)


def gateway_section(kind: str, settings: Settings, upstream: Upstream, work: Path) -> Section:
    label = "SQLite" if kind == "sqlite" else "PostgreSQL"
    section = Section(label)
    workdir = work / kind
    workdir.mkdir()
    try:
        if kind == "sqlite":
            database = gw.sqlite_database(workdir)
        else:
            database = gw.postgres_database(settings.pg_dsn, settings.pg_database)
    except gw.GatewayError as exc:
        section.skipped = str(exc)
        log(f"{label}: skipped: {exc}")
        return section
    section.url = database.url
    RESULTS.mkdir(exist_ok=True)
    section.log_path = RESULTS / f"gunicorn-{kind}.log"
    section.log_path.write_text("")
    config = gw.config_file(workdir / "bench.yaml", upstream.port, settings.pace_ms)
    # --webhooks: the deliveries and LiteLLM reports are owed (written with the events and records);
    # no sender runs, so what is measured is what they add to the calls themselves.
    hook_url = f"http://127.0.0.1:{upstream.port}/hooks" if settings.webhooks else None
    if settings.redis_url:
        import redis

        redis.Redis.from_url(settings.redis_url).flushdb()  # breakers and windows of an earlier run
    gateway = gw.Gateway(
        database,
        workdir,
        free_port(),
        config,
        section.log_path,
        webhook_url=hook_url,
        redis_url=settings.redis_url,
        workers=settings.workers,
    )
    target = Target(
        label,
        gateway.port,
        gw.MODEL,
        gw.PACED_MODEL,
        f"Bearer {gw.API_KEY}",
        gw.MESSAGES_MODEL,
        gateway=gateway,
    )
    if kind == "postgres":
        target.db_marker = f" {settings.pg_database} "
        target.db_counters = lambda: gw.pg_counters(settings.pg_dsn, settings.pg_database)
    try:
        log(f"{label}: setup and start ({database.url})")
        gateway.setup()
        gateway.start()
        if hook_url:
            for i in range(3):
                gateway.subscribe(f"{hook_url}/{i}", "customer.created")
        log(f"{label}: warm-up, {settings.customers} customers")
        section.warmup = warm_up(target, settings, upstream)
        if section.warmup.load["ok"] == 0:
            raise gw.GatewayError(f"every warm-up call failed: {section.warmup.load['failures']}")
        section.results = run_suite(target, settings, upstream)
        if settings.profile > 0:
            log(f"{label}: profiling the worker for {settings.profile:g} s")
            section.profile = profile.record(
                gateway,
                lambda sc: measure(target, sc, settings, upstream),
                settings,
                RESULTS / f"profile-{kind}",
            )
    except (gw.GatewayError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        section.skipped = f"failed: {exc}"
        log(f"{label}: {section.skipped}")
    finally:
        gateway.stop()
    section.log_findings = report.log_findings(section.log_path)
    return section


def main(argv: list[str] | None = None) -> int:
    settings = parse(argv)
    started, began = time.monotonic(), time.time()
    raise_fd_limit()
    work = Path(tempfile.mkdtemp(prefix="tollgate-bench-"))
    upstream = Upstream()
    try:
        log(f"fake upstream on 127.0.0.1:{upstream.port}")
        direct = Target("direct", upstream.port, gw.UPSTREAM_MODEL, gw.UPSTREAM_MODEL,
                        f"Bearer {gw.UPSTREAM_KEY}", gw.UPSTREAM_MODEL,
                        pace_prefix=f"/pace/{settings.pace_ms}")  # fmt: skip
        warm_up(direct, settings, upstream)
        direct_results = run_suite(direct, settings, upstream)
        sections = [gateway_section(kind, settings, upstream, work) for kind in settings.databases]
    finally:
        upstream.stop()
        shutil.rmtree(work, ignore_errors=True)
    kept = history.file_name()
    compared = history.against(report.summaries(direct_results, sections), history.previous(kept))
    text = report.render(
        settings, direct_results, sections, time.monotonic() - started, environment(), compared
    )
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.txt").write_text(text + "\n")
    (RESULTS / kept).write_text(text + "\n")  # commit it: the next change's run compares with it
    log(f"results kept in bench/results/{kept}")
    if settings.profile:  # this run's flame graphs, kept beside it: <date>-<commit>-<db>.svg
        for kind in settings.databases:
            graph = RESULTS / f"profile-{kind}.svg"
            if graph.exists() and graph.stat().st_mtime >= began:  # made by this run
                shutil.copyfile(graph, RESULTS / f"{kept.removesuffix('.txt')}-{kind}.svg")
    return 0


def environment() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = _git("describe", "--always", "--dirty") or "?"
        changed = _git("status", "--porcelain", "--", "app", "migrations", "wsgi.py", "gunicorn.conf.py")
        if changed:
            files = [line.split(maxsplit=1)[-1] for line in changed.splitlines()]
            commit += f" (uncommitted: {', '.join(files)})"
    import gevent
    import gunicorn

    return (
        f"{len(__import__('os').sched_getaffinity(0))} cores ({cpu}), Linux {platform.release()}, "
        f"Python {platform.python_version()}, gunicorn {gunicorn.__version__}, gevent {gevent.__version__}, "
        f"commit {commit}"
    )


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=gw.ROOT, capture_output=True, text=True, timeout=10)
    return done.stdout.strip()
