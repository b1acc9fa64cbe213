"""ReproduceSpec and the grid it implies: which runs, with which config, in which directory.

Every run of a grid starts from one preset config; a variant changes only its method-specific
fields, so splits, backbone, epochs, augmentation and optimizer are identical across methods.
Torch-free: configs are described as (YAML file, overrides) and built by the runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from abrl_deploy.errors import ConfigError
from abrl_deploy.training.config import DATASETS

PRESETS = ("paper", "cpu-small", "transfer-cpu")
EXECUTORS = ("local", "ray")
PRESET_DATASETS = {
    "paper": ("cifar100", "tiny-imagenet", "cub200"),
    "cpu-small": ("digits",),
    "transfer-cpu": ("tiny-imagenet",),  # tiny-imagenet-100 from the pretrained backbone
}
PRESET_FILES = {"cpu-small": "cpu-small.yaml", "transfer-cpu": "transfer-cpu.yaml"}

# variant -> the TrainConfig fields it changes; nothing else differs between runs of one dataset
VARIANTS: dict[str, dict[str, Any]] = {
    "finetune": {"method": "finetune"},
    "simclr": {"method": "simclr"},
    "abrl": {"method": "abrl"},
    # the paper's inner loop: K plain steps of α before the implicit step (the preset's K and α)
    # on each batch, as the release before issue 23 ran it (amortized takes SOBA steps instead)
    "abrl-k-steps": {"method": "abrl", "inner_solve": "steps", "inner_problem": "batch"},
    "abrl-no-penalty": {"method": "abrl", "lambda_": 0.0},
    "abrl-first-order": {"method": "abrl", "hypergrad": "first-order"},
    "joint": {"method": "joint"},
    # the inner problem per batch (the release before issue 23) or over the training split
    "abrl-batch": {"method": "abrl", "inner_problem": "batch"},
    "abrl-memory": {"method": "abrl", "inner_problem": "memory"},
    # ... or SOBA-style amortized steps of the head and v
    "abrl-amortized": {"method": "abrl", "inner_problem": "amortized"},
    # equal labels (issue 23): ABRL's encoder gets labels only through the validation split
    # (1,000 rows of tiny-imagenet-100); this fine-tune's encoder through 1,000 train rows
    "finetune-1k-labels": {"method": "finetune", "label_rows": 1000},
}
TABLE1_VARIANTS = ("finetune", "simclr", "abrl", "abrl-k-steps")
TABLE2_VARIANTS = ("abrl", "abrl-k-steps", "abrl-no-penalty", "abrl-first-order", "joint")
# transfer-cpu (issue 23): the paper's regime. SimCLR is left out: its pre-training would start
# over from the pretrained backbone and cost a second schedule on 2 cores.
PRESET_TABLES = {
    # cpu-small (digits from scratch): the paper's grid plus the other two inner problems
    "cpu-small": (
        TABLE1_VARIANTS + ("abrl-memory", "abrl-batch"),
        TABLE2_VARIANTS + ("abrl-batch",),
    ),
    "transfer-cpu": (
        ("finetune", "abrl", "abrl-memory", "abrl-batch", "finetune-1k-labels"),
        ("abrl", "abrl-no-penalty", "abrl-first-order", "joint", "abrl-batch"),
    ),
}
BASELINES = ("finetune", "simclr", "joint")  # joint runs on the ablation dataset only
# The heads a run records (training/methods/base.py): the refit compares methods like for like.
HEADS = ("refit", "own")


@dataclass(frozen=True)
class ReproduceSpec:
    """The one configuration of ``abrl reproduce``."""

    preset: str = "cpu-small"
    datasets: tuple[str, ...] | None = None  # None: the preset's
    data_dir: str | None = None
    seeds: tuple[int, ...] = (0, 1, 2)
    out: Path = Path("runs/reproduce")
    resume: bool = False
    force: bool = False
    report_only: bool = False  # train nothing: report the finished runs, list the missing ones
    # TrainConfig fields set for every run of the grid (e.g. epochs, limit, image_size)
    overrides: tuple[tuple[str, Any], ...] = ()
    config_dir: Path | None = None  # where the preset YAMLs live; None: the repository's configs/
    latency: bool = True  # claim 2: bench the seed-0 ABRL and fine-tune runs
    costs: bool = True  # claims 3 and 4: step timing and saved-for-backward bytes
    bench_seconds: float = 5.0  # --min-seconds of the latency bench
    overhead_rounds: int = 8
    overhead_steps: int = 3
    memory_ks: tuple[int, ...] = (1, 5, 20)
    confidence: float = 0.95
    # where the cells train (executors.py): "local" one after another here, "ray" as Ray tasks
    executor: str = "local"
    ray_address: str | None = None  # None: ray.init()'s own choice (join this machine's, or start)
    cpus_per_run: int = 2  # CPUs a Ray task reserves, and its torch threads
    max_retries: int = 3  # Ray retries of a cell whose worker or node died

    def __post_init__(self) -> None:
        p = []
        if self.preset not in PRESETS:
            p.append(f"preset {self.preset!r}; valid: {', '.join(PRESETS)}")
        unknown = [d for d in self.datasets or () if d not in DATASETS]
        if unknown:
            p.append(f"unknown dataset {', '.join(unknown)}; valid: {', '.join(DATASETS)}")
        if self.datasets is not None and not self.datasets:
            p.append("--datasets is empty")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            p.append(f"--seeds {self.seeds}: give one or more distinct integers, e.g. 0,1,2")
        if self.force and (self.resume or self.report_only):
            p.append("--force contradicts --resume and --report-only; give one")
        if self.overhead_rounds < 3 or self.overhead_steps < 1:
            p.append("overhead timing needs >= 3 rounds of >= 1 step")
        if len(self.memory_ks) < 2 or min(self.memory_ks) < 1:
            p.append(f"memory K values {self.memory_ks}: give two or more, each >= 1")
        if not 0.5 <= self.confidence < 1:
            p.append(f"confidence {self.confidence} must be in [0.5, 1)")
        if self.executor not in EXECUTORS:
            p.append(f"--executor {self.executor!r}; valid: {', '.join(EXECUTORS)}")
        if self.cpus_per_run < 1 or self.max_retries < 0:
            p.append("--cpus-per-run must be >= 1 and --max-retries >= 0")
        if p:
            raise ConfigError("invalid reproduce options: " + "; ".join(p))

    @property
    def dataset_list(self) -> tuple[str, ...]:
        return self.datasets or PRESET_DATASETS[self.preset]

    @property
    def ablation_dataset(self) -> str:
        return self.dataset_list[0]

    @property
    def tables(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The variants of Table 1 and of Table 2 (the ablation) for this preset."""
        return PRESET_TABLES.get(self.preset, (TABLE1_VARIANTS, TABLE2_VARIANTS))


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    dataset: str
    variant: str
    seed: int
    run_dir: Path
    config_file: Path
    overrides: tuple[tuple[str, Any], ...]

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.variant}/seed{self.seed}"


