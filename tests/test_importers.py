"""Importing published phone latency lookup tables: key parsing, block decomposition, the joint fit, the tables."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from profiler.errors import FgnasError
from profiler.latency.importers import import_table
from profiler.latency.importers.blocks import LutEntry, MBConv, decompose_mbconv, make_divisible, se_channels
from profiler.latency.importers.joint_fit import SHARINGS, fit, held_out_predictions, level, relative_errors
from profiler.latency.importers.lut_keys import parse_key, read_lut
from profiler.latency.table import LatencyTable, sha256_file
from profiler.spec import ConditionKey, ConvSpec, flops

ROOT = Path(__file__).resolve().parents[1]
LATENCY = Path(os.environ.get("FGNAS_SHARED_DATA", ROOT.parent / "shared" / "data")) / "latency"
PROXYLESS = LATENCY / "proxylessnas_pixel1_mobile_trim.yaml"
OFA_DIR = LATENCY / "ofa_note10"
needs_proxyless = pytest.mark.skipif(not PROXYLESS.exists(), reason="../shared/data/latency is absent")
needs_ofa = pytest.mark.skipif(not OFA_DIR.exists(), reason="../shared/data/latency/ofa_note10 is absent")


def test_make_divisible_matches_hand_computed_values():
    assert make_divisible(36) == 40  # int(36 + 4) // 8 * 8
    assert make_divisible(3) == 8  # never below the divisor
    assert make_divisible(100) == 104
    assert se_channels(408) == 104  # 102 -> 104
    assert se_channels(144) == 40


def test_parse_key_reads_fields():
    name, fields = parse_key("expanded_conv-input:56x56x24-output:28x28x40-expand:3-kernel:5-stride:2-idskip:0")
    assert name == "expanded_conv"
    assert fields == {"input": "56x56x24", "output": "28x28x40", "expand": "3", "kernel": "5", "stride": "2",
                      "idskip": "0"}
    with pytest.raises(ValueError):
        parse_key("Conv-input")


def test_proxylessnas_block_decomposes_into_expand_depthwise_project():
    convs, ops = decompose_mbconv(MBConv(56, 56, 24, 40, 72, 5, 2, idskip=False))
    assert convs == (ConvSpec(56, 56, 24, 72, 1, 1, 1, "relu6"), ConvSpec.depthwise(56, 56, 72, 5, 2, "relu6"),
                     ConvSpec(28, 28, 72, 40, 1, 1, 1, "none"))
    assert [flops(c) for c in convs] == [2 * 56 * 56 * 24 * 72, 2 * 28 * 28 * 72 * 25, 2 * 28 * 28 * 72 * 40]
    assert ops == ()


def test_expand_ratio_one_block_has_no_expand_conv():
    convs, _ = decompose_mbconv(MBConv(112, 112, 32, 16, 32, 3, 1, idskip=False, has_expand=False))
    assert [c.conv_type for c in convs] == ["depthwise", "normal"]
    assert convs[1] == ConvSpec(112, 112, 32, 16, 1, 1, 1, "none")


def test_se_hswish_skip_block_gets_unfused_hswish_se_and_add():
    convs, ops = decompose_mbconv(MBConv(14, 14, 136, 136, 408, 3, 1, idskip=True, se=True, hswish=True,
                                         activation="relu"))
    assert [c.activation for c in convs] == ["none", "none", "relu", "none", "none"]
    assert convs[2] == ConvSpec(1, 1, 408, 104, 1, 1, 1, "relu") and convs[3] == ConvSpec(1, 1, 104, 408, 1, 1, 1)
    assert [(o.op, o.units) for o in ops] == [("HARD_SWISH", 14 * 14 * 408), ("HARD_SWISH", 14 * 14 * 408),
                                             ("MEAN", 14 * 14 * 408), ("MUL", 14 * 14 * 408), ("ADD", 14 * 14 * 136)]
    assert ops[2].unit == "input_elements" and ops[4].unit == "output_elements"


def _synthetic_entries(params: dict[str, float]) -> list[LutEntry]:
    """Blocks at 224 whose latencies follow the dw-per-stride sharing exactly with the given parameters."""
    sharing = SHARINGS["dw-per-stride"]
    entries = []
    for h, cin, cout, stride in [(56, 24, 24, 1), (56, 24, 32, 2), (28, 32, 32, 1), (28, 32, 64, 2)]:
        for ratio in (3, 6):
            for kernel in (3, 5, 7):
                skip = stride == 1 and cin == cout
                convs, ops = decompose_mbconv(MBConv(h, h, cin, cout, ratio * cin, kernel, stride, skip))
                ms = 0.0
                for spec in convs:
                    ms += sum(params[p] for p in sharing.conv_slope(spec, 224)) * flops(spec) / 1e6 + params["conv:b"]
                ms += sum(params["ADD:a"] * o.units / 1e6 + params["ADD:b"] for o in ops)
                entries.append(LutEntry(f"{h}-{cin}-{cout}-{stride}-{ratio}-{kernel}", "block", 224, ms, 0.0, 1,
                                        convs, ops))
    return entries


SYNTHETIC = {"normal:k1:s1@L2": 0.15, "normal:k1:s1@L3": 0.11, "normal:k1:s1@L4": 0.09, "dw:s1@L2": 0.21,
             "dw:s2@L2": 0.28, "dw:s1@L3": 0.20, "dw:s2@L3": 0.24, "conv:b": 0.01, "ADD:a": 1.3, "ADD:b": 0.02}


def test_joint_fit_recovers_the_parameters_that_generated_the_blocks():
    fitted = fit(_synthetic_entries(SYNTHETIC), SHARINGS["dw-per-stride"])
    for name, value in SYNTHETIC.items():
        assert fitted.params[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    a, b = fitted.conv_model(ConvSpec.depthwise(56, 56, 72, 7, 2, "relu6"), 224)
    assert (a, b) == (pytest.approx(0.28), pytest.approx(0.01))


def test_held_out_error_is_zero_on_exact_data_and_positive_on_perturbed_data():
    entries = _synthetic_entries(SYNTHETIC)
    sharing = SHARINGS["dw-per-stride"]
    exact = relative_errors(entries, held_out_predictions(entries, sharing, lambda e: e.key))
    assert len(exact) == len(entries) and max(exact) < 1e-6
    bumped = [LutEntry(e.key, e.role, e.resolution, e.mean_ms * (1.1 if i == 5 else 1.0), 0.0, 1, e.convs, e.ops)
              for i, e in enumerate(entries)]
    errors = relative_errors(bumped, held_out_predictions(bumped, sharing, lambda e: e.key))
    assert errors[5] == pytest.approx(0.1 / 1.1, rel=0.2)


def test_level_places_convs_on_the_pyramid():
    assert level(ConvSpec(112, 112, 3, 8, 1), 224) == "L1"
    assert level(ConvSpec(41, 41, 3, 8, 1), 164) == "L2"
    assert level(ConvSpec(1, 1, 64, 16, 1), 224) == "1x1"


def test_read_lut_rejects_malformed_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("Conv-input:224x224x3: [unclosed\n")
    with pytest.raises(FgnasError, match="not valid YAML"):
        read_lut(bad)
    bad.write_text("Conv-input:224x224x3-output:112x112x32: {count: 3}\n")
    with pytest.raises(FgnasError, match="not a lookup-table entry"):
        read_lut(bad)
    with pytest.raises(FgnasError, match="cannot read"):
        read_lut(tmp_path / "absent.yaml")


def test_unknown_format_is_an_fgnas_error(tmp_path):
    with pytest.raises(FgnasError, match="unknown import format"):
        import_table("fbnet", tmp_path, "x")


MOBILENETV2_224 = [  # (H, cin, cout, expand, stride) per block, then stem and last conv
    (112, 32, 16, 1, 1), (112, 16, 24, 6, 2), (56, 24, 24, 6, 1), (56, 24, 32, 6, 2), (28, 32, 32, 6, 1),
    (28, 32, 64, 6, 2), (14, 64, 64, 6, 1), (14, 64, 96, 6, 1), (14, 96, 96, 6, 1), (14, 96, 160, 6, 2),
    (7, 160, 160, 6, 1), (7, 160, 320, 6, 1)]


def _mobilenetv2_convs() -> list[ConvSpec]:
    convs = [ConvSpec(224, 224, 3, 32, 3, 2, 1, "relu6"), ConvSpec(7, 7, 320, 1280, 1, 1, 1, "relu6")]
    for h, cin, cout, ratio, stride in MOBILENETV2_224:
        convs += decompose_mbconv(MBConv(h, h, cin, cout, ratio * cin, 3, stride, False, has_expand=ratio != 1))[0]
    return convs


@pytest.mark.shared_data
@needs_proxyless
def test_pixel1_import_covers_mobilenetv2_and_records_provenance(tmp_path):
    table = import_table("proxylessnas", PROXYLESS, "pixel1")
    out = table.save(tmp_path / "pixel1.json")
    loaded = LatencyTable.load(out)
    assert loaded.missing_conditions(_mobilenetv2_convs()) == []
    source = loaded.source
    assert source["kind"] == "imported" and source["format"] == "proxylessnas"
    assert source["sha256"] == sha256_file(PROXYLESS) and "MIT" in source["license"]
    assert source["entries"] == {"block": 69, "last_conv": 1, "logits": 1, "stem": 1}
    held = source["validation"]["held_out"]
    assert held["n"] == 69 and held["median"] < 0.03 and held["p90"] < 0.08
    assert len(source["validation"]["per_block"]) == 69
    transferred = {op for op, d in source["op_provenance"].items() if d["kind"] == "transferred"}
    assert set(loaded.ops) - transferred == {"ADD", "MEAN", "FULLY_CONNECTED"}
    stem = loaded.conditions[ConditionKey(224, 224, 3, 2, "normal", "relu6")]
    assert stem.predict_ms(ConvSpec(224, 224, 3, 32, 3, 2, 1, "relu6")) == pytest.approx(4.397, abs=0.002)
    assert all(m.a_ms_per_mflop > 0 and m.b_ms >= 0 for m in loaded.conditions.values())


@pytest.mark.shared_data
@needs_proxyless
def test_imported_table_prices_other_sizes_by_its_resolution_model_and_refuses_unknown_families():
    table = import_table("proxylessnas", PROXYLESS, "pixel1")
    level2_of_128 = ConvSpec(32, 32, 24, 144, 1, 1, 1, "relu6")  # issue 16: sizes 96..224 and their levels priced
    priced = table.predict(level2_of_128)
    assert priced.fallback.startswith("resolution model: a, b interpolated in log pixels between 28x28 and 56x56")
    k5_conv = ConvSpec(32, 32, 24, 144, 5, 1, 1, "relu6")  # no k5 normal conv at any size
    assert table.missing_conditions([k5_conv], allow_fallback=True) == [k5_conv.condition]
    with pytest.raises(FgnasError, match="no condition 32x32:k5"):
        table.predict(k5_conv)
    relu = table.predict(ConvSpec(56, 56, 24, 144, 1, 1, 1, "relu"))
    assert relu.fallback is not None and "fused clamps" in relu.fallback


@pytest.mark.shared_data
@needs_ofa
def test_note10_import_fits_all_resolutions_and_validates_each_held_out():
    table = import_table("ofa", OFA_DIR, "note10")
    source = table.source
    assert source["resolutions"] == list(range(160, 225, 4)) and len(source["files"]) == 17
    per_resolution = source["validation"]["per_resolution"]
    assert len(per_resolution) == 17 and all(r["n"] == 91 for r in per_resolution.values())
    assert max(r["median"] for r in per_resolution.values()) < 0.05
    assert {"HARD_SWISH", "MEAN", "MUL", "ADD", "FULLY_CONNECTED"} <= set(table.ops)
    assert ConditionKey(82, 82, 1, 1, "normal", "none") in table.conditions  # 164 input: first stage at 82x82


def test_proxylessnas_reader_rejects_an_ofa_file(tmp_path):
    ofa_like = tmp_path / "160_lookup_table.yaml"
    ofa_like.write_text("AvgPool2D-input:5x5x1152-output:1x1x1152:\n  count: 3\n  mean: 0.01\n  std: 0.001\n")
    with pytest.raises(FgnasError, match="try --format ofa"):
        import_table("proxylessnas", ofa_like, "x")


@pytest.mark.shared_data
@needs_proxyless
@pytest.mark.parametrize("name", ["pixel1", "note10"])
def test_committed_tables_load_and_match_a_fresh_import(name):
    committed = LatencyTable.load(ROOT / "device_tables" / f"{name}.json")
    fmt, src = ("proxylessnas", PROXYLESS) if name == "pixel1" else ("ofa", OFA_DIR)
    if not src.exists():
        pytest.skip(f"{src} is absent")
    # Ops the published table lacks were transferred from the host table of the day (source.op_transfer names its
    # content hash). host.json is re-profiled on each new machine; while it is not that table, the transferred ops
    # cannot be re-derived here and only the rest is compared.
    transfer = committed.source.get("op_transfer") or {}
    host = ROOT / "device_tables" / "host-amd-f26m2s1.json"
    same_host = host.is_file() and LatencyTable.load(host).content_hash[len("sha256:"):][:12] in \
        str(transfer.get("from", ""))
    fresh = import_table(fmt, src, name)
    assert committed.source["sha256"] == fresh.source["sha256"]
    # the fit's float arithmetic may differ in the last bits between CPUs (BLAS kernels): equal to 1e-9
    assert _same(committed.doc["conditions"], fresh.doc["conditions"])
    transferred = set() if same_host else set(transfer.get("ops", []))

    def own(ops: dict) -> dict:
        return {k: v for k, v in ops.items() if k not in transferred}

    assert _same(own(committed.doc["ops"]), own(fresh.doc["ops"]))


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-12)
    return a == b
