"""The choice ``abrl optimize`` records in the shipped file's card (``card.deploy``), and how the
Predictor reads it back. Torch-free.

A choice is measured on one CPU: it is used where the CPU model and its relevant flags are the
same, and set aside (with the reason) elsewhere, where the Predictor's usual order applies.
"""

from __future__ import annotations

from typing import Any

from abrl_deploy.card import ModelCard
from abrl_deploy.machine import signature


def deploy_choice(card: ModelCard) -> tuple[dict[str, Any] | None, str | None]:
    """(the recorded choice if it applies here, why it does not apply) — both None: no choice."""
    choice = card.deploy.get("choice") if card.deploy else None
    if not choice:
        return None, None
    measured_on = card.deploy.get("machine", {})
    here = signature()
    if not here["cpu_flags"]:
        return None, (
            f"abrl optimize chose {choice['backend']}, but this CPU ({here['cpu']}) does not say "
            "which instruction sets it has, so the choice cannot be matched to it"
        )
    differs = [
        f"{key} {_show(measured_on.get(key, []))} there, {_show(value)} here"
        for key, value in here.items()
        if measured_on.get(key, []) != value  # a record without "gpus" was made without any
    ]
    if differs:
        return None, (
            f"abrl optimize chose {choice['backend']} on another machine ({'; '.join(differs)}); "
            "run abrl optimize on this one"
        )
    return choice, None


def _show(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(map(str, value)) or "none"
    return str(value)
