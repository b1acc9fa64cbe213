"""Terminal rendering shared by several commands."""

from __future__ import annotations

VERDICT_STYLE = {"SUPPORTED": "bold green", "REFUTED": "bold red", "INCONCLUSIVE": "bold yellow"}


def verdict_markup(verdict: str) -> str:
    """SUPPORTED / REFUTED / INCONCLUSIVE in its colour."""
    return f"[{VERDICT_STYLE[verdict]}]{verdict}[/]"
