import json

import pytest
import torch

from profiler.errors import FgnasError
from search.arch import ARCH_SCHEMA_VERSION, read_arch, validate_arch, write_arch
from search.backbones import create_backbone


def _pruned_digits():
    torch.manual_seed(3)
    net = create_backbone("digits", search_space="kernels")
    with torch.no_grad():
        for p in net.gate_parameters():
            p.copy_(torch.randn_like(p))
    return net


def test_arch_round_trips_through_the_file(tmp_path):
    net = _pruned_digits()
    extra = {"latency_table": {"path": "device_tables/host.json", "table_version": 2, "content_hash": "sha256:ab"},
             "target": {"resource": "latency", "value": 1.5}, "predicted": {"latency_ms": 1.2}}
    arch = net.to_arch(extra)
    path = write_arch(tmp_path / "run" / "arch.json", arch)
    assert read_arch(path) == json.loads(json.dumps(arch))
    assert arch["schema_version"] == ARCH_SCHEMA_VERSION
    assert arch["predicted"]["latency_ms"] == 1.2 and arch["predicted"]["params"] > 0
    assert arch["backbone"] == {"name": "digits", "args": net.backbone_args}
    assert arch["input"] == {"channels": 1, "height": 32, "width": 32}
    assert [p.name for p in tmp_path.joinpath("run").iterdir()] == ["arch.json"]  # no temp file left


def test_arch_records_each_operations_kept_channels_and_the_skip_mapping():
    net = _pruned_digits()
    arch = net.to_arch()
    summary = {row["name"]: row for row in net.layer_summary()}
    for layer in arch["layers"]:
        kept = set().union(*(op["keep"] for op in layer["ops"]))
        skip = set()
        if layer["skip"]:
            skip = set(next(x for x in arch["layers"] if x["name"] == layer["skip"])["active_out"])
        assert set(layer["active_out"]) == kept | skip
        assert len(layer["active_out"]) == summary[layer["name"]]["active_out"]
        for op in layer["ops"]:
            if op["conv_type"] == "depthwise":
                assert set(op["keep"]) <= set(layer["active_in"])
            if op["keep"]:
                assert op["spec"]["cout"] == len(op["keep"])
    conv3 = next(x for x in arch["layers"] if x["name"] == "conv3")
    assert conv3["skip"] == "conv2" and conv3["scale"] == pytest.approx(1 / 3)


def test_a_newer_schema_version_is_refused(tmp_path):
    arch = _pruned_digits().to_arch()
    arch["schema_version"] = ARCH_SCHEMA_VERSION + 1
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(arch))
    with pytest.raises(FgnasError, match="newer"):
        read_arch(path)


def test_malformed_or_missing_arch_files_are_fgnas_errors(tmp_path):
    with pytest.raises(FgnasError, match="no architecture file"):
        read_arch(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FgnasError, match="not JSON"):
        read_arch(tmp_path / "bad.json")
    arch = _pruned_digits().to_arch()
    del arch["layers"][0]["ops"][0]["keep"]
    with pytest.raises(FgnasError, match="keep"):
        validate_arch(arch)
    arch = _pruned_digits().to_arch()
    arch["layers"][1]["input"] = "conv6"
    with pytest.raises(FgnasError, match="does not precede"):
        write_arch(tmp_path / "a.json", arch)
    assert not (tmp_path / "a.json").exists()
