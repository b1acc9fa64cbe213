"""The choice ``abrl optimize`` records in the shipped file's card (``card.deploy``), and how the
Predictor reads it back. Torch-free; here, not in ``optimize/``, so that serving does not stand on
the optimizer.

A choice is measured on one CPU: it is used where the CPU model and its relevant flags are the
same, and set aside (with the reason) elsewhere, where the Predictor's usual order applies.
"""

from __future__ import annotations

import os
from typing import Any

from abrl_deploy import fields
from abrl_deploy.card import ModelCard
from abrl_deploy.machine import signature
from abrl_deploy.runtime.backends import SERVING_BACKENDS
from abrl_deploy.runtime.openvino import OV_PRECISIONS

# A record names a backend that runs a shipped file (SERVING_BACKENDS, not a run directory); a
# record abrl did not write, or another version wrote, is checked where it is read and set aside
# when it does not fit.


def check_record(deploy: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(the record's choice, normalised, or None; the problem with it, or None).

    The choice must name a backend the Predictor runs, its precision as text, threads as None or
    a positive integer (capped at this CPU's count) and an OpenVINO precision OpenVINO accepts;
    the machine must be an object of text and lists of text. Unknown fields are kept, unread.
    """
    if not isinstance(deploy, dict) or not deploy:
        return None, None
    choice, machine = deploy.get("choice"), deploy.get("machine", {})
    if not isinstance(choice, dict):
        return None, f"deploy.choice is {fields.show(choice)}, expected a JSON object"
    if "backend" not in choice:
        return None, "deploy.choice has no backend"
    problem = fields.problem(_CHOICE_RULES, choice, prefix="deploy.choice.")
    if problem is None and not isinstance(machine, dict):
        problem = f"deploy.machine is {fields.show(machine)}, expected a JSON object"
    problem = problem or fields.problem(_MACHINE_RULES, machine, prefix="deploy.machine.")
    if problem:
        return None, problem
    threads = choice.get("threads")
    if threads is not None and threads > (os.cpu_count() or 1):  # never more than this CPU has
        return {**choice, "threads": os.cpu_count() or 1}, None
    return choice, None


_CHOICE_RULES = {
    "backend": fields.one_of(SERVING_BACKENDS),
    "runtime_precision": fields.text(max_len=100),
    "ov_precision": fields.one_of(OV_PRECISIONS, null=True),
    # no upper bound: more threads than this CPU has are capped below, not refused
    "threads": fields.integer(1, None, null=True, words="a positive integer"),
}
_MACHINE_RULES = {"cpu": fields.text(), "cpu_flags": fields.texts(), "gpus": fields.texts()}


def deploy_choice(card: ModelCard) -> tuple[dict[str, Any] | None, str | None]:
    """(the recorded choice if it applies here, why it does not apply) — both None: no choice."""
    choice, problem = check_record(card.deploy)
    if problem:
        return None, f"the deploy record is set aside: {problem}"
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
