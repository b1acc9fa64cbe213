"""A file shipped by abrl optimize: the Predictor's ``auto`` runs it the way the card's recorded
choice says, on the CPU it was measured on, and states why it does not elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
from card_model import card_for, write_card_model

from abrl_deploy import Predictor
from abrl_deploy import deploy_record as record
from abrl_deploy.machine import signature


def _shipped(tmp_path, backend: str, ov_precision: str | None, machine=None):
    deploy = {"choice": {"backend": backend, "ov_precision": ov_precision,
                         "runtime_precision": "int8 QDQ", "threads": None},
              "machine": machine or signature(), "source": "model.int8.onnx"}  # fmt: skip
    return _with_deploy(tmp_path, deploy)


def test_auto_runs_the_recorded_choice_on_the_cpu_it_was_measured_on(tmp_path):
    pytest.importorskip("openvino")
    path = _shipped(tmp_path, "ov-cpu", "f32")
    pixels = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    with Predictor(path) as p, Predictor(path, backend="ort-cpu") as ort:
        assert p.backend == "ov-cpu" and p.choice["backend"] == "ov-cpu"
        info = p.describe()
        assert info["chosen_by"]["tool"] == "abrl optimize" and info["precision_asked"] == "f32"
        assert info["inference_precision"] == "f32"
        assert p.backend_note == "ov-cpu (int8 QDQ): abrl optimize's choice on this CPU"
        np.testing.assert_allclose(p.logits(pixels), ort.logits(pixels), atol=1e-4)
    with Predictor(path, backend="ort-cpu") as named:  # a named backend wins over the record
        assert named.backend == "ort-cpu" and named.choice is None


def test_a_choice_measured_on_another_cpu_is_set_aside_with_the_reason(tmp_path):
    other = {"cpu": "Some Other CPU", "cpu_flags": ["avx2", "amx_bf16"]}
    path = _shipped(tmp_path, "ov-cpu", "bf16", machine=other)
    with Predictor(path) as p:
        assert p.backend == "ort-cpu" and p.choice is None
        note = "abrl optimize chose ov-cpu on another machine (cpu Some Other CPU there, "
        assert p.backend_note.startswith(note)
        assert "cpu_flags avx2 amx_bf16 there" in p.backend_note


def test_a_choice_whose_backend_cannot_run_here_falls_back_with_the_reason(tmp_path, monkeypatch):
    path = _shipped(tmp_path, "ov-cpu", "bf16")
    import abrl_deploy.predictor as predictor_module

    real = predictor_module.unavailable_reason

    def unavailable(backend: str) -> str | None:
        return "OpenVINO is not installed" if backend == "ov-cpu" else real(backend)

    monkeypatch.setattr(predictor_module, "unavailable_reason", unavailable)
    with Predictor(path) as p:
        assert p.backend == "ort-cpu" and p.choice is None
        assert "abrl optimize's choice ov-cpu: OpenVINO is not installed" in p.skipped


def test_a_file_without_a_record_is_unchanged(tmp_path):
    path = write_card_model(tmp_path / "model.onnx")
    with Predictor(path) as p:
        assert p.backend == "ort-cpu" and p.choice is None
        assert not any("optimize" in s for s in p.skipped)
    assert record.deploy_choice(card_for()) == (None, None)


def test_abrl_predict_says_which_choice_it_followed(tmp_path):
    pytest.importorskip("openvino")
    from PIL import Image
    from typer.testing import CliRunner

    from abrl_deploy.cli import app

    path = _shipped(tmp_path, "ov-cpu", "f32")
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    result = CliRunner().invoke(app, ["predict", str(path), str(image)])
    assert result.exit_code == 0, result.output
    assert "abrl optimize's choice on this CPU" in result.output and "on ov-cpu" in result.output


def test_the_chosen_openvino_runner_serves_concurrent_threads(tmp_path):
    pytest.importorskip("openvino")
    import concurrent.futures

    path = _shipped(tmp_path, "ov-cpu", "f32")
    batches = [np.random.default_rng(i).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
               for i in range(16)]  # fmt: skip
    with Predictor(path, threads=1) as p:
        assert p.backend == "ov-cpu" and p.describe()["threads"] == 1  # not the record's None
        want = [p.logits(b) for b in batches]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            got = list(pool.map(p.logits, batches))  # an infer request is not thread-safe
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g, w)


def test_a_chosen_backend_that_fails_to_open_falls_back_with_the_reason(tmp_path, monkeypatch):
    import abrl_deploy.predictor as predictor_module
    from abrl_deploy.errors import RuntimeBackendError

    path = _shipped(tmp_path, "ov-cpu", "bf16")
    real = predictor_module.make_runner

    class Broken:
        def open(self):
            raise RuntimeBackendError("ov-cpu cannot load model.deploy.onnx: no such op")

    def make_runner(backend, *args, **kwargs):
        return Broken() if backend == "ov-cpu" else real(backend, *args, **kwargs)

    def unavailable(backend):
        return None if backend in ("ov-cpu", "ort-cpu") else "not here"

    monkeypatch.setattr(predictor_module, "unavailable_reason", unavailable)
    monkeypatch.setattr(predictor_module, "make_runner", make_runner)
    with Predictor(path) as p:
        assert p.backend == "ort-cpu" and p.choice is None
        assert "abrl optimize's choice ov-cpu: ov-cpu cannot load" in p.backend_note


def test_the_cpu_signature_reads_x86_and_arm_and_refuses_a_cpu_it_cannot_tell(monkeypatch):
    from abrl_deploy import machine

    arm = {"CPU implementer": "0x41", "CPU part": "0xd40", "Features": "fp asimd asimddp bf16 sve"}
    monkeypatch.setattr(machine, "_cpuinfo", lambda: arm)
    assert machine.cpu_model() == "Arm implementer 0x41 part 0xd40"
    assert machine.cpu_flags() == ["asimd", "asimddp", "bf16", "sve"] and machine.has_bf16()
    x86 = {"model name": "Intel Xeon", "flags": "fpu avx2 avx512f amx_bf16 amx_int8"}
    monkeypatch.setattr(machine, "_cpuinfo", lambda: x86)
    assert machine.cpu_flags() == ["avx2", "avx512f", "amx_bf16", "amx_int8"]
    card = card_for().replace(
        deploy={"choice": {"backend": "ov-cpu"}, "machine": machine.signature()}
    )  # on this "Intel Xeon"
    assert record.deploy_choice(card) == ({"backend": "ov-cpu"}, None)
    monkeypatch.setattr(machine, "_cpuinfo", lambda: {"model name": "unknown"})  # no flags
    choice, why = record.deploy_choice(card)
    assert choice is None and "does not say which instruction sets" in why


def test_a_record_made_before_gpus_were_recorded_matches_only_a_machine_without_any(monkeypatch):
    from abrl_deploy import machine

    monkeypatch.setattr(machine, "nvidia_gpus", lambda: [])
    here = machine.signature()
    old = {"cpu": here["cpu"], "cpu_flags": here["cpu_flags"]}  # written before the "gpus" key
    card = card_for().replace(deploy={"choice": {"backend": "ov-cpu"}, "machine": old})
    assert record.deploy_choice(card) == ({"backend": "ov-cpu"}, None)
    monkeypatch.setattr(machine, "nvidia_gpus", lambda: ["NVIDIA H200"])
    choice, why = record.deploy_choice(card)
    assert choice is None and "gpus none there, NVIDIA H200 here" in why


def _with_deploy(tmp_path, deploy):
    props = card_for().replace(deploy=deploy).to_onnx_metadata()
    return write_card_model(tmp_path / "model.deploy.onnx", props=props)


def _choice(**fields):
    base = {"backend": "ort-cpu", "ov_precision": None, "runtime_precision": "fp32", "threads": 1}
    return {"choice": {**base, **fields}, "machine": signature()}


DAMAGED = {  # name: (deploy record, the field the set-aside reason names)
    "unknown backend": (_choice(backend="tpu-9000"), "deploy.choice.backend"),
    "backend of another type": (_choice(backend=7), "deploy.choice.backend"),
    "zero threads": (_choice(threads=0), "deploy.choice.threads"),
    "threads as text": (_choice(threads="8"), "deploy.choice.threads"),
    "threads as a bool": (_choice(threads=True), "deploy.choice.threads"),
    "unknown OpenVINO precision": (_choice(ov_precision="int3"), "deploy.choice.ov_precision"),
    "precision of another type": (_choice(runtime_precision=["fp32"]), "runtime_precision"),
    "choice as a list": ({"choice": ["ort-cpu"], "machine": signature()},
                         'deploy.choice is ["ort-cpu"]'),
    "machine as text": ({**_choice(), "machine": "AMD EPYC"}, "deploy.machine"),
    "flags as text": ({**_choice(), "machine": {**signature(), "cpu_flags": "avx2"}},
                      "deploy.machine"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_a_damaged_deploy_record_is_set_aside_with_its_field_never_a_traceback(tmp_path, name):
    deploy, field = DAMAGED[name]
    with Predictor(_with_deploy(tmp_path, deploy)) as p:
        assert p.backend == "ort-cpu" and p.choice is None
        assert p.backend_note.startswith("the deploy record is set aside: ")
        assert field in p.backend_note and "\n" not in p.backend_note
        assert p.logits(np.zeros((1, 16, 16, 3), np.uint8)).shape == (1, 10)


def test_a_record_missing_its_precision_runs_and_huge_threads_are_capped(tmp_path):
    """The record of issue 20 ({"backend": "ort-cpu", "threads": 8}) crashed backend_note."""
    import os

    deploy = {"choice": {"backend": "ort-cpu", "threads": 10**30}, "machine": signature()}
    with Predictor(_with_deploy(tmp_path, deploy)) as p:
        if not signature()["cpu_flags"]:  # a CPU that names no flags matches no record
            pytest.skip("this CPU lists no instruction-set flags")
        assert p.choice["threads"] == (os.cpu_count() or 1)
        assert p.backend_note == "ort-cpu (unrecorded): abrl optimize's choice on this CPU"
