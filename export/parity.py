"""Do the exported models compute what the PyTorch model computes? Max abs difference against the output's scale,
and top-1 agreement, on real inputs of the run's data set."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from profiler.errors import FgnasError

# float32 runtimes sum in different orders (XNNPACK, ORT, MKL); 1e-3 of the largest logit is far above that
# round-off and far below any real mistake (a wrong channel or padding moves logits by tens of percent).
DEFAULT_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ParityResult:
    name: str
    samples: int
    max_abs_diff: float
    output_scale: float  # max |reference output|
    tolerance: float  # relative to output_scale
    top1_agreement: float
    enforced: bool  # float32 models must pass; quantized ones are reported only

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance * self.output_scale

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def compare(name: str, reference: np.ndarray, outputs: np.ndarray, tolerance: float = DEFAULT_TOLERANCE,
            enforced: bool = True) -> ParityResult:
    reference, outputs = np.asarray(reference, np.float64), np.asarray(outputs, np.float64)
    if reference.shape != outputs.shape:
        raise FgnasError(f"{name} outputs have shape {outputs.shape}, the PyTorch model's {reference.shape}")
    diff = float(np.max(np.abs(reference - outputs))) if reference.size else 0.0
    scale = max(float(np.max(np.abs(reference))) if reference.size else 0.0, 1e-12)
    agree = float(np.mean(reference.argmax(axis=1) == outputs.argmax(axis=1))) if len(reference) else 1.0
    return ParityResult(name, len(reference), diff, scale, tolerance, agree, enforced)


def require_parity(results: list[ParityResult]) -> None:
    """FgnasError naming the first float32 model whose outputs differ beyond the tolerance."""
    for r in results:
        if r.enforced and not r.passed:
            raise FgnasError(f"{r.name} differs from PyTorch by {r.max_abs_diff:.3g} (tolerance "
                             f"{r.tolerance:g} x output scale {r.output_scale:.3g}); the export is wrong: report it")


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(logits).argmax(axis=1) == np.asarray(labels))) if len(labels) else float("nan")


def eval_inputs(data: str, input_size: int, samples: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """The first `samples` validation images of a seeded subset, normalised as the search evaluated them (NCHW)."""
    from search.data import load_data
    from search.transforms import eval_transform

    splits = load_data(data, input_size, val_subset=samples, seed=seed)
    images = torch.from_numpy(np.ascontiguousarray(splits.val.images)).permute(0, 3, 1, 2).float().div_(255.0)
    x = eval_transform(input_size, splits.mean, splits.std)(images, torch.Generator())
    if x.shape[1] == 0:
        raise FgnasError(f"data set {data} has no validation images")
    return x.contiguous(), np.asarray(splits.val.labels)
