"""What a model family registers (timm's `register_model` is the model): `Family` and `Structure`,
and `register_family`, which each acmix_deploy/archs/<family>.py calls once when it is imported.

acmix_deploy.registry finds a card's family by importing archs/<card arch>.py, so adding a family only
adds files. Torch-free: nothing here is imported until a family registers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Structure:
    """A family's expected exported stage I, per ACmix block (checked on real exports in tests/export).

    `stage1` maps ONNX op types to how many nodes of that type every ACmix block's stage I (the q / k / v
    projections: the nodes bench/naming.classify files under the block's stage I) holds in the exported
    graph; `optional` holds the ops some blocks add on top, all together or none (PVT's spatial
    reduction where r > 1). `optimized`: the pattern holds only after the graph passes (else for the
    plain export too). `note` says it in words.
    """

    stage1: Mapping[str, int]
    note: str
    optimized: bool = False
    optional: Mapping[str, int] = field(default_factory=dict)

    def matches(self, counts: Mapping[str, int]) -> bool:
        """Whether one block's stage-I op counts are the pattern (with or without the optional ops)."""
        counts = {op: n for op, n in counts.items() if n}
        with_optional = dict(self.stage1)
        for op, n in self.optional.items():
            with_optional[op] = with_optional.get(op, 0) + n
        return counts == dict(self.stage1) or (bool(self.optional) and counts == with_optional)


@dataclass(frozen=True)
class Parts:
    """A family's block part names for the profile's classifier (bench/naming.py reads `PARTS` from each
    archs/<family>_parts.py; those modules stay torch-free, since profiling an ONNX file needs no torch).

    `stage1` / `attention` / `conv` / `markers` add child names to the core categories and block
    markers; `categories` adds parts of the family's own: category -> (label, child names).
    """

    stage1: tuple[str, ...] = ()
    attention: tuple[str, ...] = ()
    conv: tuple[str, ...] = ()
    markers: tuple[str, ...] = ()
    categories: Mapping[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Family:
    """One model family, registered by acmix_deploy/archs/<name>.py (the cards' `arch`).

    network: the class the cards' args build (plus num_classes and img_size).
    overrides: override name -> constructor argument (what `--override` / create_model accept).
    deploy: fn(private copy of a model, img_size, **options) -> its deploy form (nn/deploy.py dispatches
        on `network`); None: nn.deploy.switch_acmix_blocks (ResNet-ACmix blocks, anywhere).
    train_forms: training-form classes of the family's blocks (nn/acmix_train.to_form swaps them in).
    structure: the expected exported stage I of its ACmix models (None: no ACmix blocks).
    """

    name: str
    network: type
    overrides: Mapping[str, str]
    deploy: Callable[..., Any] | None = None
    train_forms: tuple[type, ...] = ()
    structure: Structure | None = None


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Register a family (its archs module calls this once, at import) and hook its deploy switch and
    training forms into nn/deploy.py and nn/acmix_train.py, which dispatch on classes, not names."""
    from acmix_deploy.nn.acmix_train import register_train_form
    from acmix_deploy.nn.deploy import register_deploy_switch

    _FAMILIES[family.name] = family
    if family.deploy is not None:
        register_deploy_switch(family.network, family.deploy)
    for train_form in family.train_forms:
        register_train_form(train_form)
    return family


def registered_family(name: str) -> Family | None:
    """The family registered as `name`, if its module has been imported (acmix_deploy.registry.family
    imports it)."""
    return _FAMILIES.get(name)
