"""The pruned plan as a plain PyTorch module (NCHW): what ONNX export traces and parity compares against."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from export.plan import SKIP, PrunedConv, PrunedLayer, PrunedPlan

_ACTIVATIONS = {
    "none": lambda x, slope: x,
    "relu": lambda x, slope: F.relu(x),
    "relu6": lambda x, slope: F.relu6(x),
    "tanh": lambda x, slope: torch.tanh(x),
    "prelu": lambda x, slope: F.prelu(x, slope),
}


def _param(array) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(array.copy()), requires_grad=False)


class PrunedOp(nn.Module):
    def __init__(self, conv: PrunedConv) -> None:
        super().__init__()
        self.spec = conv
        self.weight = _param(conv.weight)
        self.bias = _param(conv.bias)
        self.slope = _param(conv.slope) if conv.slope is not None else None
        if conv.select.kind == "gather":
            self.register_buffer("index", torch.tensor(conv.select.indices, dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        select = self.spec.select
        if select.kind == "slice":
            x = x[:, select.start:select.start + select.size]
        elif select.kind == "gather":
            x = x.index_select(1, self.index)
        groups = self.spec.cout if self.spec.depthwise else 1
        y = F.conv2d(x, self.weight, self.bias, self.spec.stride, self.spec.kernel // 2, groups=groups)
        y = _ACTIVATIONS[self.spec.activation](y, self.slope)
        return y * self.spec.out_scale if self.spec.out_scale != 1.0 else y


class PrunedLayerModule(nn.Module):
    def __init__(self, layer: PrunedLayer) -> None:
        super().__init__()
        self.spec = layer
        self.ops = nn.ModuleList(PrunedOp(op) for op in layer.ops)
        self.post_slope = _param(layer.post_slope) if layer.post_slope is not None else None

    def forward(self, x: Tensor, skip: Tensor | None) -> Tensor:
        parts = {}
        for i, (op, module) in enumerate(zip(self.spec.ops, self.ops)):
            y = module(x)
            parts[i] = torch.split(y, list(op.splits), dim=1) if len(op.splits) > 1 else (y,)
        if skip is not None:
            parts[SKIP] = (torch.split(skip, list(self.spec.skip_splits), dim=1)
                           if len(self.spec.skip_splits) > 1 else (skip,))
        runs = []
        for run in self.spec.runs:
            total = parts[run[0].op][run[0].part]
            for piece in run[1:]:
                total = total + parts[piece.op][piece.part]
            runs.append(total)
        if self.spec.activation_per_run:  # as export/tflite.py writes it
            runs = [_ACTIVATIONS[self.spec.post_activation](run, None) for run in runs]
        y = torch.cat(runs, dim=1) if len(runs) > 1 else runs[0]
        if not self.spec.activation_per_run:
            y = _ACTIVATIONS[self.spec.post_activation](y, self.post_slope)
        pool = self.spec.pool
        return F.max_pool2d(y, pool.kernel, pool.stride) if pool else y


class PrunedNetwork(nn.Module):
    """Input NCHW float32, output logits; every tensor holds only alive channels, in the plan's order."""

    def __init__(self, plan: PrunedPlan) -> None:
        super().__init__()
        self.plan = plan
        self.layers = nn.ModuleDict({layer.name: PrunedLayerModule(layer) for layer in plan.layers})
        self.fc = nn.Linear(plan.head.weight.shape[1], plan.num_classes)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(plan.head.weight))
            self.fc.bias.copy_(torch.from_numpy(plan.head.bias))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        outputs = {"input": x}
        for layer in self.plan.layers:
            skip = outputs[layer.skip] if layer.skip else None
            outputs[layer.name] = self.layers[layer.name](outputs[layer.input], skip)
        return self.fc(outputs[self.plan.head.input].mean(dim=(2, 3)))
