"""Triton python-backend model: an ONNX file run by ONNX Runtime inside the python backend.

Written by `acmix-deploy triton-repo --backend python`, for Triton builds without the
onnxruntime backend (such as the CPU-only tritonserver in nvidia-pytriton). Self-contained: numpy
and onnxruntime only. The ONNX file sits next to this file (parameter `artifact_file`).
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

# The python backend stub bundled with nvidia-pytriton 0.7 predates NumPy 2: under NumPy 2 its
# as_numpy() misreads strides, while DLPack transfers work. Under NumPy 1 the reverse holds.
_DLPACK = int(np.__version__.split(".")[0]) >= 2


def to_numpy(tensor):
    return np.from_dlpack(tensor) if _DLPACK else tensor.as_numpy()


def to_tensor(name, array):
    array = np.ascontiguousarray(array)
    return pb_utils.Tensor.from_dlpack(name, array) if _DLPACK else pb_utils.Tensor(name, array)


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        folder = os.path.join(args["model_repository"], args["model_version"])
        options = ort.SessionOptions()
        threads = int(params.get("threads", "0"))
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        path = os.path.join(folder, params.get("artifact_file", "model.onnx"))
        self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests):
        """All requests of one dynamic batch in one session run, split back per request."""
        feeds = [[to_numpy(pb_utils.get_input_tensor_by_name(r, n)) for n in self.inputs] for r in requests]
        sizes = [f[0].shape[0] for f in feeds]
        try:
            joined = {n: np.concatenate([f[i] for f in feeds]) for i, n in enumerate(self.inputs)}
            values = self.session.run(self.outputs, joined)
        except Exception as exc:  # onnxruntime raises its own exception classes
            line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(line)) for _ in requests]
        bounds = np.cumsum([0] + sizes)
        return [
            pb_utils.InferenceResponse([to_tensor(n, v[lo:hi]) for n, v in zip(self.outputs, values)])
            for lo, hi in zip(bounds[:-1], bounds[1:])
        ]
