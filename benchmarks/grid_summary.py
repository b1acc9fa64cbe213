"""One JSON of every run under a grid's runs/ folder: both heads, the curves, ABRL's diagnostics.

For the evidence in benchmarks/results/: the reproduce report holds the tables; this keeps what
the tables leave out (per-epoch curves, split-level diagnostics, runs outside the preset's
tables such as extra ablations), read from each run's card.json and metrics.jsonl.

    python benchmarks/grid_summary.py runs/transfer-grid/runs OUT.json [--note TEXT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from abrl_deploy.reproduce.runner import read_curves

# per-epoch fields kept (when a run logs them)
CURVE = ("epoch", "seconds", "test_top1", "val_top1", "train_top1", "grad_norm", "penalty",
         "val_ce", "lr")  # fmt: skip
CONFIG = ("method", "inner_problem", "hypergrad", "lambda_", "label_rows", "epochs", "lr",
          "grad_clip", "precision", "pretrained", "seed", "device")  # fmt: skip


def summarise_run(run: Path) -> dict:
    card = json.loads((run / "card.json").read_text())
    rows = read_curves(run)
    head = card.get("head") or {}
    curves = []
    for r in rows:
        row = {k: r[k] for k in CURVE if k in r}
        diag = r.get("hypergrad_diagnostics") or {}
        for key in ("split", "head_refresh", "memory_fill"):
            if key in diag:
                row[key] = diag[key]
        curves.append(row)
    return {
        "config": {k: card.get("config", {}).get(k) for k in CONFIG},
        "refit_top1": (head.get("refit_head") or {}).get("top1"),
        "own_top1": (head.get("own_head") or {}).get("top1"),
        "inner_problem": head.get("inner_problem"),
        "training": card.get("training"),
        "curves": curves,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--note", default="")
    a = p.parse_args()
    runs = {}
    for card in sorted(a.runs.rglob("card.json")):
        runs[str(card.parent.relative_to(a.runs))] = summarise_run(card.parent)
    a.out.write_text(json.dumps({"note": a.note, "runs": runs}, indent=1) + "\n")
    print(f"{len(runs)} runs -> {a.out}")


if __name__ == "__main__":
    main()
