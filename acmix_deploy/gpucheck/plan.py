"""What a gpu-check run covers: models, sizes, batches and time budgets per mode.

`--device cuda` checks the deployment targets at their card sizes; `--device cpu` (the dry mode
that CI runs) takes the same paths on tiny versions of the same families at 32 px, so every path
runs its CPU analogue in well under a minute on 2 cores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEVICES = ("cpu", "cuda")
BUDGET_S = {("cuda", False): 300.0, ("cuda", True): 120.0, ("cpu", False): 60.0, ("cpu", True): 60.0}

# Tiny members of each family (every code path kept: stride 2, shifted windows, ACmix blocks).
TINY = {
    "resnet": {"width": 8, "k_att": 3, "layers": [1, 1, 1, 1], "num_classes": 10},
    "swin": {"width": 16, "heads": 1, "window": 4, "depths": [2, 2, 2, 2], "num_classes": 10},
}
TINY_SIZE = 32


@dataclass(frozen=True)
class ModelSpec:
    """A registered model, optional create_model overrides, and the input side in px."""

    name: str
    size: int
    overrides: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def label(self) -> str:
        return f"{self.name} (tiny, {self.size} px)" if self.overrides else f"{self.name} ({self.size} px)"

    def build_kwargs(self) -> dict[str, Any]:
        return {**self.overrides, "img_size": self.size}


@dataclass(frozen=True)
class Plan:
    parity_models: list[ModelSpec]
    parity_batch: int
    dynamic_batch: bool  # export with a symbolic batch (CUDA: what engines use); static is half the export time
    timing_pairs: list[tuple[ModelSpec, ModelSpec]]
    timing_batches: tuple[int, ...]
    timing_warmup_s: float
    timing_measure_s: float
    timing_min_rounds: int
    train_model: ModelSpec
    train_batch: int
    train_steps: int
    compile_model: ModelSpec | None  # None: torch.compile is skipped (--quick)
    compile_backend: str  # "inductor" on CUDA; "aot_eager" (capture only, no C++ build) on the CPU
    budget_s: float


def _tiny(name: str) -> ModelSpec:
    from acmix_deploy.registry import get_card

    return ModelSpec(name, TINY_SIZE, dict(TINY[get_card(name).arch]))


def _full(name: str) -> ModelSpec:
    from acmix_deploy.registry import get_card

    return ModelSpec(name, int(get_card(name).input_size))


def make_plan(device: str, quick: bool, budget_s: float | None = None) -> Plan:
    """The plan for `device` (cpu = dry mode); `quick` drops torch.compile and the second family's parity."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    budget = float(budget_s if budget_s is not None else BUDGET_S[(device, quick)])
    if device == "cpu":
        return Plan(
            parity_models=[_tiny("resnet_acmix26")], parity_batch=2, dynamic_batch=False,
            timing_pairs=[(_tiny("resnet_acmix26"), _tiny("resnet26")), (_tiny("swin_acmix_t"), _tiny("swin_t"))],
            timing_batches=(1, 4), timing_warmup_s=0.05, timing_measure_s=0.25, timing_min_rounds=3,
            train_model=_tiny("resnet_acmix26"), train_batch=4, train_steps=2,
            compile_model=None if quick else _tiny("resnet_acmix26"), compile_backend="aot_eager",
            budget_s=budget,
        )
    parity = [_full("resnet_acmix50")] + ([] if quick else [_full("swin_acmix_t")])
    return Plan(
        parity_models=parity, parity_batch=4, dynamic_batch=True,
        timing_pairs=[(_full("resnet_acmix50"), _full("resnet50")), (_full("swin_acmix_t"), _full("swin_t"))],
        timing_batches=(1, 32), timing_warmup_s=0.5 if quick else 1.0, timing_measure_s=1.0 if quick else 3.0,
        timing_min_rounds=10,
        train_model=_full("resnet_acmix50"), train_batch=16, train_steps=3 if quick else 5,
        compile_model=None if quick else _full("resnet_acmix50"), compile_backend="inductor",
        budget_s=budget,
    )
