# syntax=docker/dockerfile:1
# acmix-deploy for GPU servers: TensorRT + ONNX Runtime (CUDA) + PyTorch (CUDA) in one image.
#
#   docker build -t acmix-deploy:gpu .
#   docker run --rm --gpus all -v "$PWD/artifacts:/workspace/artifacts" acmix-deploy:gpu \
#       build-trt --model resnet_acmix26 --fp16
#
# CUDA 12, like the `gpu` extra: the base image NGC PyTorch 25.06 (Python 3.12, CUDA 12.9) brings a
# CUDA 12 build of PyTorch and TensorRT 10.x, and pins them through /etc/pip/constraint.txt; the image
# adds the `ort-gpu` extra (the CUDA 12 onnxruntime-gpu releases of the `gpu` extra, without a second
# TensorRT) and our pure-Python dependencies, without replacing torch. The base is pinned by tag, not
# by digest: no digest quoted by NVIDIA's NGC catalog page could be checked from where this file was
# written, and a digest copied from anywhere else would pin an image nobody verified. Engines are
# tied to the TensorRT version and the GPU: build them inside this image, on the kind of GPU that
# will run them.
FROM nvcr.io/nvidia/pytorch:25.06-py3

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ACMIX_DEPLOY_WORKSPACE=/workspace/artifacts

# The sources are bind-mounted for the install only (BuildKit), so no layer keeps them.
RUN --mount=type=bind,source=.,target=/src,rw \
    python -m pip install "/src[ort-gpu]" \
 && python -c "import tensorrt, onnxruntime, acmix_deploy; print('tensorrt', tensorrt.__version__)"

# Run as an unprivileged user; /workspace holds the artifact workspace (mount a volume there).
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin acmix \
 && mkdir -p /workspace/artifacts \
 && chown -R acmix:acmix /workspace
USER acmix
WORKDIR /workspace

ENTRYPOINT ["acmix-deploy"]
CMD ["--help"]
