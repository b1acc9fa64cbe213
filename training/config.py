"""TrainConfig: the one frozen configuration of ``abrl train``.

Precedence: dataclass defaults (the paper's recipe) < ``--config file.yaml`` < explicit CLI flags.
The resolved config is saved beside the outputs as ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from abrl_deploy.errors import ConfigError

# Every choice list of a training run lives here, torch-free, so that the CLI and reproduce read
# them without loading torch. The registries that implement them (methods/registry.py,
# data/registry.py, models.BACKBONES) must hold exactly these names: tests/training check it.
METHODS = ("abrl", "finetune", "joint", "simclr")
DATASETS = ("digits", "cifar100", "tiny-imagenet", "cub200", "imagefolder")
BACKBONES = ("resnet18", "resnet34", "resnet50")
HYPERGRADS = ("implicit", "first-order", "unrolled")
INNER_SOLVES = ("newton", "steps")
# the head's problem: one batch, or the split's through a feature memory or amortized SOBA steps
INNER_PROBLEMS = ("batch", "memory", "amortized")
SOLVERS = ("cg", "exact", "neumann")
DEVICES = ("auto", "cpu", "cuda")
# the training compute precision (precision.py resolves auto)
TRAIN_PRECISIONS = ("auto", "fp32", "bf16")
STEMS = ("auto", "cifar", "imagenet")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run. Defaults are the paper's recipe (see README)."""

    method: str = "abrl"
    dataset: str = "digits"
    data_dir: str | None = None
    backbone: str = "resnet18"
    stem: str = "auto"
    pretrained: str | None = None
    image_size: int | None = None
    epochs: int = 100
    batch_size: int = 64
    val_batch_size: int | None = None  # ABRL's outer batch; None: batch_size // 4
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    seed: int = 0
    val_fraction: float = 0.1
    limit: int | None = None
    label_rows: int | None = None  # fine-tune: the encoder sees labels of N train rows (cycled)
    workers: int = 0
    device: str = "auto"
    # The encoder's compute precision: auto = bf16 autocast on CUDA and on CPUs with bf16
    # instructions, fp32 elsewhere (training/precision.py); the head maths stay fp32 regardless.
    precision: str = "auto"
    channels_last: bool | None = None  # None: with bf16 only, where it was measured to help
    # Where, not what: these two never change a run's numbers.
    data_cache: str = "auto"  # decoded-image cache: "auto" (~/.cache/abrl), "off", or a folder
    tensorboard: str | None = None  # also write metrics.jsonl's scalars as TensorBoard events
    augment: bool = True  # the dataset's random train augmentation, for every method alike
    grad_clip: float | None = None  # clip the encoder gradient's global norm (off by default)
    # The head every method saves: the ridge-logistic refit on all train features (the one
    # protocol that compares methods like with like), or, when False, the method's own head.
    head_refit: bool = True
    # ABRL (docs/method.md). One spelling per layer: users write `lambda` (--lambda, YAML, reports);
    # Python code writes `lambda_` everywhere, because lambda is a keyword. The inner step count K
    # is `inner_steps` at every layer (--inner-steps, YAML, config, the methods' arguments).
    hypergrad: str = "implicit"
    lambda_: float = 0.01
    penalty_norm: bool = True  # divide the penalty by D so that lambda does not depend on width
    # The inner solve: Newton to ||grad|| <= inner_tol * ridge (what the implicit formula
    # assumes), or the paper's inner_steps plain steps of inner_lr (the faithful replication).
    # Which problem the head solves: "amortized" (SOBA steps of the head and v on fresh batches;
    # methods/amortized.py), "memory" (every training row's features, the head advanced up to
    # memory_newton_steps Newton-CG steps a step; methods/feature_memory.py) or "batch" (each
    # batch alone, solved to stationarity: the release before issue 23). With head_refresh the
    # head of memory and amortized is re-solved on the split's eval-mode features at each
    # epoch's end. amortized is the default on the accuracy evidence (transfer-cpu, 3 seeds,
    # refit top-1: amortized 28.9, batch 15.2, memory 7.2; fine-tune 33.1), although memory's
    # hypergradient is the one that matches the split's (benchmarks/hypergrad_fidelity.py:
    # cosine 0.998 against amortized's -0.09): followed, it inflated the feature covariance and
    # broke the pretrained encoder (README, "ABRL given its fair chance").
    inner_problem: str = "amortized"
    memory_newton_steps: int = 5
    # memory, amortized: at each epoch's end, re-encode the split in eval mode, solve the head
    head_refresh: bool = True
    memory_cg_iters: int = 10  # CG iterations of each Newton direction (v: cg_max_iter from 0)
    amortized_lr: float = 0.5  # α of --inner-problem amortized: ρ_t = α / (L_t √(1 + t/100))
    split_diagnostic_rows: int = 2000  # train rows of the per-epoch split-level diagnostics
    inner_solve: str = "newton"
    inner_tol: float = 1e-3
    inner_max_iter: int = 50
    inner_steps: int = 5
    inner_lr: float | str = 0.001  # a float, or "auto" for 1/L from the Boehning bound
    ridge: float = 1e-3
    solver: str = "cg"
    cg_rtol: float = 1e-4
    cg_max_iter: int = 50
    center_features: bool = True
    # SimCLR
    pretrain_epochs: int | None = None  # None: half of epochs
    temperature: float = 0.5

    def __post_init__(self) -> None:
        _normalise(self)
        # types first: the range checks below compare numbers and would raise on a wrong type
        problems = _type_problems(self) or _problems(self)
        if problems:
            raise ConfigError("invalid training config: " + "; ".join(problems))

    @property
    def outer_batch_size(self) -> int:
        return self.val_batch_size or max(2, self.batch_size // 4)

    @property
    def simclr_pretrain_epochs(self) -> int:
        return self.epochs // 2 if self.pretrain_epochs is None else self.pretrain_epochs

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        import yaml  # here, not at the top: abrl --help reads this module's choice lists

        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# Each method's own fields: only that method reads them (the others are read by every method;
# ridge and center_features too, because every method's refit head uses them). reproduce reads
# this to tell whether a saved run is the planned one, and which settings a step's cost has.
METHOD_FIELDS = {
    "abrl": frozenset({
        "val_batch_size", "hypergrad", "lambda_", "penalty_norm", "inner_problem",
        "memory_newton_steps", "head_refresh", "memory_cg_iters", "amortized_lr",
        "split_diagnostic_rows", "inner_solve", "inner_tol", "inner_max_iter", "inner_steps",
        "inner_lr", "solver", "cg_rtol", "cg_max_iter",
    }),
    "joint": frozenset({"lambda_", "penalty_norm"}),
    "simclr": frozenset({"pretrain_epochs", "temperature"}),
    "finetune": frozenset({"label_rows"}),
}  # fmt: skip
# Where, not what: these never change a run's numbers
WHERE_FIELDS = frozenset({"data_dir", "workers", "device", "data_cache", "tensorboard"})


def fields_read_by(method: str) -> frozenset[str]:
    """Every TrainConfig field ``method`` reads: the general ones and its own."""
    own = frozenset().union(*METHOD_FIELDS.values())
    every = frozenset(f.name for f in dataclasses.fields(TrainConfig))
    return (every - own) | METHOD_FIELDS.get(method, frozenset())


# Upper bounds: a value past them is a typo or a damaged file, not a plan (an epoch count of
# 1e30 would otherwise start training). Seeds feed numpy, which takes 32 bits.
_INT_MAX = 10**9
_INT_MAX_OF = {"seed": 2**32 - 1, "epochs": 100_000, "pretrain_epochs": 100_000,
               "batch_size": 1 << 20, "val_batch_size": 1 << 20, "image_size": 4096,
               "workers": 1024}  # fmt: skip


_TYPE_WORDS = {"int": "an integer", "float": "a finite number", "str": "a text",
               "bool": "true or false", "None": "null"}  # fmt: skip


def _normalise(c: TrainConfig) -> None:
    """What Python code passes for these types: a Path for a text, numpy's ints and floats."""
    for f in dataclasses.fields(c):
        value = getattr(c, f.name)
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        elif isinstance(value, numbers.Integral) and type(value) not in (bool, int):
            value = int(value)
        elif isinstance(value, numbers.Real) and type(value) not in (bool, int, float):
            value = float(value)  # numpy's float64 subclasses float, but YAML cannot dump it
        else:
            continue
        object.__setattr__(c, f.name, value)


def _finite(value: float | int) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _type_problems(c: TrainConfig) -> list[str]:
    """Each field against its annotated type: bools are not numbers, numbers are finite."""
    p = []
    for f in dataclasses.fields(c):
        value, kinds = getattr(c, f.name), _FIELD_KINDS[f.name]
        if value is None and "None" in kinds:
            continue
        ok = (
            ("bool" in kinds and isinstance(value, bool))
            or ("str" in kinds and isinstance(value, str))
            or ("int" in kinds and type(value) is int)
            or ("float" in kinds and type(value) in (int, float) and _finite(value))
        )
        if not ok:
            words = " or ".join(_TYPE_WORDS[k] for k in kinds)
            p.append(f"{f.name}={value!r}, expected {words}")
    return p


def _problems(c: TrainConfig) -> list[str]:
    """Every invalid value at once, so the user fixes them in one go."""
    p = []
    for f in dataclasses.fields(c):
        value, high = getattr(c, f.name), _INT_MAX_OF.get(f.name, _INT_MAX)
        if type(value) is int and value > high:
            p.append(f"{f.name}={value}, expected at most {high:,}")

    def check(ok: bool, message: str) -> None:
        if not ok:
            p.append(message)

    for name, choices in (("method", METHODS), ("dataset", DATASETS), ("backbone", BACKBONES)):
        value = getattr(c, name)
        check(value in choices, f"{name}={value!r}, expected one of {choices}")
    check(c.seed >= 0, f"seed={c.seed}, expected >= 0")
    check(c.hypergrad in HYPERGRADS, f"hypergrad={c.hypergrad!r}, expected one of {HYPERGRADS}")
    check(
        c.inner_solve in INNER_SOLVES,
        f"inner_solve={c.inner_solve!r}, expected one of {INNER_SOLVES}",
    )
    check(
        not (c.hypergrad == "unrolled" and c.inner_solve == "newton"),
        "hypergrad=unrolled differentiates through K gradient steps of the head; "
        "add --inner-solve steps",
    )
    check(
        c.inner_problem in INNER_PROBLEMS,
        f"inner_problem={c.inner_problem!r}, expected one of {INNER_PROBLEMS}",
    )
    check(
        not (c.hypergrad == "unrolled" and c.inner_problem != "batch"),
        "hypergrad=unrolled differentiates through head steps on the batch; add "
        "--inner-problem batch",
    )
    check(c.memory_newton_steps >= 1, f"memory_newton_steps={c.memory_newton_steps}, expected >= 1")
    check(0 < c.amortized_lr <= 2, f"amortized_lr={c.amortized_lr}, expected in (0, 2]")
    check(c.memory_cg_iters >= 1, f"memory_cg_iters={c.memory_cg_iters}, expected >= 1")
    check(c.split_diagnostic_rows >= 0, "split_diagnostic_rows must be >= 0 (0: off)")
    check(c.inner_tol > 0, f"inner_tol={c.inner_tol}, expected > 0")
    check(c.inner_max_iter >= 1, f"inner_max_iter={c.inner_max_iter}, expected >= 1")
    check(c.grad_clip is None or c.grad_clip > 0, f"grad_clip={c.grad_clip}, expected > 0")
    check(c.solver in SOLVERS, f"solver={c.solver!r}, expected one of {SOLVERS}")
    check(c.device in DEVICES, f"device={c.device!r}, expected one of {DEVICES}")
    check(
        c.precision in TRAIN_PRECISIONS,
        f"precision={c.precision!r}, expected one of {TRAIN_PRECISIONS}",
    )
    check(bool(c.data_cache), "data_cache is empty; give 'auto', 'off' or a folder")
    check(c.stem in STEMS, f"stem={c.stem!r}, expected one of {STEMS}")
    check(c.epochs >= 1, f"epochs={c.epochs}, expected >= 1")
    check(c.batch_size >= 2, f"batch_size={c.batch_size}, expected >= 2")
    check(c.val_batch_size is None or c.val_batch_size >= 2, "val_batch_size must be >= 2")
    check(c.lr > 0, f"lr={c.lr}, expected > 0")
    check(0 < c.val_fraction < 1, f"val_fraction={c.val_fraction}, expected in (0, 1)")
    check(
        c.ridge > 0,
        f"ridge={c.ridge}: ABRL needs a ridge > 0 on the head (docs/method.md; try 1e-3)",
    )
    check(c.lambda_ >= 0, f"lambda={c.lambda_}, expected >= 0 (0 disables the penalty)")
    check(c.inner_steps >= 1, f"inner_steps={c.inner_steps}, expected >= 1")
    check(c.workers >= 0, f"workers={c.workers}, expected >= 0")
    check(c.limit is None or c.limit >= 2, f"limit={c.limit}, expected >= 2")
    check(not (c.inner_solve == "steps" and c.inner_problem == "amortized"),
          "inner_solve=steps with inner_problem=amortized: amortized takes its own SOBA steps, "
          "so the K steps would be ignored; add --inner-problem batch (the paper's K steps on "
          "each batch) or memory")  # fmt: skip
    check(c.label_rows is None or (c.label_rows >= 1 and c.method == "finetune"),
          f"label_rows={c.label_rows} with method {c.method}: label_rows is a fine-tune option "
          "(the equal-labels baseline), expected an integer >= 1")  # fmt: skip
    check(c.image_size is None or c.image_size >= 8, f"image_size={c.image_size}, expected >= 8")
    check(c.temperature > 0, f"temperature={c.temperature}, expected > 0")
    check(c.momentum >= 0 and c.weight_decay >= 0, "momentum and weight_decay must be >= 0")
    check(c.cg_max_iter >= 1, f"cg_max_iter={c.cg_max_iter}, expected >= 1 (0 is first-order)")
    check(c.cg_rtol > 0, f"cg_rtol={c.cg_rtol}, expected > 0")
    if isinstance(c.inner_lr, str):
        check(c.inner_lr == "auto", f"inner_lr={c.inner_lr!r}, expected a number > 0 or 'auto'")
    else:
        check(c.inner_lr > 0, f"inner_lr={c.inner_lr}, expected > 0 or 'auto'")
    pe = c.simclr_pretrain_epochs if c.epochs >= 1 else 0
    check(0 <= pe <= c.epochs, f"pretrain_epochs={pe}, expected between 0 and epochs={c.epochs}")
    return p


def _coerce_inner_lr(value: Any) -> float | str:
    if isinstance(value, str) and value != "auto":
        try:
            return float(value)
        except (ValueError, OverflowError):
            raise ConfigError(f"inner_lr={value!r}: expected a number or 'auto'") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"inner_lr={value!r}: expected a finite number or 'auto'")
    return value


