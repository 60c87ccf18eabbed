"""Model registry: the zoo cards in models/ (data) + the families that register themselves (code).

`create_model(name, checkpoint=None, **overrides)` builds a model from its card, applies overrides
(num_classes, img_size, width, k_att, heads, window, shift, ...), and optionally loads weights.
Every model carries `.card` (the card with overrides applied) and `.build_config` (name + overrides),
which checkpoints written by this toolkit store so later commands rebuild the model from the file.

Families (timm's `register_model` is the model): a card's `arch` names a family, and the family module
acmix_deploy/archs/<arch>.py registers it with `register_family(Family(...))`: its network class, its
override table, its deploy switch, the training forms of its blocks and its expected exported stage I
(`Structure`). This module holds only the mechanics; no family is named here. Adding a family only adds
files: archs/<arch>.py (network + registration), its blocks in nn/, optionally archs/<arch>_parts.py
(torch-free part names for the profile, bench/naming.py) and its cards in models/.

Importing this module, reading cards and `list_models` import no torch: a family module is imported
only when one of its models is built or its `family(arch)` is asked for.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from acmix_deploy.archs.family import Family, Structure, register_family, registered_family
from acmix_deploy.errors import AcmixError

if TYPE_CHECKING:
    import torch.nn as nn

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


@dataclass(frozen=True)
class ModelCard:
    name: str
    arch: str
    description: str
    args: dict[str, Any]
    input_size: int
    min_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_ratio: float
    interpolation: str
    num_classes: int
    baseline: str = ""
    paper: dict[str, float] = field(default_factory=dict)
    counted: dict[str, float] = field(default_factory=dict)  # params_m / gmacs of the model as built here
    weights: dict[str, str] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)  # the card's [train] table: recipe defaults

    def default_lr(self, opt: str) -> float | None:
        """The card's peak learning rate for `opt` ([train.lr]), or None: the optimizer's default applies."""
        value = self.train.get("lr", {}).get(opt)
        return None if value is None else float(value)

    @property
    def is_acmix(self) -> bool:
        return bool(self.args.get("acmix", self.args.get("block") == "acmix"))

    def preprocessing(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "crop_ratio": self.crop_ratio,
            "interpolation": self.interpolation,
        }


def cards_dir() -> Path:
    """Installed wheel: acmix_deploy/zoo; checkout: the top-level models/ folder."""
    override = os.environ.get("ACMIX_DEPLOY_ZOO")
    if override:
        return Path(override)
    packaged = Path(str(resources.files("acmix_deploy"))) / "zoo"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "models"


def _parse_card(path: Path) -> ModelCard:
    data = tomllib.loads(path.read_text())
    inp = data["input"]
    return ModelCard(
        name=data["name"],
        arch=data["arch"],
        description=data.get("description", ""),
        args=dict(data["args"]),
        input_size=int(inp["size"]),
        min_size=int(inp["min_size"]),
        mean=tuple(inp["mean"]),
        std=tuple(inp["std"]),
        crop_ratio=float(inp["crop_ratio"]),
        interpolation=inp["interpolation"],
        num_classes=int(inp["num_classes"]),
        baseline=data.get("baseline", ""),
        paper=dict(data.get("paper", {})),
        counted=dict(data.get("counted", {})),
        weights=dict(data.get("weights", {})),
        train=dict(data.get("train", {})),
    )


@lru_cache(maxsize=None)
def _cards() -> dict[str, ModelCard]:
    folder = cards_dir()
    cards = {c.name: c for c in (_parse_card(p) for p in sorted(folder.glob("*.toml")))}
    if not cards:
        raise AcmixError(f"no model cards found in {folder}")
    return cards


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; `pattern` filters them with shell wildcards ("swin*")."""
    names = sorted(_cards())
    return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def get_card(name: str) -> ModelCard:
    cards = _cards()
    if name not in cards:
        raise AcmixError(f"unknown model {name!r}; valid models: {', '.join(sorted(cards))}")
    return cards[name]


