"""--round-channels: kept channels snap down to the table's tile where that lowers predicted latency."""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import synthetic_table as syn
from export.prune import prune
from export.rounding import round_run, rounded_count
from export.run import SearchedRun
from export.sampling import random_searched
from export.torch_model import PrunedNetwork
from profiler.latency.table import LatencyTable
from profiler.ops import OpProbe
from profiler.spec import ConvSpec
from search.arch import Arch


def _table(net, tmp_path) -> Path:
    specs = {s.with_channels(s.cin, s.cout) for s in net.conv_specs()}
    recs = [r for spec in specs for r in syn.conv_records_like(spec)]
    for op in ("ADD", "MEAN", "FULLY_CONNECTED"):
        for c in (8, 32, 128, 512):
            probe = OpProbe.for_feature_map(op, 8, 8, c)
            recs.append(syn.probe_record(probe, syn.op_true_ms(probe.units[1])))
    raw = syn.write_raw_log(tmp_path / "t.raw.jsonl", recs)
    return LatencyTable.build(recs, syn.DEVICE, syn.SETTINGS, raw).save(tmp_path / "t.json")


def test_rounded_count_drops_to_the_tile_only_when_that_is_cheaper(tmp_path):
    net = random_searched("digits", 0, search_space="kernels")
    table = LatencyTable.load(_table(net, tmp_path))
    spec = ConvSpec(16, 16, 32, 45, 3, 1, 1, "relu")
    assert table.resolve(spec.condition)[0].cout_tile == syn.TILE
    assert rounded_count(table, spec) == 32
    assert rounded_count(table, spec.with_channels(32, 64)) == 64  # already a multiple
    assert rounded_count(table, spec.with_channels(32, 20)) == 20  # rounding down would leave nothing
    doc = table.doc
    doc["conditions"] = [{**c, "cout_small_tile": 16} if c["key"] == str(spec.condition) else c
                         for c in doc["conditions"]]
    laddered = LatencyTable(doc)
    assert rounded_count(laddered, spec.with_channels(32, 20)) == 16  # 20 costs 32 channels, 16 costs 16
    assert rounded_count(laddered, spec) == 32


def test_round_run_lowers_predicted_latency_and_keeps_the_export_exact(tmp_path):
    net = random_searched("digits", 2, max_ops=1, keep=(0.5, 0.9), search_space="kernels")
    run = SearchedRun(tmp_path, Arch.from_dict(net.to_arch()), net.state_dict(), net)
    x, labels = torch.randn(8, 1, 32, 32), np.zeros(8, dtype=np.int64)
    rounded, rounded_net, info = round_run(run, _table(net, tmp_path), x, labels)
    assert info["changed"] and info["after"]["latency_ms"] < info["before"]["latency_ms"]
    for name, ops in info["changed"].items():
        layer = rounded.layer(name)
        for i, (before, after) in ops.items():
            assert after % syn.TILE == 0 and after < before
            assert len(layer.ops[int(i)].keep) == after
    plan = prune(rounded, rounded_net.state_dict())
    with torch.no_grad():
        assert torch.allclose(rounded_net(x), PrunedNetwork(plan)(x), atol=1e-5)
