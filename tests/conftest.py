"""Fixtures shared by several test modules: a model cache, simulated phones over ADB, and the CI gate's models.

Heavy imports (TensorFlow through the model builder, the ADB simulator) happen inside the fixtures, so a test module
that uses none of them does not pay for them. Plain helper functions live in tests/helpers.py and
tests/synthetic_table.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """One cache of converted .tflite models for the session: models are named by their configuration hash, so any
    test may add to it and only the first that needs a model pays TF's converter."""
    return tmp_path_factory.mktemp("models")


# ---- simulated phones (profiler.adb_sim) --------------------------------------------------------------------------

class SimFarm:
    """Starts simulated phones and stops them at teardown."""

    def __init__(self):
        self.servers: list = []

    def start(self, phone: str = "pixel1", faults=None, **phone_options):
        from profiler.adb_sim import AdbServer, Faults, SimPhone

        server = AdbServer(SimPhone(phone, **phone_options), faults=faults or Faults()).start()
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()
            server.phone.close()


@pytest.fixture
def sims():
    farm = SimFarm()
    yield farm
    farm.stop_all()


@pytest.fixture(scope="session")
def adb_key_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("android-home")


@pytest.fixture
def adb_env(adb_key_dir, tmp_path, monkeypatch) -> Path:
    """A temp HOME and key (never the user's ~/.android), fast reconnect backoff, and a benchmark binary stub."""
    from profiler.adb_sim import arm64_elf_stub

    monkeypatch.setenv("HOME", str(adb_key_dir))
    monkeypatch.delenv("FGNAS_ADB_KEY", raising=False)
    monkeypatch.delenv("FGNAS_BENCHMARK_MODEL", raising=False)
    monkeypatch.setenv("FGNAS_ADB_RETRIES", "3")
    monkeypatch.setenv("FGNAS_ADB_BACKOFF_S", "0.05")
    binary = tmp_path / "android_aarch64_benchmark_model"
    binary.write_bytes(arm64_elf_stub())
    return binary


@pytest.fixture(scope="session")
def small_models(model_cache) -> list[Path]:
    """Three tiny convs as real .tflite files (TF's converter, through profiler.measure.model_builder)."""
    from profiler.measure.model_builder import build_model
    from profiler.spec import ConvSpec

    specs = [ConvSpec(8, 8, 4, 8, 3, activation="relu"), ConvSpec(8, 8, 8, 8, 1),
             ConvSpec.depthwise(8, 8, 8, 3, activation="relu")]
    return [build_model(spec, model_cache) for spec in specs]


# ---- the CI gate (fgnas-check) ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckModels:
    cache: Path
    demo: Path
    slower: Path  # about twice the demo model's latency: far outside any noise
    reference: Path


@pytest.fixture(scope="session")
def check_models(tmp_path_factory) -> CheckModels:
    """The demo-like model, a much slower variant and the reference model, converted once per session."""
    from profiler.gate.demo_model import BASE_CHANNELS, demo_model
    from profiler.measure.reference_model import reference_model

    cache = tmp_path_factory.mktemp("check-models")
    slower = tuple(2 * c for c in BASE_CHANNELS)
    return CheckModels(cache, demo_model(BASE_CHANNELS, cache), demo_model(slower, cache),
                       reference_model(cache_dir=cache))
