"""ONNX graph passes: each a pure function gs.Graph -> gs.Graph (find -> rewire -> cleanup).

`PASSES` maps a pass name to its function; `DEFAULT_ORDER` is the order `acmix-deploy optimize`
and the export command run them in. Order matters: constants are folded first so the later passes
see constant weights; BatchNormalization and scalar multipliers are folded into each Conv before
parallel Convs are stacked (after the fusion they would sit behind the Split); fold_scalars leaves
the 0.5 of an erf-GELU alone, which gelu_fusable then moves to where ONNX Runtime's fusion looks.
The pipeline with its parity gate and report is in `acmix_deploy.passes.pipeline`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import onnx_graphsurgeon as gs

from acmix_deploy.errors import AcmixError
from acmix_deploy.passes.eliminate_noops import eliminate_noops
from acmix_deploy.passes.fold_batchnorm import fold_batchnorm
from acmix_deploy.passes.fold_constants import fold_constants
from acmix_deploy.passes.fold_scalars import fold_scalars
from acmix_deploy.passes.fuse_conv1x1 import fuse_parallel_conv1x1
from acmix_deploy.passes.gelu import gelu_fusable

GraphPass = Callable[[gs.Graph], gs.Graph]


@dataclass(frozen=True)
class PassInfo:
    name: str
    fn: GraphPass
    summary: str


PASSES: dict[str, PassInfo] = {
    p.name: p
    for p in (
        PassInfo("fold_constants", fold_constants, "evaluate constant subgraphs once (size rule: no file inflation)"),
        PassInfo("eliminate_noops", eliminate_noops, "drop Identity, inference Dropout, identity Reshape/Transpose/Cast, dead nodes"),
        PassInfo("fold_batchnorm", fold_batchnorm, "fold inference BatchNormalization into the Conv before it"),
        PassInfo("fold_scalars", fold_scalars, "fold constant Mul/Div into adjacent Conv/MatMul/Gemm weights"),
        PassInfo("fuse_parallel_conv1x1", fuse_parallel_conv1x1, "stack 1x1 Convs reading one tensor into one Conv + Split"),
        PassInfo("gelu_fusable", gelu_fusable, "reorder exported erf-GELUs (exactly) so ONNX Runtime fuses each into one Gelu"),
    )
}

DEFAULT_ORDER: tuple[str, ...] = (
    "fold_constants",
    "eliminate_noops",
    "fold_batchnorm",
    "fold_scalars",
    "fuse_parallel_conv1x1",
    "gelu_fusable",
)


def _split(names: str | list[str] | tuple[str, ...] | None) -> list[str] | None:
    if names is None:
        return None
    if isinstance(names, str):
        names = names.split(",")
    return [n.strip() for n in names if n.strip()]


def resolve_passes(
    passes: str | list[str] | tuple[str, ...] | None = None,
    skip: str | list[str] | tuple[str, ...] | None = None,
) -> list[str]:
    """The pass names to run: `passes` (comma list or sequence; default DEFAULT_ORDER) minus `skip`."""
    chosen = _split(passes)
    chosen = list(DEFAULT_ORDER) if chosen is None else chosen
    skipped = _split(skip) or []
    unknown = [n for n in chosen + skipped if n not in PASSES]
    if unknown:
        raise AcmixError(f"unknown pass {', '.join(unknown)}; known passes: {', '.join(PASSES)}")
    return [n for n in chosen if n not in skipped]


__all__ = [
    "DEFAULT_ORDER",
    "PASSES",
    "PassInfo",
    "eliminate_noops",
    "fold_batchnorm",
    "fold_constants",
    "fold_scalars",
    "fuse_parallel_conv1x1",
    "gelu_fusable",
    "resolve_passes",
]
