"""ONNX export of the pruned PyTorch module (TorchScript exporter, opset >= 17), checked with onnx.checker."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch

from export.files import atomic_write_bytes
from export.torch_model import PrunedNetwork
from profiler.errors import FgnasError

OPSET = 17


def onnx_bytes(module: PrunedNetwork, opset: int = OPSET) -> bytes:
    """The module as a checked ONNX model with a dynamic batch dimension (input NCHW float32, output logits)."""
    import onnx

    if opset < 17:
        raise FgnasError(f"ONNX opset {opset} is too old: use 17 or newer")
    plan = module.plan
    example = torch.zeros(1, plan.in_channels, plan.height, plan.width)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the dynamo exporter needs onnxscript; the TorchScript one handles this static graph exactly
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, (example,), buffer, opset_version=opset, dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    data = buffer.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    return data


def write_onnx(module: PrunedNetwork, path: Path, opset: int = OPSET) -> Path:
    atomic_write_bytes(Path(path), onnx_bytes(module, opset))
    return Path(path)


def run_onnx(path: Path, inputs: np.ndarray) -> np.ndarray:
    """Outputs of an ONNX model with ONNX Runtime (CPU) for a batch of inputs in the model's own layout."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.ascontiguousarray(inputs, dtype=np.float32)})[0]
