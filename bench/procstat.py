"""CPU time and memory of processes, read straight from /proc (Linux; no psutil)."""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pid: int, children: bool = True) -> float:
    """utime + stime of the process (all its threads), plus its reaped children's if asked."""
    try:
        f = _stat_fields(pid)
    except (OSError, ValueError):
        return 0.0
    # Fields after the name, 0-based: 11 utime, 12 stime, 13 cutime, 14 cstime.
    ticks = int(f[11]) + int(f[12])
    if children:
        ticks += int(f[13]) + int(f[14])
    return ticks / TICK


def children_of(pid: int) -> list[int]:
    """Direct children of pid (gunicorn's workers)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if int(_stat_fields(int(entry.name))[1]) == pid:
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return sorted(found)


def tree_cpu_seconds(root: int) -> float:
    """CPU of a process and of its live children, reaped grandchildren included."""
    return cpu_seconds(root) + sum(cpu_seconds(child) for child in children_of(root))


def status_kb(pid: int, field: str) -> int | None:
    """A ``kB`` line of /proc/<pid>/status, e.g. VmHWM (peak RSS) or VmRSS."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (``echo 5 > clear_refs``); False where the kernel refuses."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores), from the first line of /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICK


def pids_with(text: str) -> list[int]:
    """Processes whose command line contains text (e.g. the PostgreSQL backends of one database)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if text in Path(f"/proc/{entry.name}/cmdline").read_text(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found
