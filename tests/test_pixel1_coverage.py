"""Issue 16: device_tables/pixel1.json prices every standard Keras mobile model (MobileNet, MobileNetV2,
MobileNetV3Large/Small at the widths Keras offers, input sizes 96..224, with and without softmax); no latency is
asserted here (benchmarks/import_tables.py compares with the published figures).

The suite converts the representative grid (profiler.latency.importers.reference_models.representative_grid: 8 models,
each family's narrowest width at 96 px with softmax and widest at 160 px without), once per session; the full grid of
130 models is priced by `benchmarks/import_tables.py --coverage full`.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from profiler.latency.importers.reference_models import KerasModel, convert, representative_grid
from profiler.latency.table import LatencyTable
from profiler.latency.tflite_reader import predict_model, read_ops
from profiler.model_ops import ConvOp

ROOT = Path(__file__).resolve().parents[1]
PIXEL1 = ROOT / "device_tables" / "pixel1.json"
GRID = representative_grid()


@pytest.fixture(scope="session")
def keras_models(tmp_path_factory) -> dict[KerasModel, Path]:
    pytest.importorskip("tensorflow")
    directory = tmp_path_factory.mktemp("keras_mobile")
    return dict(zip(GRID, convert(GRID, directory)))


@pytest.fixture(scope="module")
def pixel1() -> LatencyTable:
    return LatencyTable.load(PIXEL1)


@pytest.mark.slow
@pytest.mark.parametrize("model", GRID, ids=lambda m: m.name)
def test_pixel1_prices_standard_keras_mobile_model(model, keras_models, pixel1):
    prediction = predict_model(pixel1, keras_models[model])
    assert prediction.total_ms > 0 and len(prediction.ops) == len(read_ops(keras_models[model]))
    ops = {p.op for p in prediction.ops}
    assert ("SOFTMAX" in ops) == model.softmax
    assert all(p.provenance.startswith(("fitted", "transferred from host")) for p in prediction.ops)


@pytest.mark.slow
def test_pixel1_predict_says_which_ops_were_transferred_and_which_fitted(keras_models, pixel1):
    v3 = next(path for model, path in keras_models.items() if model.family == "MobileNetV3Large" and model.softmax)
    by_op = {p.op: p for p in predict_model(pixel1, v3).ops}
    softmax = by_op["SOFTMAX"].provenance
    assert softmax.startswith("transferred from host x") and "ADD ratio" in softmax
    assert by_op["MUL"].provenance.startswith("transferred from host")
    assert by_op["ADD"].provenance == "fitted" and by_op["MEAN"].provenance == "fitted (slope tied to ADD)"
    convs = [p for p in predict_model(pixel1, v3).ops if p.op.startswith(("CONV_2D", "DEPTHWISE"))]
    assert all(p.provenance == "fitted" for p in convs)
    assert any(p.fallback and p.fallback.startswith("fully-connected") for p in convs)  # squeeze-excite, head


def test_pixel1_prices_sizes_between_its_levels_by_interpolation(pixel1):
    from profiler.spec import ConvSpec

    at_56, at_28 = (pixel1.predict(ConvSpec(h, h, 64, 64, 1, 1, 1, "relu6")) for h in (56, 28))
    between = pixel1.predict(ConvSpec(40, 40, 64, 64, 1, 1, 1, "relu6"))  # 160 px input, level 2
    per_mflop = [p.ms / (2 * h * h * 64 * 64 / 1e6) for p, h in ((at_56, 56), (between, 40), (at_28, 28))]
    assert min(per_mflop[0], per_mflop[2]) <= per_mflop[1] <= max(per_mflop[0], per_mflop[2])
    assert "between 28x28 and 56x56" in between.fallback
    tiny = pixel1.predict(ConvSpec(3, 3, 64, 64, 1, 1, 1, "relu6"))  # 96 px input, last level: clamped
    assert "clamped to 7x7" in tiny.fallback


def test_in_network_factor_is_one_on_vectors_and_below_one_on_large_working_sets(pixel1):
    from profiler.model_ops import OtherOp
    from profiler.spec import ConvSpec

    big = ConvOp(0, ("CONV_2D",), ConvSpec(14, 14, 512, 512, 1, 1, 1, "relu6"))
    fc = OtherOp(1, "FULLY_CONNECTED", ((1, 1024), (1000, 1024), (1000,)), ((1, 1000),))
    assert pixel1.in_network_factor(fc) == 1.0
    assert 0.5 < pixel1.in_network_factor(big) < 1.0
