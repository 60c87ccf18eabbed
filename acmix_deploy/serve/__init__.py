"""Serving on Triton Inference Server.

* `config`: Triton model configs built as tritonclient's ModelConfig protobuf, rendered to
  config.pbtxt, and validated for what a protobuf parse cannot see;
* `repository`: a Triton model repository from an artifact (ONNX, TensorRT engine + sidecar),
  optionally with a python-backend preprocessing model and an ensemble, written atomically;
* `server`: the tritonserver binary bundled in nvidia-pytriton, started in its own process group;
* `loadtest`: a load generator on tritonclient's async client (throughput, latency percentiles,
  the server's batch statistics).

tritonclient and nvidia-pytriton come with the `serve` extra and are imported lazily.
"""

SERVE_EXTRA_HINT = (
    "pip install 'acmix-deploy[serve]' (nvidia-pytriton wheels exist for Linux x86_64 with glibc 2.35+ only)"
)
