"""Map graph node / engine layer names back to PyTorch module paths and ACmix categories.

Node names are parsed by acmix_deploy.onnx_names (module paths of both export styles, runtime
renames undone); this module classifies the module paths. The classification rule itself is one
function, `classify`, driven by the tables below and the parts families register, so it can be
adjusted in one place when the export naming changes.

The reference (training) ACmix block computes its attention inline in forward(), so those ops sit at
the block's own path and count as the block's "rest"; the deploy form keeps them in P.attention.
"""

from __future__ import annotations

from collections.abc import Iterable

STAGE1 = "stage1"
ATTENTION = "attention"
CONV = "conv"
REST = "rest"
CATEGORIES = (STAGE1, ATTENTION, CONV, REST)
CATEGORY_LABELS = {STAGE1: "stage I", ATTENTION: "attention", CONV: "conv path", REST: "rest"}

# Children of an ACmix module P, by category (first path component below P; prefix match).
STAGE1_CHILDREN = ("conv1", "conv2", "conv3", "qkv")
ATTENTION_CHILDREN = ("attention", "attn_path", "local_attn", "conv_p")  # conv_p: positional encoding
CONV_CHILDREN = ("fc", "dep_conv", "conv_path")
# A module is an ACmix block when it has one of these children (they exist in no plain ResNet/Swin).
BLOCK_MARKERS = ("dep_conv", "conv_path", "attention", "attn_path", "local_attn")

# Families add their own part names (archs/<family>_parts.py declares PARTS; registered on first use).
_FAMILIES_LOADED = False


def register_parts(stage1: Iterable[str] = (), attention: Iterable[str] = (), conv: Iterable[str] = (),
                   markers: Iterable[str] = ()) -> None:
    """Additive hook for a model family: more child names per category, and more block markers."""
    global STAGE1_CHILDREN, ATTENTION_CHILDREN, CONV_CHILDREN, BLOCK_MARKERS
    STAGE1_CHILDREN = tuple(dict.fromkeys((*STAGE1_CHILDREN, *stage1)))
    ATTENTION_CHILDREN = tuple(dict.fromkeys((*ATTENTION_CHILDREN, *attention)))
    CONV_CHILDREN = tuple(dict.fromkeys((*CONV_CHILDREN, *conv)))
    BLOCK_MARKERS = tuple(dict.fromkeys((*BLOCK_MARKERS, *markers)))


def _load_families() -> None:
    """Register the `PARTS` of every acmix_deploy/archs/*_parts.py (torch-free tables), once."""
    global _FAMILIES_LOADED
    if _FAMILIES_LOADED:
        return
    _FAMILIES_LOADED = True
    import importlib
    import pkgutil

    import acmix_deploy.archs as archs

    for info in pkgutil.iter_modules(archs.__path__):
        if info.name.endswith("_parts"):
            parts = importlib.import_module(f"acmix_deploy.archs.{info.name}").PARTS
            register_parts(parts.stage1, parts.attention, parts.conv, parts.markers)
            for category, (label, children) in parts.categories.items():
                register_category(category, label, tuple(children))


# Parts other families' blocks have (category -> child names), registered with `register_category` by
# the family's parts module (archs/<family>_parts.py); `classify` checks them after stage I.
FAMILY_PARTS: dict[str, tuple[str, ...]] = {}


def register_category(category: str, label: str, children: tuple[str, ...]) -> None:
    """Add a block part: children of a block with these names get `category` (labelled `label`), and
    mark their parent as a block. Additive: the core categories and rules are unchanged."""
    global BLOCK_MARKERS
    CATEGORY_LABELS.setdefault(category, label)
    FAMILY_PARTS[category] = tuple(children)
    BLOCK_MARKERS = (*BLOCK_MARKERS, *(c for c in children if c not in BLOCK_MARKERS))


def categories(present: Iterable[str] = ()) -> tuple[str, ...]:
    """The core CATEGORIES plus the registered ones that occur in `present`, rest last."""
    _load_families()
    seen = set(present)
    extra = tuple(c for c in FAMILY_PARTS if c in seen)
    return (*CATEGORIES[:-1], *extra, CATEGORIES[-1])


def _child_matches(child: str, names: Iterable[str]) -> bool:
    return any(child == n or child.startswith(n + "_") for n in names)


def find_blocks(paths: Iterable[str]) -> list[str]:
    """ACmix block paths: modules with a child in BLOCK_MARKERS, in order of first appearance.

    Only the outermost marker of a path counts: in "P.conv_path.dep_conv" the block is P, not
    P.conv_path.
    """
    _load_families()
    out: dict[str, None] = {}
    for path in paths:
        comps = path.split(".") if path else []
        for i in range(1, len(comps)):
            if _child_matches(comps[i], BLOCK_MARKERS):
                out.setdefault(".".join(comps[:i]), None)
                break
    return list(out)


def classify(path: str, blocks: Iterable[str]) -> tuple[str | None, str]:
    """(block, category) of a module path: THE classification rule.

    The block is the longest ACmix block path that is a prefix of `path`; the category comes from
    the first component below it: stage I (conv1/conv2/conv3, or a fused qkv), attention path,
    conv path (fc, dep_conv, conv_path), else rest. Paths outside every block: (None, "rest").
    """
    _load_families()
    best = None
    for block in blocks:
        if (path == block or path.startswith(block + ".")) and (best is None or len(block) > len(best)):
            best = block
    if best is None:
        return None, REST
    below = path[len(best) + 1 :].split(".")[0] if path != best else ""
    if _child_matches(below, STAGE1_CHILDREN):
        return best, STAGE1
    for category, children in FAMILY_PARTS.items():
        if _child_matches(below, children):
            return best, category
    if _child_matches(below, ATTENTION_CHILDREN):
        return best, ATTENTION
    if _child_matches(below, CONV_CHILDREN):
        return best, CONV
    return best, REST
