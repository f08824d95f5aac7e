"""Training precision: `--precision auto|fp32|bf16|fp16`, resolved against the device once, at the edge.

On a CPU with native bfloat16 (AVX512-BF16 or AMX) bf16 autocast with channels_last halves a ResNet-20 step
(docs/benchmarks.md); autocast keeps batch norm statistics, the loss and the weights' updates in fp32. fp16 is for
CUDA, with a gradient scaler.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from profiler.errors import FgnasError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Precision:
    name: str  # fp32 | bf16 | fp16
    dtype: torch.dtype | None  # autocast's dtype; None: no autocast
    channels_last: bool

    @property
    def scaled(self) -> bool:
        """fp16 gradients need a GradScaler; bf16 has fp32's range."""
        return self.dtype == torch.float16


FP32 = Precision("fp32", None, False)


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here (AVX512-BF16 / AMX): elsewhere bf16 is emulated and slower than fp32."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(name: str, device: torch.device) -> Precision:
    if name not in PRECISIONS:
        raise FgnasError(f"--precision {name!r}: use one of {', '.join(PRECISIONS)}")
    if device.type == "cuda":
        if name == "bf16" and not torch.cuda.is_bf16_supported():
            raise FgnasError("--precision bf16: this GPU has no bfloat16; use --precision fp16 or auto")
        if name == "fp32":
            return FP32
        return Precision("bf16", torch.bfloat16, True) if name == "bf16" else Precision("fp16", torch.float16, True)
    if name == "fp16":
        raise FgnasError("--precision fp16 is for CUDA; on a CPU use bf16 (where supported), auto or fp32")
    if name == "fp32" or (name == "auto" and not cpu_has_bf16()):
        return FP32
    if not cpu_has_bf16():
        raise FgnasError("--precision bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX); use --precision "
                         "auto or fp32")
    return Precision("bf16", torch.bfloat16, True)
