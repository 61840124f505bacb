"""How numbers read in messages: counts with their nouns, durations."""

from __future__ import annotations

__all__ = ["plural", "clock"]


def plural(n: int, noun: str) -> str:
    """'1 character', '2 characters', '1,234 characters' (a regular plural)."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def clock(seconds: float) -> str:
    """A duration as m:ss or h:mm:ss."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"
