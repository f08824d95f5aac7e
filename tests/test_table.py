import json

import pytest
import torch

import synthetic_table as syn
from profiler.errors import FgnasError
from profiler.latency.fit import tiled_mflops
from profiler.latency.table import (
    SCHEMA_VERSION,
    LatencyTable,
    content_hash,
    lowest_medians,
    sha256_file,
)
from profiler.spec import ConditionKey, ConvSpec


@pytest.fixture()
def built(tmp_path):
    recs = syn.records()
    raw = syn.write_raw_log(tmp_path / "synthetic.raw.jsonl", recs)
    return LatencyTable.build(recs, syn.DEVICE, syn.SETTINGS, raw)


@pytest.fixture()
def saved(built, tmp_path):
    return built.save(tmp_path / "synthetic.json")


def test_build_fits_every_condition_and_op(built):
    keys = {str(k) for k in built.conditions}
    assert keys == {"16x16:k3:s1:normal:relu", "16x16:k3:s1:depthwise:relu", "8x8:k3:s1:normal:relu",
                    "8x8:k3:s1:depthwise:relu"}
    model = built.condition(ConditionKey(16, 16, 3, 1, "normal", "relu"))
    assert (model.model, model.cout_tile) == ("tile", syn.TILE)
    assert model.a_ms_per_mflop == pytest.approx(syn.A) and model.b_ms == pytest.approx(syn.B, abs=1e-9)
    assert built.ops["ADD"].unit == "output_elements"


def test_each_probe_keeps_the_lowest_median_of_its_passes():
    def record(kind, probe_id, ms):
        return {"kind": kind, "id": probe_id, "m": {"median_ms": ms}}

    records = [record("conv", "a", 3.0), record("conv", "b", 1.0), record("op", "a", 0.5), record("conv", "a", 2.0),
               record("conv", "a", 2.5)]
    assert {k: ms for k, (_, ms) in lowest_medians(records, "conv").items()} == {"a": 2.0, "b": 1.0}
    assert lowest_medians(records, "conv")["a"][0] is records[3]
    assert {k: ms for k, (_, ms) in lowest_medians(records, "op").items()} == {"a": 0.5}


def test_predict_ms_matches_hand_computed_tiled_flops(built):
    spec = ConvSpec(16, 16, 50, 33, 3, activation="relu")
    # cout 33 -> 64 at tile 32: 2 * 16*16 * 64 * 50 * 9 FLOPs = 14.7456 MFLOPs
    assert built.predict_ms(spec) == pytest.approx(0.02 * 14.7456 + 0.05)
    prediction = built.predict(spec)
    assert prediction.fallback is None and prediction.key == spec.condition == prediction.used_key


def test_affine_prediction_is_the_papers_fit_on_exact_flops(built):
    spec = ConvSpec(16, 16, 50, 33, 3, activation="relu")
    affine = built.condition(spec.condition).affine
    assert built.predict_ms(spec, fit="affine") == pytest.approx(affine.a * tiled_mflops(spec) + affine.b)


def test_save_load_round_trip(saved, built, tmp_path):
    table = LatencyTable.load(saved)
    doc = json.loads(saved.read_text())
    assert doc["raw_log"] == {"path": "synthetic.raw.jsonl", "sha256": sha256_file(tmp_path / "synthetic.raw.jsonl"),
                              "records": len(syn.records())}
    assert doc["content_hash"] == content_hash(doc) == table.content_hash
    assert doc["source"] == {"kind": "measured"} and doc["device"] == syn.DEVICE
    assert table.conditions == built.conditions
    assert table.raw_log_file == (tmp_path / "synthetic.raw.jsonl").resolve()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_raw_log_path_is_relative_to_the_table(built, tmp_path):
    path = built.save(tmp_path / "tables" / "t.json")
    assert json.loads(path.read_text())["raw_log"]["path"] == "../synthetic.raw.jsonl"
    assert LatencyTable.load(path).raw_log_file == (tmp_path / "synthetic.raw.jsonl").resolve()


