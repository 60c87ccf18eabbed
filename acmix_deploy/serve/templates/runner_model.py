"""Triton python-backend model: an artifact run by acmix-deploy's own runners.

Written by `acmix-deploy serve ARTIFACT` into a temporary repository for the bundled tritonserver;
it imports acmix_deploy from the folder named by the `acmix_deploy_path` parameter (the toolkit
that started the server), so the server runs exactly the code of the command.
"""

import json
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

# See onnx_model.py: the bundled stub needs DLPack under NumPy 2 and as_numpy / Tensor under NumPy 1.
_DLPACK = int(np.__version__.split(".")[0]) >= 2


def to_numpy(tensor):
    return np.from_dlpack(tensor) if _DLPACK else tensor.as_numpy()


def to_tensor(name, array):
    array = np.ascontiguousarray(array)
    return pb_utils.Tensor.from_dlpack(name, array) if _DLPACK else pb_utils.Tensor(name, array)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        if params["acmix_deploy_path"] not in sys.path:
            sys.path.insert(0, params["acmix_deploy_path"])
        from acmix_deploy.serve.runtime import open_runner

        threads = int(params.get("threads", "0")) or None
        self.run = open_runner(params["artifact_path"], params["runner"], int(params["input_size"]), threads)
        self.input = config["input"][0]["name"]
        self.output = config["output"][0]["name"]
        self.dtype = pb_utils.triton_string_to_numpy(config["output"][0]["data_type"])

    def execute(self, requests):
        """All requests of one dynamic batch in one runner call, split back per request."""
        arrays = [to_numpy(pb_utils.get_input_tensor_by_name(r, self.input)) for r in requests]
        try:
            out = self.run(np.concatenate(arrays)).astype(self.dtype, copy=False)
        except Exception as exc:  # any backend's error becomes this batch's one-line error
            line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(line)) for _ in requests]
        bounds = np.cumsum([0] + [a.shape[0] for a in arrays])
        return [pb_utils.InferenceResponse([to_tensor(self.output, out[lo:hi])]) for lo, hi in zip(bounds[:-1], bounds[1:])]
