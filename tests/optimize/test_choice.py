"""The choice rule of abrl optimize on hand-made rows: eligibility, the fastest eligible variant,
the frontier; and which candidates are planned on which CPU."""

from __future__ import annotations

import pytest

from abrl_deploy.optimize import candidates as candidates_module
from abrl_deploy.optimize.candidates import REFERENCE, plan_candidates
from abrl_deploy.optimize.choice import choose, mark_eligible, mark_frontier
from abrl_deploy.optimize.spec import OptimizeSpec


def row(label, ms, top1, shippable=True):
    return {"label": label, "latency": {"p50_ms": ms}, "select": {"top1": top1},
            "shippable": shippable}  # fmt: skip


def test_the_fastest_variant_within_the_budget_is_chosen_not_the_fastest_overall():
    rows = [row(REFERENCE, 300, 90.0, shippable=False), row("fp32", 200, 90.0),
            row("bf16", 100, 89.5), row("int8", 50, 89.4),
            row("torch bf16", 40, 90.0, shippable=False)]  # fmt: skip
    mark_eligible(rows, reference_top1=90.0, max_drop=0.5)
    assert [r["eligible"] for r in rows] == [False, True, True, False, False]
    assert choose(rows)["label"] == "bf16"  # int8 lost 0.6 points; torch bf16 is not shippable
    assert [r["chosen"] for r in rows] == [False, False, True, False, False]


def test_a_drop_of_exactly_max_drop_is_allowed_and_a_larger_budget_admits_more():
    rows = [row(REFERENCE, 300, 90.0, False), row("fp32", 200, 90.0), row("int8", 50, 89.4)]
    mark_eligible(rows, 90.0, max_drop=0.6)
    assert choose(rows)["label"] == "int8"
    mark_eligible(rows, 90.0, max_drop=0.0)
    assert choose(rows)["label"] == "fp32"


def test_a_variant_more_accurate_than_the_reference_is_eligible():
    rows = [row(REFERENCE, 300, 90.0, False), row("int8", 50, 91.0)]
    mark_eligible(rows, 90.0, 0.5)
    assert rows[1]["select_drop"] == pytest.approx(-1.0) and choose(rows)["label"] == "int8"


def test_nothing_eligible_chooses_nothing():
    rows = [row(REFERENCE, 300, 90.0, False), row("int8", 50, 80.0)]
    mark_eligible(rows, 90.0, 0.5)
    assert choose(rows) is None and not any(r["chosen"] for r in rows)


def test_the_frontier_holds_exactly_the_rows_nothing_beats_on_both_axes():
    rows = [row("a", 10, 80.0), row("b", 20, 90.0), row("c", 30, 85.0), row("d", 20, 88.0),
            row("e", 10, 80.0)]  # fmt: skip
    mark_frontier(rows)
    # c: b is faster and more accurate; d: b is as fast and more accurate; a and e tie (neither
    # beats the other), so both stay
    assert {r["label"] for r in rows if r["frontier"]} == {"a", "b", "e"}


def _labels(spec, files):
    planned, skipped = plan_candidates(spec, files)
    return [c.label for c in planned], skipped


def test_bf16_variants_only_where_the_cpu_has_bf16_unless_asked(monkeypatch, tmp_path):
    files = {p: tmp_path / f"{p}.onnx" for p in ("fp32", "fp16", "int8")}
    spec = OptimizeSpec(run_dir=tmp_path, backends=("ort-cpu", "torch-bf16"))
    monkeypatch.setattr(candidates_module, "has_bf16", lambda: False)
    labels, skipped = _labels(spec, files)
    assert labels == [REFERENCE, "ort-cpu · fp32 file", "ort-cpu · fp16 file",
                      "ort-cpu · int8 file"]  # fmt: skip
    assert "bf16 would be emulated" in skipped[0]["reason"]
    monkeypatch.setattr(candidates_module, "has_bf16", lambda: True)
    assert "torch bf16 autocast" in _labels(spec, files)[0]
    off = OptimizeSpec(run_dir=tmp_path, backends=("torch-bf16",), bf16="off")
    assert _labels(off, files)[0] == [REFERENCE]
    monkeypatch.setattr(candidates_module, "has_bf16", lambda: False)
    on = OptimizeSpec(run_dir=tmp_path, backends=("torch-bf16",), bf16="on")
    assert _labels(on, files)[0] == [REFERENCE, "torch bf16 autocast"]


def test_openvino_runs_each_file_in_an_explicit_precision(monkeypatch, tmp_path):
    pytest.importorskip("openvino")
    files = {p: tmp_path / f"{p}.onnx" for p in ("fp32", "int8")}
    spec = OptimizeSpec(run_dir=tmp_path, backends=("ov-cpu",), precisions=("fp32", "int8"))
    monkeypatch.setattr(candidates_module, "has_bf16", lambda: True)
    planned, _ = plan_candidates(spec, files)
    assert [(c.file, c.ov_precision) for c in planned if c.backend == "ov-cpu"] == [
        ("fp32", "f32"), ("fp32", "bf16"), ("int8", "bf16")]  # fmt: skip
    monkeypatch.setattr(candidates_module, "has_bf16", lambda: False)
    planned, _ = plan_candidates(spec, files)
    assert {c.ov_precision for c in planned if c.backend == "ov-cpu"} == {"f32"}


def test_a_variant_whose_file_was_not_built_is_skipped_with_the_reason(tmp_path):
    spec = OptimizeSpec(run_dir=tmp_path, backends=("ort-cpu",))
    labels, skipped = _labels(spec, {"fp32": tmp_path / "fp32.onnx"})
    assert labels == [REFERENCE, "ort-cpu · fp32 file"]
    assert {s["candidate"] for s in skipped} >= {"ort-cpu · fp16 file", "ort-cpu · int8 file"}


@pytest.mark.parametrize(
    "kwargs, message",
    [({"max_drop": -1}, "--max-drop"), ({"precisions": ("int4",)}, "--precisions"),
     ({"backends": ()}, "--backends"), ({"bf16": "yes"}, "--bf16"),
     ({"select_images": 0}, "--select-images"), ({"batch": 0}, "--batch")],
)  # fmt: skip
def test_bad_options_are_refused_with_the_flag_named(tmp_path, kwargs, message):
    from abrl_deploy.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        OptimizeSpec(run_dir=tmp_path, **kwargs)
