"""Shared set-up for the CI gate's tests: the demo-like model, a much slower variant and the reference model,
converted once per session into one cache directory (TF's converter, through the project's model builder)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from profiler.demo_model import BASE_CHANNELS, demo_model
from profiler.reference_model import reference_model

SLOWER_CHANNELS = tuple(2 * c for c in BASE_CHANNELS)  # about twice the latency: far outside any noise


@dataclass(frozen=True)
class CheckModels:
    cache: Path
    demo: Path
    slower: Path
    reference: Path


@pytest.fixture(scope="session")
def check_models(tmp_path_factory) -> CheckModels:
    cache = tmp_path_factory.getbasetemp() / "check-models"
    return CheckModels(cache, demo_model(BASE_CHANNELS, cache), demo_model(SLOWER_CHANNELS, cache),
                       reference_model(cache_dir=cache))
