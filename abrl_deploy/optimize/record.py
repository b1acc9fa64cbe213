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
    if measured_on != here:
        return None, (
            f"abrl optimize chose {choice['backend']} on another CPU ({measured_on.get('cpu')}, "
            f"{' '.join(measured_on.get('cpu_flags', []))}); run abrl optimize on this one "
            f"({here['cpu']}, {' '.join(here['cpu_flags'])})"
        )
    return choice, None
