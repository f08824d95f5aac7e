"""The fixed reference model of relative checks: one conv layer, built deterministically by the model builder.

Measured interleaved with the model under check, it turns a latency (which moves with the machine's speed: clock
boost, thermal state, other load) into a ratio that stays put. The same spec always yields the same weights (they are
seeded by its configuration hash), so a baseline recorded today and a check run next month time the same network.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from profiler.measure.model_builder import DEFAULT_CACHE_DIR, build_model
from profiler.spec import ConvSpec

# The sweep's drift probe: a mid-sized 3x3 conv that every runtime has a tuned kernel for.
REFERENCE_SPEC = ConvSpec(28, 28, 64, 64, 3, 1, 1, "relu")


def reference_model(spec: ConvSpec = REFERENCE_SPEC, cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """Path of the reference .tflite, converted on first use (imports TensorFlow only then)."""
    return build_model(spec, cache_dir)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
