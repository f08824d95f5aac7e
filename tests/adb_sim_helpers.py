"""Shared set-up for the ADB tests: simulated phones on 127.0.0.1, a temp ADB key, a pushed benchmark binary stub,
and a small real .tflite model built by the project's model builder."""
from __future__ import annotations

from pathlib import Path

import pytest

from profiler.adb_sim import AdbServer, Faults, SimPhone, arm64_elf_stub


class SimFarm:
    """Starts simulated phones and stops them at teardown."""

    def __init__(self):
        self.servers: list[AdbServer] = []

    def start(self, phone: str = "pixel1", faults: Faults = Faults(), **phone_options) -> AdbServer:
        server = AdbServer(SimPhone(phone, **phone_options), faults=faults).start()
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
    monkeypatch.setenv("HOME", str(adb_key_dir))
    monkeypatch.delenv("FGNAS_ADB_KEY", raising=False)
    monkeypatch.delenv("FGNAS_BENCHMARK_MODEL", raising=False)
    monkeypatch.setenv("FGNAS_ADB_RETRIES", "3")
    monkeypatch.setenv("FGNAS_ADB_BACKOFF_S", "0.05")
    binary = tmp_path / "android_aarch64_benchmark_model"
    binary.write_bytes(arm64_elf_stub())
    return binary


@pytest.fixture(scope="session")
def small_models(tmp_path_factory) -> list[Path]:
    """Three tiny convs as real .tflite files (TF's converter, through profiler.model_builder)."""
    from profiler.model_builder import build_model
    from profiler.spec import ConvSpec

    cache = tmp_path_factory.mktemp("models")
    specs = [ConvSpec(8, 8, 4, 8, 3, activation="relu"), ConvSpec(8, 8, 8, 8, 1),
             ConvSpec.depthwise(8, 8, 8, 3, activation="relu")]
    return [build_model(spec, cache) for spec in specs]