def config_file(spec: ReproduceSpec, dataset: str) -> Path:
    """The preset YAML of ``dataset``: configs/paper-<dataset>.yaml or configs/cpu-small.yaml."""
    folder = spec.config_dir or _default_config_dir()
    name = PRESET_FILES.get(spec.preset, f"paper-{dataset}.yaml")
    path = folder / name
    if not path.is_file():
        have = sorted(p.name for p in folder.glob("*.yaml")) if folder.is_dir() else []
        raise ConfigError(
            f"preset {spec.preset} on {dataset} needs {path}, which does not exist "
            f"(found: {', '.join(have) or 'nothing'}); run from the abrl repository or give "
            "--config-dir"
        )
    return path


def _default_config_dir() -> Path:
    repo = Path(__file__).resolve().parents[2] / "configs"  # an editable install
    return repo if repo.is_dir() else Path("configs")


def plan_grid(spec: ReproduceSpec) -> list[Cell]:
    """Seed-major order: every cell of seed 0 first, so a grid cut short still has whole seeds
    (and the seed-0 runs the latency claim needs)."""
    cells = []
    for seed in spec.seeds:
        for dataset in spec.dataset_list:
            table1, table2 = spec.tables
            variants = table1 + (
                tuple(v for v in table2 if v not in table1)
                if dataset == spec.ablation_dataset
                else ()
            )
            for variant in variants:
                values = {"dataset": dataset, "seed": seed}
                if spec.data_dir is not None:  # else the preset's own (transfer-cpu names one)
                    values["data_dir"] = spec.data_dir
                values.update(dict(spec.overrides))
                values.update(VARIANTS[variant])  # last: only method-specific fields differ
                cells.append(
                    Cell(dataset, variant, seed, spec.out / "runs" / dataset / variant /
                         f"seed{seed}", config_file(spec, dataset),
                         tuple(sorted(values.items())))
                )  # fmt: skip
    return cells