def family(name: str) -> Family:
    """The registered family `name` (a card's arch), importing acmix_deploy.archs.<name> on first use
    (the module registers its family when imported; `register_family` also takes families from elsewhere)."""
    if registered_family(name) is None:
        try:
            importlib.import_module(f"acmix_deploy.archs.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"acmix_deploy.archs.{name}":
                raise
    fam = registered_family(name)
    if fam is None:
        raise AcmixError(f"unknown model family {name!r}: no acmix_deploy/archs/{name}.py registers it")
    return fam


def list_families() -> list[str]:
    """The families the cards name (no family module is imported)."""
    return sorted({card.arch for card in _cards().values()})


# Value types of the overrides (from --override, train options or a checkpoint's metadata).
_INT_OVERRIDES = {"num_classes", "img_size", "width", "embed_dim", "k_att", "k_conv", "window", "in_chans",
                  "patch_size"}
_INT_LIST_OVERRIDES = {"layers", "depths"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_override(key: str, value: Any) -> None:
    """One line for an override of the wrong type or range (`--override width=abc`, a checkpoint whose
    metadata holds width as a string), before a constructor fails on it with a traceback."""
    bad = None
    if key in _INT_OVERRIDES and not (_is_int(value) and value >= 1):
        bad = "a whole number >= 1"
    elif key in _INT_LIST_OVERRIDES and not (
        isinstance(value, (list, tuple)) and value and all(_is_int(v) and v >= 1 for v in value)
    ):
        bad = "a list of whole numbers >= 1, e.g. [2,2,6,2]"
    elif key == "heads" and not (
        (_is_int(value) and value >= 1) or (isinstance(value, (list, tuple)) and value and all(_is_int(v) and v >= 1 for v in value))
    ):
        bad = "a whole number >= 1 (or a list of them)"
    elif key == "drop_path_rate" and not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1):
        bad = "a number in [0, 1)"
    elif key == "shift" and not isinstance(value, str):
        bad = "a string (group, fixed or tensor)"
    if bad:
        raise AcmixError(f"override {key}={value!r} is invalid: {key} must be {bad}")


def _build(card: ModelCard, overrides: dict[str, Any]) -> nn.Module:
    """The card's network with the overrides mapped through its family's table (checked first)."""
    fam = family(card.arch)
    unknown = sorted(set(overrides) - set(fam.overrides))
    if unknown:
        raise AcmixError(
            f"unknown override(s) {', '.join(unknown)} for {card.name}; valid: {', '.join(sorted(fam.overrides))}"
        )
    args = dict(card.args, num_classes=card.num_classes, img_size=card.input_size)
    for key, value in overrides.items():
        check_override(key, value)
        args[fam.overrides[key]] = value
    return fam.network(**args)


def build_defaults(
    meta: dict[str, Any] | None, name: str | None, overrides: dict[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    """Checkpoints written by this toolkit name their model and build overrides: use them as defaults
    (a given name or override wins; the saved overrides only apply to the saved model)."""
    saved = (meta or {}).get("build", {})
    if not isinstance(saved, dict) or not isinstance(saved.get("name", ""), str) \
            or not isinstance(saved.get("overrides", {}), dict):
        raise AcmixError("the checkpoint's acmix_deploy metadata is malformed (build must hold a name and overrides)")
    if name is None:
        name = saved.get("name")
    if name is not None and name == saved.get("name"):
        overrides = {**saved.get("overrides", {}), **overrides}
    return name, overrides


def create_model(
    name: str | None = None,
    checkpoint: str | os.PathLike[str] | Any | None = None,
    strict: bool = True,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model; with `checkpoint` (a path, or a checkpoint.LoadedCheckpoint already
    read), load it (our files also supply name/overrides)."""
    from acmix_deploy import checkpoint as ckpt

    if checkpoint is None or isinstance(checkpoint, ckpt.LoadedCheckpoint):
        loaded = checkpoint
    else:
        loaded = ckpt.read_checkpoint(checkpoint)
    name, overrides = build_defaults(loaded.meta if loaded is not None else None, name, overrides)
    if name is None:
        raise AcmixError("no model name given and the checkpoint does not say which model it holds")
    card = get_card(name)
    model = _build(card, overrides)
    model.card = dataclasses.replace(
        card,
        input_size=int(overrides.get("img_size", card.input_size)),
        num_classes=int(overrides.get("num_classes", card.num_classes)),
        min_size=int(getattr(model, "min_size", card.min_size)),
    )
    model.build_config = {"name": name, "overrides": dict(overrides)}
    if loaded is not None:
        report = ckpt.load_into(model, loaded.state_dict, strict=strict)
        model.load_report = report
        if loaded.meta and "classes" in loaded.meta:
            model.classes = list(loaded.meta["classes"])
    model.eval()
    return model
