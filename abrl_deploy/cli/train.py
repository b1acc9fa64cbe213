"""``abrl train``: parse flags, resolve the config, call ``training.train``, print the result."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from abrl_deploy.errors import ConfigError
from abrl_deploy.training import config

from .app import handle_errors
from .options import defaults
from .parsing import choices

Method = choices("Method", config.METHODS)
Dataset = choices("Dataset", config.DATASETS)
Backbone = choices("Backbone", config.BACKBONES)
Hypergrad = choices("Hypergrad", config.HYPERGRADS)
InnerSolve = choices("InnerSolve", config.INNER_SOLVES)
InnerProblem = choices("InnerProblem", config.INNER_PROBLEMS)
Solver = choices("Solver", config.SOLVERS)
Device = choices("Device", config.DEVICES)
Precision = choices("Precision", config.TRAIN_PRECISIONS)


# The default shown in --help comes from TrainConfig, written once; these say what None means.
_NONE_MEANS = {"image_size": "per dataset", "grad_clip": "off", "pretrain_epochs": "half of epochs",
               "channels_last": "with bf16 only"}  # fmt: skip
_DEFAULTS = vars(defaults(config.TrainConfig))


def _opt(help: str, *names: str) -> typer.models.OptionInfo:
    """A flag whose value stays None unless given (a --config file may set it), with the
    TrainConfig default of its field in the help."""
    field = names[-1].split("/")[0].removeprefix("--").replace("-", "_")
    field = "lambda_" if field == "lambda" else field
    default = _DEFAULTS.get(field)
    shown = _NONE_MEANS.get(field) if default is None else _show(default)
    if shown is not None:
        help = f"{help.rstrip('.')} \\[default: {shown}]."
    return typer.Option(*names, help=help, show_default=False)


def _show(value) -> str:
    return (
        {True: "on", False: "off"}.get(value, str(value)) if isinstance(value, bool) else str(value)
    )


@handle_errors
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")] = Path(
        "runs/abrl"
    ),
    config: Annotated[
        Path | None, _opt("YAML file of defaults (configs/); flags win.", "--config")
    ] = None,
    method: Annotated[Method | None, _opt("Training method.", "--method")] = None,
    dataset: Annotated[
        Dataset | None, _opt("Dataset (digits is embedded: no download).", "--dataset")
    ] = None,
    data_dir: Annotated[
        Path | None, _opt("Folder holding the dataset's official layout.", "--data-dir")
    ] = None,
    backbone: Annotated[Backbone | None, _opt("Encoder.", "--backbone")] = None,
    pretrained: Annotated[
        Path | None, _opt("Local encoder state dict (.safetensors/.pt).", "--pretrained")
    ] = None,
    image_size: Annotated[int | None, _opt("Input size in pixels.", "--image-size")] = None,
    epochs: Annotated[int | None, _opt("Epochs (the default is the paper's).", "--epochs")] = None,
    batch_size: Annotated[
        int | None,
        _opt("Train batch size, global under torchrun.", "--batch-size"),
    ] = None,
    lr: Annotated[float | None, _opt("Outer SGD learning rate.", "--lr")] = None,
    seed: Annotated[int | None, _opt("Seed of init, splits and batches.", "--seed")] = None,
    val_fraction: Annotated[
        float | None,
        _opt("Share of train data held out for validation.", "--val-fraction"),
    ] = None,
    limit: Annotated[int | None, _opt("Use at most N train and N test images.", "--limit")] = None,
    device: Annotated[Device | None, _opt("auto, cpu or cuda.", "--device")] = None,
    workers: Annotated[int | None, _opt("DataLoader worker processes.", "--workers")] = None,
    hypergrad: Annotated[Hypergrad | None, _opt("ABRL hypergradient.", "--hypergrad")] = None,
    lambda_: Annotated[float | None, _opt("Penalty weight; 0 disables.", "--lambda")] = None,
    inner_solve: Annotated[
        InnerSolve | None,
        _opt(
            "ABRL's inner solve: newton (to stationarity, what the implicit formula assumes) or "
            "steps (the paper's K steps of α).",
            "--inner-solve",
        ),
    ] = None,
    inner_problem: Annotated[
        InnerProblem | None,
        _opt(
            "ABRL's inner problem over the training split: amortized (SOBA: the head and v "
            "take one stochastic step per step), memory (every row's features in memory, up to "
            "5 Newton-CG steps per step) or batch (the head solved on each batch alone, the "
            "release before issue 23); amortized and memory re-solve the head on the split each "
            "epoch (head_refresh). amortized is the default on accuracy: transfer-cpu, 3 seeds, "
            "refit top-1 28.1 against memory 7.2 and batch 15.2 (README).",
            "--inner-problem",
        ),
    ] = None,
    inner_tol: Annotated[
        float | None,
        _opt("Newton stops at ||grad|| <= tol × ridge.", "--inner-tol"),
    ] = None,
    inner_steps: Annotated[
        int | None,
        _opt("Inner head steps K with --inner-solve steps.", "--inner-steps"),
    ] = None,
    inner_lr: Annotated[str | None, _opt("Inner step α, or 'auto' (1/L).", "--inner-lr")] = None,
    ridge: Annotated[float | None, _opt("Ridge μ > 0 on the head.", "--ridge")] = None,
    solver: Annotated[Solver | None, _opt("Linear solver for H v = g.", "--solver")] = None,
    head_refit: Annotated[
        bool | None,
        _opt(
            "Save the ridge-logistic head refit on all train features (every method; both "
            "heads are always evaluated) instead of the method's own head.",
            "--head-refit/--no-head-refit",
        ),
    ] = None,
    augment: Annotated[
        bool | None,
        _opt("The dataset's random train augmentation.", "--augment/--no-augment"),
    ] = None,
    grad_clip: Annotated[
        float | None, _opt("Clip the gradient's global norm.", "--grad-clip")
    ] = None,
    pretrain_epochs: Annotated[
        int | None, _opt("SimCLR pre-training epochs.", "--pretrain-epochs")
    ] = None,
    precision: Annotated[
        Precision | None,
        _opt(
            "Encoder compute precision: auto = bf16 autocast on CUDA and on CPUs with "
            "avx512_bf16/amx_bf16, fp32 elsewhere; the head maths stay fp32. The card records "
            "what ran and why.",
            "--precision",
        ),
    ] = None,
    channels_last: Annotated[
        bool | None,
        _opt(
            "Model and inputs in channels_last.",
            "--channels-last/--no-channels-last",
        ),
    ] = None,
    data_cache: Annotated[
        str | None,
        _opt(
            "Decode JPEG/PNG datasets once into this folder, 'auto' ($ABRL_CACHE_DIR or "
            "~/.cache/abrl/images) or 'off'.",
            "--data-cache",
        ),
    ] = None,
    tensorboard: Annotated[
        Path | None,
        _opt(
            "Also write metrics.jsonl's scalars as TensorBoard events to DIR/<run folder name> "
            "(pip install 'abrl\\[tensorboard]').",
            "--tensorboard",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing run directory.")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run saved in --out.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train a classifier (ABRL or a baseline) and write a self-describing run directory.

    On N processes: torchrun --nproc-per-node N -m abrl_deploy.cli train ... (global --batch-size).
    """
    flags = {
        "method": method, "dataset": dataset, "data_dir": data_dir, "backbone": backbone,
        "pretrained": pretrained, "image_size": image_size, "epochs": epochs,
        "batch_size": batch_size, "lr": lr, "seed": seed, "val_fraction": val_fraction,
        "limit": limit, "device": device,
        "workers": workers, "hypergrad": hypergrad, "lambda_": lambda_,
        "inner_solve": inner_solve, "inner_tol": inner_tol, "inner_problem": inner_problem,
        "inner_steps": inner_steps, "inner_lr": inner_lr, "ridge": ridge, "solver": solver,
        "head_refit": head_refit, "augment": augment, "grad_clip": grad_clip,
        "pretrain_epochs": pretrain_epochs, "precision": precision,
        "channels_last": channels_last, "data_cache": data_cache, "tensorboard": tensorboard,
    }  # fmt: skip
    flags = {k: (v.value if isinstance(v, Enum) else v) for k, v in flags.items() if v is not None}
    flags = {k: (str(v) if isinstance(v, Path) else v) for k, v in flags.items()}
    if resume and (flags or config):
        given = ", ".join(sorted(flags)) or "--config"
        raise ConfigError(f"--resume continues the run's saved config.yaml; drop {given}")
    from abrl_deploy.training import load_config
    from abrl_deploy.training import train as run_training

    cfg = None if resume else load_config(config, **flags)
    result = run_training(cfg, out, force=force, resume=resume, quiet=quiet)
    if result.rank == 0:  # under torchrun, one report, not one per process
        _print_result(result)


def _print_result(result) -> None:
    m, head = result.card.metrics, result.card.head
    console = Console()
    console.print(f"run written to {result.run_dir}", highlight=False)
    line = f"{result.card.method} on {result.card.dataset}: test top-1 {m['test_top1']:.2f}%"
    line += f", top-5 {m['test_top5']:.2f}% ({m['epochs']} epochs, {m['train_seconds']:.1f} s)"
    console.print(line, highlight=False)
    own, refit = head["own_head"]["top1"], head["refit_head"]["top1"]
    saved = "refit" if head["source"] == "refit" else "own"
    console.print(
        f"heads on the final encoder: refit (ridge-logistic on train features) {refit:.2f}%, "
        f"own ({head['own_head_kind']}) {own:.2f}%; saved: {saved}",
        highlight=False,
    )
    ran = result.card.training
    if ran:
        layout = ", channels_last" if ran.get("channels_last") else ""
        console.print(
            f"trained in {ran['precision']}{layout} on {ran['device']} ({ran['precision_reason']})",
            highlight=False,
        )
