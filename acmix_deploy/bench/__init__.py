"""Benchmarks and profiles: `bench()` (timing, statistics, memory, reports) here, `profile()` in
acmix_deploy.bench.profile (a package attribute named `profile` would be shadowed by that submodule).

Names are resolved lazily so that importing a submodule (e.g. sources from runners) stays cheap.
"""

from __future__ import annotations

from acmix_deploy._lazy import lazy_exports

_EXPORTS = {
    "bench": "acmix_deploy.bench.run",
    "BenchResult": "acmix_deploy.bench.run",
    "BenchRow": "acmix_deploy.bench.run",
    "BenchConfig": "acmix_deploy.bench.run",
    "ProfileResult": "acmix_deploy.bench.profile",
    "LatencyStats": "acmix_deploy.bench.stats",
    "summarize": "acmix_deploy.bench.stats",
    "ModelSource": "acmix_deploy.bench.sources",
    "render_markdown": "acmix_deploy.bench.markdown",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
