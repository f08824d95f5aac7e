import json
import re

import pytest
import torch

from profiler.errors import FgnasError
from profiler.spec import ConvSpec
from search.arch import ARCH_SCHEMA_VERSION, CONV_KINDS, Arch, load_arch, read_arch, validate_arch, write_arch
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


def test_the_typed_architecture_gives_the_files_dict_back_for_every_backbone():
    from export.sampling import random_searched

    for backbone in ("digits", "resnet20", "mobilenetv2_cifar"):
        arch = random_searched(backbone, 1).to_arch({"search": {"data": "digits"}, "latency_table": {
            "path": "t.json", "table_version": 2, "content_hash": "sha256:ab", "device": "host"}})
        typed = Arch.from_dict(arch)
        assert typed.to_dict() == arch
        assert typed.data == "digits" and typed.latency_table.content_hash == "sha256:ab"
        layer = typed.layers[-1]
        assert layer.active_out == tuple(arch["layers"][-1]["active_out"])
        assert all(isinstance(op.spec, ConvSpec) for op in layer.ops if op.keep)


def test_load_arch_reads_a_file_and_an_old_file_without_the_optional_blocks(tmp_path):
    arch = _pruned_digits().to_arch()
    path = write_arch(tmp_path / "arch.json", arch)
    assert load_arch(path).to_dict() == json.loads(path.read_text())
    for key in ("created", "latency_table", "target"):
        del arch[key]
    for key in ("pool", "dropout"):
        del arch["head"][key]
    old = Arch.from_dict(arch)
    assert old.latency_table is None and old.search is None and old.data is None
    assert old.head.to_dict() == arch["head"]


def test_layer_sizes_follow_same_padding_and_the_pool():
    arch = Arch.from_dict(create_backbone("vgg16", width=0.0625).to_arch())
    pooled = next(layer for layer in arch.layers if layer.pool)
    h, w = pooled.in_hw
    assert pooled.conv_hw == (-(-h // pooled.stride), -(-w // pooled.stride))
    assert pooled.out_hw == (pooled.conv_hw[0] // 2, pooled.conv_hw[1] // 2)


def test_every_conv_type_the_search_builds_has_a_kind_and_an_export_pruner():
    from export.prune import OP_PRUNERS
    from search.operations import CONV_LAYERS

    assert set(CONV_KINDS) == set(CONV_LAYERS) == set(OP_PRUNERS)
    assert CONV_KINDS["depthwise"].channelwise and not CONV_KINDS["normal"].channelwise


@pytest.mark.parametrize("path,value,message", [
    (["layers", 0, "ops", 0, "conv_type"], "grouped", "layer conv1 op 0 has conv type 'grouped'"),
    (["layers", 0, "ops", 0, "spec", "stride"], 3, "layer conv1 has an operation spec no conv can have"),
    (["layers", 0, "ops", 0, "spec", "h"], "32", "layers/0/ops/0/spec/h: '32' is not of type 'integer'"),
    (["layers", 0, "pool"], {"kind": "max"}, "layers/0/pool: 'kernel' is a required property"),
])
def test_a_forged_operation_or_pool_is_refused_where_it_is_read(path, value, message):
    arch = _pruned_digits().to_arch()
    arch["layers"][0]["ops"][0]["keep"] = [0]
    arch["layers"][0]["ops"][0]["spec"] = {"h": 32, "w": 32, "cin": 1, "cout": 1, "kernel": 3, "stride": 1,
                                           "groups": 1, "activation": "relu"}
    node = arch
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(FgnasError, match=re.escape(message)):
        Arch.from_dict(arch)
