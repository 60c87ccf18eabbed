"""acmix-deploy: ONNX / TensorRT deployment toolkit for ACmix networks.

The top level is a timm-like Python API that mirrors the CLI::

    import acmix_deploy as ad
    model = ad.create_model("resnet_acmix26", num_classes=10)
    ad.list_models("*acmix*")
    result = ad.export_onnx("resnet_acmix26", img_size=64, output="r26.onnx")

Every name resolves lazily (acmix_deploy/_lazy.py), so `import acmix_deploy` and
`acmix-deploy --help` import neither torch, onnxruntime nor tensorrt. No public function shares a
name with a submodule: importing `acmix_deploy.bench` or `acmix_deploy.evaluate` binds those
modules as package attributes, so the functions are `benchmark` and `evaluate_artifacts`.
"""

from __future__ import annotations

from acmix_deploy._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    # models
    "create_model": "acmix_deploy.registry",
    "list_models": "acmix_deploy.registry",
    "get_card": "acmix_deploy.registry",
    # artifacts: export -> optimize -> fp16 / int8 -> engine
    "export_onnx": "acmix_deploy.export",
    "optimize": "acmix_deploy.passes.pipeline:optimize_file",
    "convert_fp16": "acmix_deploy.precision.fp16",
    "quantize_int8": "acmix_deploy.precision.int8",
    "build_engine": "acmix_deploy.trt.build",
    "build_pipeline": "acmix_deploy.pipeline",  # all of the above in one call, as build-trt does
    "PipelineOptions": "acmix_deploy.pipeline",
    # measuring and checking
    "benchmark": "acmix_deploy.bench.run:bench",
    "profile_model": "acmix_deploy.bench.profile:profile",
    "evaluate_artifacts": "acmix_deploy.evaluate:evaluate",
    # training
    "train_model": "acmix_deploy.train.loop:train",
    "TrainConfig": "acmix_deploy.train.config",
    # the one error type
    "AcmixError": "acmix_deploy.errors",
}

__all__ = sorted([*_EXPORTS, "__version__"])
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
