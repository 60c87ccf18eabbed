"""acmix-deploy: ONNX / TensorRT deployment toolkit for ACmix networks.

The public Python API mirrors the CLI; heavy optional backends (tensorrt, onnxruntime) are
imported lazily by the modules that need them so that `import acmix_deploy` stays cheap.
"""

__version__ = "0.1.0"
