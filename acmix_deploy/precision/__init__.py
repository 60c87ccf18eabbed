"""Precision transforms on ONNX graphs for strongly typed TensorRT builds.

TensorRT 11 and TensorRT-RTX only build strongly typed networks, so precision lives in the graph:
fp16 = a cast graph with the numerically sensitive ops kept fp32 (`fp16.py`), int8 = explicit
QuantizeLinear / DequantizeLinear pairs (`int8.py`). Both are verified in ONNX Runtime against the
fp32 model on held-out inputs (`verify.py`) before anything is written.
"""
