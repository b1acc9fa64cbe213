"""The choice ``abrl optimize`` records in the shipped file's card (``card.deploy``), and how the
Predictor reads it back. Torch-free.

A choice is measured on one CPU: it is used where the CPU model and its relevant flags are the
same, and set aside (with the reason) elsewhere, where the Predictor's usual order applies.
"""

from __future__ import annotations

import os
from typing import Any

from abrl_deploy.card import ModelCard
from abrl_deploy.machine import signature
from abrl_deploy.runtime.backends import ARTIFACT
from abrl_deploy.runtime.openvino import PRECISIONS as OV_PRECISIONS

# A record names a backend that runs a shipped file (not a run directory); a record abrl did not
# write, or another version wrote, is checked where it is read and set aside when it does not fit.
RECORD_BACKENDS = tuple(b for b, artifact in ARTIFACT.items() if artifact != "run")


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
        return None, f"deploy.choice is {type(choice).__name__}, expected an object"
    backend = choice.get("backend")
    if backend not in RECORD_BACKENDS:
        return None, f"deploy.choice.backend is {backend!r}, expected one of {RECORD_BACKENDS}"
    precision = choice.get("runtime_precision", "")
    if not isinstance(precision, str) or len(precision) > 100:
        return None, "deploy.choice.runtime_precision is not a short text"
    ov = choice.get("ov_precision")
    if ov is not None and ov not in OV_PRECISIONS:
        return None, f"deploy.choice.ov_precision is {ov!r}, expected one of {OV_PRECISIONS}"
    threads = choice.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):  # fmt: skip
        return None, f"deploy.choice.threads is {threads!r}, expected a positive integer or null"
    shaped = isinstance(machine, dict) and isinstance(machine.get("cpu", ""), str)
    if not (shaped and _texts(machine.get("cpu_flags", [])) and _texts(machine.get("gpus", []))):
        return None, "deploy.machine is not {cpu: text, cpu_flags: [text], gpus: [text]}"
    if threads is not None and threads > (os.cpu_count() or 1):  # never more than this CPU has
        return {**choice, "threads": os.cpu_count() or 1}, None
    return choice, None


def _texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


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
