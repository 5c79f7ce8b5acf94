"""Optional (`--profile SECONDS`): where the worker's CPU goes, sampled with py-spy while (a) runs.

It runs after the measured scenarios, so the sampler's own cost never shows in the figures. The raw
collapsed stacks are kept in bench/results/profile-<db>.txt (speedscope and flamegraph.pl read them);
the report gets a summary: samples by the package of the innermost frame (self time), and the
gateway's own functions by inclusive time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bench.gateway import ROOT
from bench.scenarios import Scenario

if TYPE_CHECKING:
    from bench.gateway import Gateway
    from bench.scenarios import Settings

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
TOP = 14


def _pyspy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(
    gateway: Gateway, run_load: Callable[[Scenario], object], settings: Settings, base: Path
) -> list[str]:
    pyspy = _pyspy()
    if pyspy is None:
        return ["profile: py-spy is not installed (it is in the dev extras: pip install py-spy)"]
    workers = gateway.workers()
    if not workers:
        return ["profile: no worker to profile"]
    raw, svg = base.with_suffix(".txt"), base.with_suffix(".svg")
    seconds = max(1, round(settings.profile))
    # Two samplers on the one worker: raw stacks for the summary, and a flame graph to look at.
    samplers = [
        subprocess.Popen(
            [pyspy, "record", "--pid", str(workers[0]), "--duration", str(seconds), "--rate", "200",
             "--format", fmt, "--function", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for fmt, out in (("raw", raw), ("flamegraph", svg))
    ]  # fmt: skip
    load = Scenario("profile", "profile", "closed", concurrency=settings.concurrency, duration=seconds + 1)
    run_load(load)
    errors = []
    for sampler in samplers:
        try:
            _, err = sampler.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            sampler.kill()
            return ["profile: py-spy did not finish"]
        if sampler.returncode != 0:
            errors.append((err or "").strip().splitlines()[-1:])
    if errors or not raw.exists():
        return [f"profile: py-spy failed: {errors}"]
    title = f"profile of the worker under (a), {seconds} s, py-spy raw stacks in {raw}, flame graph in {svg}"
    return summarize(raw, title)


def _app_modules() -> dict[str, str]:
    """py-spy shortens some paths to a bare file name: map the unambiguous ones back to app/…"""
    found: dict[str, list[str]] = {}
    for path in (ROOT / "app").rglob("*.py"):
        found.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    return {name: paths[0] for name, paths in found.items() if len(paths) == 1}


def _module(file: str, app: dict[str, str]) -> str:
    """The file a frame is in, as app/…, <package>/…, or stdlib:<module>."""
    if "/" not in file:
        return app.get(file, "stdlib:" + file.removesuffix(".py"))
    return file


def _package(module: str) -> str:
    if module.startswith("app/"):
        return module
    return module.split("/", 1)[0]


def _frames(stack: str, app: dict[str, str]) -> list[tuple[str, str]]:
    out = []
    for frame in stack.split(";"):
        m = FRAME.match(frame.strip())
        if m:
            out.append((m["func"], _module(m["file"], app)))
    return out


def _idle(frames: list[tuple[str, str]]) -> bool:
    """A gevent threadpool thread blocked on its queue: py-spy counts it as busy, but it is not."""
    return frames[-1][0] == "acquire_with_timeout" and any(f.endswith("threadpool.py") for _, f in frames)


def summarize(raw: Path, title: str) -> list[str]:
    self_by_package: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    callees: Counter[str] = Counter()
    app = _app_modules()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = _frames(stack, app)
        if not frames or _idle(frames):
            continue
        total += n
        self_by_package[_package(frames[-1][1])] += n
        seen = {f"{func} ({file})" for func, file in frames if file.startswith("app/")}
        for name in seen:
            inclusive[name] += n
        inner = max((i for i, (_, file) in enumerate(frames) if file.startswith("app/")), default=None)
        if inner is not None and inner + 1 < len(frames):
            (caller, _), (callee, file) = frames[inner], frames[inner + 1]
            callees[f"{callee} ({_package(file)}) <- {caller}"] += n
    if not total:
        return [f"{title}: no samples"]
    out = [f"{title}: {total} samples", "      self time by package of the innermost frame:"]
    out += [f"        {n / total:6.1%}  {pkg}" for pkg, n in self_by_package.most_common(TOP)]
    out.append("      gateway functions by inclusive time:")
    out += [f"        {n / total:6.1%}  {name}" for name, n in inclusive.most_common(TOP)]
    out.append("      what the gateway's innermost function calls, by inclusive time:")
    out += [f"        {n / total:6.1%}  {name}" for name, n in callees.most_common(TOP)]
    return out
