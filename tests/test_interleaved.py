from pathlib import Path

import pytest

from profiler.measure.devices.base import BenchmarkSettings, Device, Measurement
from profiler.measure.interleaved import lowest_of_passes


class Scripted(Device):
    """Answers each model's medians in turn and records the order it was asked in."""

    name = "scripted"

    def __init__(self, medians: dict[str, list[float]]) -> None:
        self.medians = {k: list(v) for k, v in medians.items()}
        self.asked: list[str] = []

    def info(self) -> dict:
        return {"name": self.name}

    def benchmark(self, model_path: Path, settings: BenchmarkSettings) -> Measurement:
        self.asked.append(model_path.name)
        ms = self.medians[model_path.name].pop(0)
        return Measurement(ms, ms, 0.0, ms, 1, 0, 0.0, 0.0)


def test_lowest_median_of_interleaved_passes():
    device = Scripted({"a": [3.0, 2.0, 2.5], "b": [1.0, 1.4, 1.2]})
    lowest = lowest_of_passes(device, [Path("a"), Path("b")], BenchmarkSettings(), passes=3)
    assert lowest == [2.0, 1.0]
    assert device.asked == ["a", "b"] * 3


def test_no_pass_is_an_error():
    with pytest.raises(ValueError):
        lowest_of_passes(Scripted({}), [Path("a")], BenchmarkSettings(), passes=0)
