"""PyTorch runners: a module run eagerly, in its deploy form, or through torch.compile.

Eager and deploy modules in eval mode may be called from several threads (forward passes share no
mutable state); a torch.compile'd module (Dynamo compiles on first call per shape) and a captured
CUDA graph (one static input buffer) may not: those instances serialize `infer` calls.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import numpy as np

from acmix_deploy.runners.base import BackendUnavailable, Runner, RunnerOptions, TensorMeta, make_images

INPUT_NAME = "images"  # the names export gives the ONNX graph, so runners of one model agree
LOGITS_NAME = "logits"


def deploy_form(model: Any) -> Any:
    """The model's deploy (inference-time) form: its own .deploy() where it has one, else
    acmix_deploy.nn.switch_to_deploy (a plain eval copy for models without ACmix or Swin blocks)."""
    if callable(getattr(model, "deploy", None)):
        out = model.deploy()
    else:
        from acmix_deploy.nn import switch_to_deploy

        out = switch_to_deploy(model)
    return model if out is None else out


class TorchRunner(Runner):
    """`model`: an nn.Module or a picklable factory returning one (bench measures memory in a child)."""

    def __init__(self, model: Any | Callable[[], Any], backend: str = "torch-eager",
                 options: RunnerOptions | None = None) -> None:
        super().__init__()
        self.name = backend
        self.options = options or RunnerOptions()
        self.device = self.options.device
        self.thread_safe = backend != "torch-compile" and not self.options.cuda_graph
        self._source = model
        self._model: Any = None
        self._graph: Any = None

    def _activate(self) -> None:
        try:
            import torch
        except ImportError:
            raise BackendUnavailable("PyTorch is not installed") from None
        if self.device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("no CUDA GPU for PyTorch")
        if self.name == "torch-compile" and self.device == "cpu" and not (shutil.which("c++") or shutil.which("g++")):
            raise BackendUnavailable("torch.compile on CPU needs a C++ compiler (none on PATH)")
        self._torch = torch
        model = self._source if isinstance(self._source, torch.nn.Module) else self._source()
        model = model.eval()
        if self.name == "torch-deploy":
            model = deploy_form(model).eval()
        model = model.to(self.device)
        self.module = model  # the plain module (its .card, .classes) before torch.compile wraps it
        self._model = torch.compile(model) if self.name == "torch-compile" else model

    def _deactivate(self) -> None:
        self._model = None
        self._graph = None
        if self.device == "cuda":
            self._torch.cuda.empty_cache()

    def input_metadata(self) -> dict[str, TensorMeta]:
        h, w = self.options.input_size
        return {INPUT_NAME: TensorMeta((None, 3, h, w), np.dtype(np.float32))}

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        (x,) = feed.values()
        before = torch.get_num_threads()
        if self.options.threads:
            torch.set_num_threads(self.options.threads)
        try:
            with torch.inference_mode():
                out = self._model(torch.from_numpy(np.ascontiguousarray(x)).to(self.device))
        finally:
            torch.set_num_threads(before)
        if isinstance(out, dict):
            return {k: v.float().cpu().numpy() for k, v in out.items()}
        if isinstance(out, (list, tuple)):
            return {f"output{i}": v.float().cpu().numpy() for i, v in enumerate(out)}
        return {LOGITS_NAME: out.float().cpu().numpy()}

    # -- benchmark hooks ----------------------------------------------------------------------------
    def _capture(self, x: Any) -> None:
        """Record one forward pass into a CUDA graph that __call__ replays."""
        torch = self._torch
        self._static_in = x.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):
                self._model(self._static_in)
        torch.cuda.current_stream().wait_stream(stream)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph), torch.inference_mode():
            self._static_out = self._model(self._static_in)

    def prepare(self, batch: int) -> Any:
        torch = self._torch
        if self.options.threads:
            torch.set_num_threads(self.options.threads)  # the timing loop calls the module directly
        x = torch.from_numpy(make_images(batch, self.options.input_size, self.options.seed))
        if self.device == "cuda" and not self.options.include_transfers:
            x = x.to(self.device)
        self._graph = None
        if self.options.cuda_graph and self.device == "cuda":
            self._capture(x.to(self.device))
        self(x)
        self.synchronize()
        return x

    def __call__(self, inputs: Any) -> Any:
        torch = self._torch
        if self._graph is not None:
            if self.options.include_transfers:
                self._static_in.copy_(inputs, non_blocking=False)
                self._graph.replay()
                return self._static_out.cpu()
            self._graph.replay()
            return self._static_out
        with torch.inference_mode():
            if self.options.include_transfers and self.device != "cpu":
                return self._model(inputs.to(self.device)).cpu()
            return self._model(inputs)

    def synchronize(self) -> None:
        if self.device == "cuda":
            self._torch.cuda.synchronize()
