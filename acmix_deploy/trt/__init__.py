"""TensorRT engine building (`build.py`) and inspection (`inspect.py`).

What running an engine needs lives one layer down, in acmix_deploy/runners/: the import shim for
`tensorrt` / `tensorrt_rtx` (trt_import.py), the engine's JSON sidecar (sidecar.py), the engine runner
(trt_engine.py) and GPU detection (gpu.py). Nothing here is imported by `import acmix_deploy`.
"""
