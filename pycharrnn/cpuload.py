"""How busy the machine is with other programs while a run trains.

A run that shares its cores with other programs gets less done, and the
thread governor (csrc/threads.hpp) then shrinks the kernels' team so that it
at least does not get slower than one thread. :class:`CpuLoad` says how much
of the cores this process may use (its affinity mask) the other programs
took over a window of time, from the kernel's own counts (``/proc/stat`` per
CPU, less this process's CPU time). Without ``/proc`` it measures nothing.
"""

from __future__ import annotations

import os
import time
from typing import Dict, Optional, Tuple

__all__ = ["CpuLoad"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_seconds(cpus: set) -> Optional[float]:
    """CPU seconds the CPUs ``cpus`` have spent busy since boot (all programs)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            lines = f.readlines()
    except OSError:
        return None
    busy = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or len(fields) < 5:
            continue
        if int(name[3:]) in cpus:
            values = [int(v) for v in fields[:8]]
            busy += sum(values) - values[3] - values[4]  # less idle and iowait
    return busy / _TICK


class CpuLoad:
    """Other programs' use of this process's cores, window by window."""

    def __init__(self) -> None:
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
        self.cpus = set(cpus)
        self.cores = len(self.cpus)
        self._last = self._read()

    def _read(self) -> Optional[Tuple[float, float, float]]:
        busy = _busy_seconds(self.cpus) if self.cpus else None
        if busy is None:
            return None
        t = os.times()
        return time.monotonic(), t.user + t.system, busy

    def window(self, min_seconds: float = 1.0) -> Optional[Dict[str, float]]:
        """Since the last window (or the start): ``cores`` usable, ``this_run``
        cores' worth of CPU time this process used, ``others`` what the other
        programs used on the same cores (both in cores, averaged over the
        window); None when unknown or the window is shorter than
        ``min_seconds`` (then the next one continues it)."""
        now = self._read()
        if now is None or self._last is None or now[0] - self._last[0] < min_seconds:
            return None
        wall = now[0] - self._last[0]
        own = (now[1] - self._last[1]) / wall
        # Clock ticks are coarse: the others' share is never below zero.
        others = max(0.0, (now[2] - self._last[2]) / wall - own)
        self._last = now
        return {"cores": float(self.cores), "this_run": round(own, 2),
                "others": round(min(others, self.cores), 2)}

    def record(self, metrics: Dict[str, object], windows: list) -> None:
        """A window ending now, if known, as ``metrics["cpu"]`` and appended to
        ``windows``."""
        w = self.window()
        if w is not None:
            metrics["cpu"] = w
            windows.append(w)

    @staticmethod
    def busy(w: Dict[str, float]) -> bool:
        """Whether a window's other load is enough to slow a run down
        noticeably: a quarter of the cores, and at least half of one."""
        return w["others"] >= max(0.5, 0.25 * w["cores"])

    @staticmethod
    def describe(w: Dict[str, float]) -> str:
        return (f"other programs are using about {w['others']:.1f} of the "
                f"{int(w['cores'])} usable cores; this run gets about "
                f"{w['this_run']:.1f} ({100 * w['this_run'] / w['cores']:.0f}%)")
