"""One helper for the packages that expose names lazily (PEP 562 module `__getattr__`).

Why lazy: `import acmix_deploy` and `acmix-deploy --help` must not import torch, onnxruntime or
tensorrt, yet the top level and the bench / train packages offer functions that live in heavy
modules. Each package declares `name -> "module:attribute"` once and gets `__getattr__` and
`__dir__` from here, so the resolution rule (and its error message) exists in one place.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package` resolving `exports` on first use.

    A target is "module" (same attribute name) or "module:attribute" (a public alias, e.g.
    `benchmark` -> `acmix_deploy.bench.run:bench`). The resolved object is cached in the package
    namespace, so later lookups are plain attribute reads.
    """

    def __getattr__(name: str) -> Any:
        target = exports.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module_name, _, attribute = target.partition(":")
        value = getattr(importlib.import_module(module_name), attribute or name)
        module = importlib.import_module(package)
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        module = importlib.import_module(package)
        return sorted(set(vars(module)) | set(exports))

    return __getattr__, __dir__
