"""The training recipe as one dataclass, its defaults, and how a resumed run takes its saved recipe.

A resumed run continues exactly only if nothing that shapes the computation changes, so `--resume`
takes the whole recipe from the checkpoint; options given again must agree with it, except the
ones that do not change the numbers (data location, output folder, loader workers).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acmix_deploy.errors import AcmixError
from acmix_deploy.train.schedule import OPTIMIZERS

DEFAULT_LR = {"sgd": 0.1, "adamw": 1e-3}
DEFAULT_WEIGHT_DECAY = {"sgd": 5e-5, "adamw": 0.05}
MODEL_OVERRIDES = ("width", "k_att", "heads", "shift", "window", "num_classes", "layers", "depths", "drop_path_rate",
                   "kernels")
# Options that may differ on resume without changing any number the run computes.
# (A different thread count may change float summation order: same count for bit-exact resume.)
RESUME_FREE = ("data", "out", "workers", "threads")
# Options that may differ on resume but change the numbers by rounding only (the same function,
# computed another way): the run continues, not bit-exactly, and says so.
RESUME_ROUNDING = ("form", "compile")
FORMS = ("fast", "reference")  # ResNet-ACmix block form while training (nn/acmix_train.py)


@dataclass
class TrainConfig:
    model: str
    data: str
    out: str = ""  # default runs/<model>
    epochs: int = 30
    batch_size: int = 64  # global: split evenly over the processes of a torchrun run
    lr: float | None = None  # default: the card's [train.lr] for the optimizer, else DEFAULT_LR
    opt: str = "sgd"
    weight_decay: float | None = None  # default by optimizer, see DEFAULT_WEIGHT_DECAY
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    min_lr: float = 0.0
    label_smoothing: float = 0.1
    img_size: int | None = None  # default: the model card's input size
    min_scale: float = 0.35  # smallest crop area fraction of the random resized crop
    hflip: bool = True
    amp: bool = False
    workers: int = 2
    threads: int | None = None  # torch intra-op threads per process [default: torch's choice]
    seed: int = 0
    form: str = "fast"  # "fast": the exact training form of the ACmix blocks; "reference": the official maths
    compile: bool = False  # torch.compile the training forward
    overrides: dict[str, Any] = field(default_factory=dict)  # model overrides given by the user

    def resolved(self) -> TrainConfig:
        """Fill optimizer-dependent defaults and check ranges (one-line errors)."""
        if self.form not in FORMS:
            raise AcmixError(f"unknown --form {self.form!r}; choose one of {', '.join(FORMS)}")
        if self.opt not in OPTIMIZERS:
            raise AcmixError(f"unknown optimizer {self.opt!r}; choose one of {', '.join(OPTIMIZERS)}")
        cfg = dataclasses.replace(
            self,
            lr=default_lr(self.model, self.opt) if self.lr is None else float(self.lr),
            weight_decay=DEFAULT_WEIGHT_DECAY[self.opt] if self.weight_decay is None else float(self.weight_decay),
            out=self.out or str(Path("runs") / self.model),
            overrides={k: v for k, v in self.overrides.items() if v is not None},
        )
        checks = [
            (cfg.epochs >= 1, f"--epochs must be >= 1, got {cfg.epochs}"),
            (cfg.batch_size >= 2, f"--batch-size must be >= 2 (batch norm), got {cfg.batch_size}"),
            (cfg.lr > 0, f"--lr must be positive, got {cfg.lr}"),
            (cfg.weight_decay >= 0, f"--weight-decay must be >= 0, got {cfg.weight_decay}"),
            (cfg.warmup_epochs >= 0, f"--warmup-epochs must be >= 0, got {cfg.warmup_epochs}"),
            (0 <= cfg.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {cfg.label_smoothing}"),
            (0 < cfg.min_scale <= 1, f"--min-scale must be in (0, 1], got {cfg.min_scale}"),
            (cfg.workers >= 0, f"--workers must be >= 0, got {cfg.workers}"),
            (cfg.threads is None or cfg.threads >= 1, f"--threads must be >= 1, got {cfg.threads}"),
        ]
        for ok, message in checks:
            if not ok:
                raise AcmixError(message)
        from acmix_deploy import validate

        validate.img_size(cfg.img_size, "--img-size", cfg.batch_size)  # the same rule as export
        unknown = sorted(set(cfg.overrides) - set(MODEL_OVERRIDES))
        if unknown:
            raise AcmixError(f"unknown model override(s) {', '.join(unknown)}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def default_lr(model: str, opt: str) -> float:
    """The model card's [train.lr] for `opt` where it has one (SAN: its aggregation diverges at 0.1),
    else the optimizer's default. An unknown model takes the optimizer's default; the build refuses it."""
    from acmix_deploy import registry

    card_lr = registry.get_card(model).default_lr(opt) if model in registry.list_models() else None
    return DEFAULT_LR[opt] if card_lr is None else card_lr


def _fields() -> set[str]:
    return {f.name for f in dataclasses.fields(TrainConfig)}


def new_config(options: dict[str, Any]) -> TrainConfig:
    """A fresh run's recipe from the options the user gave (None = not given)."""
    given = {k: v for k, v in options.items() if v is not None}
    if not given.get("model") or not given.get("data"):
        raise AcmixError("train needs --model and --data (or --resume RUN/last.pth to continue a run)")
    return TrainConfig(**given).resolved()


def resumed_config(saved: dict[str, Any], options: dict[str, Any], resume_path: str | Path) -> TrainConfig:
    """The saved recipe, with only RESUME_FREE options allowed to change; anything else must agree."""
    fields = _fields()
    base = {k: v for k, v in saved.items() if k in fields}
    base.setdefault("form", "reference")  # runs saved before the fast form existed trained the reference
    given = {k: v for k, v in options.items() if v is not None}
    conflicts: list[str] = []
    for key, value in given.items():
        if key in RESUME_FREE or key in RESUME_ROUNDING:
            continue
        if key == "overrides":
            for name, val in value.items():
                if val is not None and base.get("overrides", {}).get(name) != val:
                    conflicts.append(f"{name}={val} (run has {base.get('overrides', {}).get(name)})")
        elif base.get(key) != value:
            conflicts.append(f"{key}={value} (run has {base.get(key)})")
    if conflicts:
        raise AcmixError(
            f"--resume continues the saved recipe exactly; these options differ from it: {', '.join(conflicts)} "
            "(start a new run with -o to change them)"
        )
    merged = {**base, **{k: v for k, v in given.items() if k in RESUME_FREE + RESUME_ROUNDING}}
    if "out" not in given:  # keep writing next to the file being resumed
        merged["out"] = str(Path(resume_path).parent)
    return TrainConfig(**merged).resolved()