def load_config(
    path: str | Path | None = None, *, ignore_unknown: bool = False, **overrides: Any
) -> TrainConfig:
    """Defaults, then the YAML file at ``path``, then every override that is not None.

    ``ignore_unknown``: keys a newer abrl wrote are dropped (reading a run's record) instead of
    refused (a user's config file, where an unknown key is most often a typo)."""
    values: dict[str, Any] = {}
    if path is not None:
        values.update(_read_yaml(Path(path), ignore_unknown))
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "inner_lr" in values:
        values["inner_lr"] = _coerce_inner_lr(values["inner_lr"])
    return TrainConfig(**{k: _coerce(k, v) for k, v in values.items()})


_FIELD_TYPES = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}
# each field's annotation as its alternatives, e.g. "int | None" -> ("int", "None")
_FIELD_KINDS = {name: tuple(t.replace(" ", "").split("|")) for name, t in _FIELD_TYPES.items()}


def _coerce(name: str, value: Any) -> Any:
    """YAML 1.1 reads 1e-3 as a string: give numbers their field's type, or say what is wrong.
    An integer field takes 1e3 or 4.0 but not 2.7 (never silently truncated)."""
    kind, shown = _FIELD_TYPES.get(name, ""), name.rstrip("_")  # lambda_ is `lambda` in YAML
    if name == "data_cache" and value is False:
        return "off"  # YAML 1.1 reads `data_cache: off` as false
    if value is None or name == "inner_lr" or isinstance(value, bool):
        return value
    if kind.startswith("str") and isinstance(value, (int, float)):
        return str(value)  # data_dir: 2024 is a folder name
    if kind.startswith(("int", "float")) and isinstance(value, (int, float, str)):
        if kind.startswith("int") and type(value) is int:
            return value  # exact, however large: the range check names a huge one
        try:
            number = float(value)
        except (ValueError, OverflowError) as exc:
            words = "an integer" if kind.startswith("int") else "a number"
            words = "a finite number" if isinstance(exc, OverflowError) else words
            raise ConfigError(f"{shown}={value!r}: expected {words}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{shown}={value!r}: expected a finite number")
        if kind.startswith("float"):
            return number
        if number.is_integer():
            return int(number) if isinstance(value, (float, str)) else value
        raise ConfigError(f"{shown}={value!r}: expected an integer")
    return value  # a wrong type (a list, a mapping) is named by TrainConfig's own check


def _read_yaml(path: Path, ignore_unknown: bool = False) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; give a YAML file, see configs/")
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of option: value")
    if "lambda" in data:  # the YAML spelling users expect
        data["lambda_"] = data.pop("lambda")
    if "amp" in data:  # before --precision: amp meant bf16 autocast on CUDA, fp32 on the CPU
        amp = data.pop("amp")
        data.setdefault("precision", "auto" if amp else "fp32")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown and not ignore_unknown:
        near = {k: difflib.get_close_matches(k, known, n=1) for k in unknown}
        hints = ", ".join(f"{k} (did you mean {m[0]}?)" if m else k for k, m in near.items())
        raise ConfigError(
            f"config file {path} has keys this abrl does not know: {hints}; fix the spelling, or "
            "use the abrl that wrote the file (see configs/ for the valid keys)"
        )
    return {k: v for k, v in data.items() if k in known}
