"""abrl info reads like a report: rounded numbers, sizes in KB/MB, a class count with the first
names and an ellipsis, both heads, ABRL's inner problem, the training and the deploy record."""

from __future__ import annotations

from card_model import card_for

from abrl_deploy import machine
from abrl_deploy.cli.info import report


def describe(card) -> dict:
    files = {"model.safetensors": 44_900_000, "card.json": 5300}
    return {"kind": "run", "path": "run", "files": files, "card": card.to_dict()}


def test_a_run_reads_like_a_report():
    card = card_for(classes=12).replace(
        metrics={"test_top1": 98.33333333333333},
        head={"source": "refit", "own_head_kind": "the persistent head of the inner loop",
              "own_head": {"top1": 67.77777777777777}, "refit_head": {"top1": 98.33333333333333},
              "inner_problem": "memory",
              "split_diagnostics": {"rows": 2000, "residual_over_ridge": 1234.5678,
                                    "distance_to_optimum": 0.123456, "head_top1": 91.2345}},
        training={"precision": "bf16", "channels_last": True, "device": "cpu",
                  "precision_reason": "auto: the CPU has avx512_bf16", "cpu": "AMD EPYC"},
    )  # fmt: skip
    rows = report(describe(card))
    assert rows["classes"] == "12: a, b, c, d, e, f, g, h, …"
    assert rows["test top-1"] == "98.33%"
    assert (
        "refit 98.33%" in rows["heads (test top-1)"] and "own 67.78%" in rows["heads (test top-1)"]
    )
    assert rows["ABRL inner problem"].startswith("memory; on 2000 train rows: ‖∇L_in‖/μ 1.23e+03")
    assert rows["trained"].startswith("bf16, channels_last on cpu")
    assert rows["files"] == "model.safetensors (42.8 MB), card.json (5.2 KB)"
    assert "98.33333" not in " ".join(rows.values())


def test_the_deploy_record_says_whether_it_matches_this_machine():
    here = machine.signature()
    record = {"choice": {"backend": "ort-cpu", "runtime_precision": "int8", "threads": 2},
              "machine": here, "speedup_vs_torch_eager": 4.7512}  # fmt: skip
    line = report(describe(card_for().replace(deploy=record)))["deploy record"]
    assert line.startswith("ort-cpu in int8, 4.75× PyTorch eager")
    assert ("matches this machine" in line) == bool(here["cpu_flags"])
    other = dict(record, machine={"cpu": "Elsewhere", "cpu_flags": ["avx2"], "gpus": []})
    line = report(describe(card_for().replace(deploy=other)))["deploy record"]
    assert "chosen on Elsewhere from the validation split (an older abrl" in line
    assert "does not apply here" in line
    # the images it was chosen on: named by the record, or said to be the old rule's
    new = dict(record, chosen_on="select half of the test split")
    line = report(describe(card_for().replace(deploy=new)))["deploy record"]
    assert "from select half of the test split;" in line


def test_a_damaged_deploy_record_is_reported_not_raised():
    broken = {"choice": {"threads": 8}, "machine": "not a dict", "speedup_vs_torch_eager": "fast"}
    line = report(describe(card_for().replace(deploy=broken)))["deploy record"]
    assert line.startswith("None in ?") or "unreadable here" in line
