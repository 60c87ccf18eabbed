# syntax=docker/dockerfile:1
# acmix-deploy for GPU servers: TensorRT + ONNX Runtime (CUDA) + PyTorch (CUDA) in one image.
#
#   docker build -t acmix-deploy:gpu .
#   docker run --rm --gpus all -v "$PWD/artifacts:/workspace/artifacts" acmix-deploy:gpu \
#       build-trt --model resnet_acmix26 --fp16
#
# The base image is pinned: NGC PyTorch 25.06 (Python 3.12, CUDA 12.9) brings a CUDA build of
# PyTorch and TensorRT 10.x, and pins them through /etc/pip/constraint.txt, so installing the `gpu`
# extra adds onnxruntime-gpu and our pure-Python dependencies without replacing torch. Engines are
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
    python -m pip install "/src[gpu]" \
 && python -c "import tensorrt, onnxruntime, acmix_deploy; print('tensorrt', tensorrt.__version__)"

# Run as an unprivileged user; /workspace holds the artifact workspace (mount a volume there).
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin acmix \
 && mkdir -p /workspace/artifacts \
 && chown -R acmix:acmix /workspace
USER acmix
WORKDIR /workspace

ENTRYPOINT ["acmix-deploy"]
CMD ["--help"]