def test_table_version_increments_for_the_same_device_only(built, tmp_path):
    path = tmp_path / "t.json"
    assert json.loads(built.save(path).read_text())["table_version"] == 1
    assert json.loads(built.save(path).read_text())["table_version"] == 2
    recs = syn.records()
    other = LatencyTable.build(recs, {"name": "phone"}, {}, tmp_path / "synthetic.raw.jsonl")
    assert LatencyTable.load(other.save(path)).table_version == 1


def test_imported_source_is_kept(tmp_path):
    recs = syn.records()
    raw = syn.write_raw_log(tmp_path / "r.jsonl", recs)
    source = {"kind": "imported", "file": "x.csv", "sha256": "0" * 64}
    path = LatencyTable.build(recs, syn.DEVICE, {}, raw, source=source).save(tmp_path / "t.json")
    assert LatencyTable.load(path).source == source


def _rewrite(path, mutate, rehash=True):
    doc = json.loads(path.read_text())
    mutate(doc)
    if rehash:
        doc["content_hash"] = content_hash(doc)
    path.write_text(json.dumps(doc))


def test_newer_schema_is_refused_with_upgrade_advice(saved):
    _rewrite(saved, lambda d: d.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(FgnasError, match=f"schema_version {SCHEMA_VERSION + 1}, newer.*upgrade fgnas"):
        LatencyTable.load(saved)


def test_unknown_schema_is_refused(saved):
    _rewrite(saved, lambda d: d.update(schema_version="one"))
    with pytest.raises(FgnasError, match="unknown schema_version"):
        LatencyTable.load(saved)


def test_schema_violation_names_the_place(saved):
    _rewrite(saved, lambda d: d["conditions"][0].pop("b_ms"))
    with pytest.raises(FgnasError, match="conditions/0.*b_ms"):
        LatencyTable.load(saved)


def test_hand_edited_table_fails_the_content_hash(saved):
    _rewrite(saved, lambda d: d["conditions"][0].update(b_ms=9.0), rehash=False)
    with pytest.raises(FgnasError, match="content_hash"):
        LatencyTable.load(saved)


def test_malformed_or_missing_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(FgnasError, match="not valid JSON"):
        LatencyTable.load(bad)
    with pytest.raises(FgnasError, match="no latency table"):
        LatencyTable.load(tmp_path / "absent.json")


def test_build_without_measurements_or_raw_log_is_refused(tmp_path):
    with pytest.raises(FgnasError, match="raw log"):
        LatencyTable.build(syn.records(), syn.DEVICE, {}, tmp_path / "absent.jsonl")
    raw = syn.write_raw_log(tmp_path / "empty.jsonl", [])
    with pytest.raises(FgnasError, match="no conv or op measurements"):
        LatencyTable.build([], syn.DEVICE, {}, raw)


def test_zero_latency_in_the_log_is_a_one_line_error_not_a_traceback(tmp_path):
    recs = syn.records()
    recs[0]["m"]["median_ms"] = 0.0
    raw = syn.write_raw_log(tmp_path / "zero.raw.jsonl", recs)
    with pytest.raises(FgnasError, match="cannot fit .*more --runs"):
        LatencyTable.build(recs, syn.DEVICE, syn.SETTINGS, raw)


def test_clamp_activations_are_priced_from_each_other(built):
    spec = ConvSpec(16, 16, 50, 33, 3, activation="relu6")
    prediction = built.predict(spec)
    assert prediction.ms == pytest.approx(built.predict_ms(ConvSpec(16, 16, 50, 33, 3, activation="relu")))
    assert "relu6 priced from relu" in prediction.fallback


def test_nearest_resolution_fallback_uses_own_flops(built):
    spec = ConvSpec(14, 14, 50, 33, 3, activation="relu")  # between 16x16 and 8x8; 16x16 is nearer
    prediction = built.predict(spec)
    assert prediction.used_key == ConditionKey(16, 16, 3, 1, "normal", "relu")
    assert "no 14x14 condition" in prediction.fallback
    assert prediction.ms == pytest.approx(0.02 * 2 * 14 * 14 * 64 * 50 * 9 / 1e6 + 0.05)


@pytest.mark.parametrize("spec", [ConvSpec(16, 16, 8, 8, 5, activation="relu"),  # no k5 at all
                                  ConvSpec(64, 64, 8, 8, 3, activation="relu"),  # 16x the pixels of 16x16
                                  ConvSpec(16, 16, 8, 8, 3, activation="tanh")])  # tanh is not a clamp
def test_unpriceable_condition_is_an_error_not_zero(built, spec):
    with pytest.raises(FgnasError, match=f"no condition {spec.condition}.*profile it"):
        built.predict_ms(spec)
    with pytest.raises(FgnasError):
        built.latency_torch(spec, 8.0, 8.0)


def test_missing_conditions_lists_each_absent_key_once(built):
    specs = [ConvSpec(16, 16, 8, 8, 3, activation="relu"), ConvSpec(16, 16, 8, 8, 3, activation="relu6"),
             ConvSpec(16, 16, 9, 9, 3, activation="relu6"), ConvSpec(16, 16, 8, 8, 5, activation="relu")]
    relu6, k5 = specs[1].condition, specs[3].condition
    assert built.missing_conditions(specs) == [relu6, k5]
    assert built.missing_conditions(specs, allow_fallback=True) == [k5]


def test_op_prediction_and_missing_op(built):
    assert built.predict_op_ms("ADD", 2000) == pytest.approx(syn.OP_A * 2000 + syn.OP_B)
    with pytest.raises(FgnasError, match="no model for op SOFTMAX"):
        built.predict_op_ms("SOFTMAX", 10)


def test_latency_torch_forward_equals_predict_ms(built):
    spec = ConvSpec(16, 16, 50, 33, 3, activation="relu")
    ms = built.latency_torch(spec, torch.tensor(50.0), torch.tensor(33.0))
    assert float(ms) == pytest.approx(built.predict_ms(spec), rel=1e-6)


def test_latency_torch_gradient_is_straight_through_a_times_dflops(built):
    spec = ConvSpec(16, 16, 50, 33, 3, activation="relu")
    cin = torch.tensor(49.5, requires_grad=True)
    cout = torch.tensor(33.3, requires_grad=True)
    built.latency_torch(spec, cin, cout).backward()
    # forward rounds cout up to 64; gradient ignores the rounding: d/dcout = a * 2*16*16*9*cin / 1e6
    assert float(cout.grad) == pytest.approx(0.02 * 2 * 16 * 16 * 9 * 49.5 / 1e6, rel=1e-5)
    assert float(cin.grad) == pytest.approx(0.02 * 2 * 16 * 16 * 9 * 64 / 1e6, rel=1e-5)


def test_latency_torch_depthwise_uses_cout_as_channels(built):
    spec = ConvSpec.depthwise(8, 8, 40, 3, activation="relu")
    cout = torch.tensor(40.0, requires_grad=True)
    ms = built.latency_torch(spec, torch.tensor(40.0), cout)
    assert float(ms.detach()) == pytest.approx(built.predict_ms(spec), rel=1e-6)
    ms.backward()
    assert float(cout.grad) == pytest.approx(0.02 * 2 * 8 * 8 * 9 / 1e6, rel=1e-5)


def test_a_table_without_the_invoke_probe_subtracts_nothing(built):
    assert built.doc["invoke_overhead_ms"] is None and built.invoke_overhead_ms == 0.0


def test_latency_torch_follows_a_misaligned_slope_and_a_weight_knee(built):
    spec = ConvSpec(16, 16, 50, 33, 3, activation="relu")  # 59 kB of weights: 2.5 doublings beyond a 0.01 MB knee
    doc = built.doc
    doc["conditions"] = [{**c, "align": 8, "misaligned_a_ms_per_mflop": 0.03, "weight_knee_mb": 0.01,
                          "weight_knee_slope": 0.5, "weight_knee_step": 0.2} if c["key"] == str(spec.condition) else c
                         for c in doc["conditions"]]
    table = LatencyTable(doc)
    assert table.predict_ms(spec) > built.predict_ms(spec)
    for cout in (4.0, 32.0, 33.0):  # 4: 7.2 kB of weights, below the knee
        varied = spec.with_channels(50, int(cout))
        soft = torch.tensor(cout, requires_grad=True)
        ms = table.latency_torch(varied, torch.tensor(50.0), soft)
        assert float(ms.detach()) == pytest.approx(table.predict_ms(varied), rel=1e-5)
        ms.backward()
        assert soft.grad > 0


def _calibration_nets(n: int = 10):
    """Networks of the synthetic table's 16x16 convs and ADDs, each slower than its ops' sum by 0.03 ms per MB of
    conv weights and 0.04 ms per MB of an op's activations beyond 0.5 MB."""
    import random

    from profiler.model_ops import ConvOp, OtherOp, whole_model_ms

    rng = random.Random(3)
    nets = []
    for _ in range(n):
        ops = [ConvOp(j, ("CONV_2D",), ConvSpec(16, 16, rng.randint(16, 700), rng.randint(16, 700), 3,
                                                 activation="relu")) for j in range(3)]
        elements = rng.randint(1000, 400000)
        ops.append(OtherOp(3, "ADD", ((1, elements), (1, elements)), ((1, elements),)))
        ops_ms = whole_model_ms([syn.true_ms(o.spec) for o in ops[:3]] + [syn.op_true_ms(elements)], 0.0)
        extra = sum(0.03 * o.weights_mb + 0.04 * max(0.0, o.activation_mb - 0.5) for o in ops)
        nets.append((ops, ops_ms + extra))
    return nets


def test_build_fits_what_ops_cost_more_inside_calibration_networks(tmp_path):
    nets = _calibration_nets()
    recs = syn.records() + [syn.net_record(f"net{i}", ops, ms) for i, (ops, ms) in enumerate(nets)]
    raw = syn.write_raw_log(tmp_path / "synthetic.raw.jsonl", recs)
    table = LatencyTable.load(LatencyTable.build(recs, syn.DEVICE, syn.SETTINGS, raw).save(tmp_path / "t.json"))
    model = table.network
    assert model.activation_threshold_mb == 0.5 and model.n == len(nets)
    assert model.weights_ms_per_mb == pytest.approx(0.03, rel=1e-3)
    assert model.activation_ms_per_mb == pytest.approx(0.04, rel=1e-3)
    ops, ms = nets[0]
    expected = sum(0.03 * o.weights_mb + 0.04 * max(0.0, o.activation_mb - 0.5) for o in ops)
    assert table.network_ms(ops) == pytest.approx(expected, rel=1e-3)


def test_a_table_without_calibration_networks_adds_nothing_inside_a_network(built):
    ops, _ = _calibration_nets(1)[0]
    assert built.network is None and built.doc["network"] is None and built.network_ms(ops) == 0.0


def test_a_condition_with_a_single_probe_is_left_to_the_fallbacks_not_fitted_through_the_origin(tmp_path):
    lone = ConvSpec(56, 56, 1, 1, 3, 1, 1, "prelu")  # a one-channel depthwise probe reads as this normal conv
    recs = syn.records() + [syn.conv_record(lone, 0.05)]
    table = LatencyTable.build(recs, syn.DEVICE, syn.SETTINGS, syn.write_raw_log(tmp_path / "t.raw.jsonl", recs))
    keys = {c["key"] for c in table.doc["conditions"]}
    assert str(lone.condition) == "56x56:k3:s1:normal:prelu" and str(lone.condition) not in keys
    assert len(keys) == len({str(ConvSpec.from_dict(r["spec"]).condition) for r in syn.records()
                             if r["kind"] == "conv"})
