"""Triton python-backend model: encoded image bytes (TYPE_STRING) -> the network's input tensor.

Written by `acmix-deploy triton-repo --ensemble`. Self-contained (numpy and Pillow only): the native
Triton container has no acmix_deploy. It applies the model card's eval preprocessing: decode to RGB,
resize the shorter side to round(size / crop_ratio), center crop size x size, (x / 255 - mean) / std,
CHW. The settings come from the `preprocessing` parameter of config.pbtxt (JSON).
"""

import io
import json

import numpy as np
import triton_python_backend_utils as pb_utils
from PIL import Image

FILTERS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


def resize_center_crop(image, size, crop_ratio, interpolation):
    w, h = image.size
    short = max(1, round(size / crop_ratio))
    scale = short / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), FILTERS[interpolation])
    left, top = (nw - size) // 2, (nh - size) // 2
    return image.crop((left, top, left + size, top + size))


def preprocess(data, pre):
    """Encoded bytes -> (3, size, size) float32."""
    with Image.open(io.BytesIO(data)) as img:
        image = img.convert("RGB")
    image = resize_center_crop(image, pre["input_size"], pre["crop_ratio"], pre["interpolation"])
    arr = np.asarray(image, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(pre["mean"], np.float32)) / np.asarray(pre["std"], np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.pre = json.loads(config["parameters"]["preprocessing"]["string_value"])
        self.output_name = config["output"][0]["name"]
        self.dtype = pb_utils.triton_string_to_numpy(config["output"][0]["data_type"])

    def execute(self, requests):
        return [self._one(request) for request in requests]

    def _one(self, request):
        data = pb_utils.get_input_tensor_by_name(request, "image").as_numpy()
        try:
            images = [preprocess(bytes(item), self.pre) for item in data.reshape(-1)]
        except Exception as exc:  # Pillow raises several types for undecodable bytes
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"cannot decode the image: {message}"))
        batch = np.stack(images).astype(self.dtype)
        return pb_utils.InferenceResponse([pb_utils.Tensor(self.output_name, batch)])
