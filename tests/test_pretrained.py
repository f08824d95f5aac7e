"""--pretrained from published weights (issue 17): torchvision state dicts, built here in its key layout
(tests/torchvision_models.py), mapped onto the SearchNetwork; and every file that does not fit refused in one line."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from profiler.errors import FgnasError
from search.backbones import create_backbone
from search.cli import main as search_main
from search.pretrained import LAYOUTS, load_pretrained
from torchvision_models import VGG, MobileNetV2, ResNet18, randomize_batchnorm

TINY = ["--epochs-pretrain", "0", "--epochs-search", "0", "--epochs-finetune", "0", "--batch-size", "4",
        "--bn-calibration-images", "0", "--target", "100%flops"]


@pytest.fixture(scope="module")
def mobilenet_v2() -> dict:
    torch.manual_seed(0)
    return randomize_batchnorm(MobileNetV2()).state_dict()


@pytest.fixture(scope="module")
def resnet18() -> dict:
    torch.manual_seed(1)
    return randomize_batchnorm(ResNet18()).state_dict()


def _evaluated(net):
    net.eval()
    net.set_search_mode("pretrain")
    return net


def _one_line_exit_2(capsys, code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("fgnas-search: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_torchvision_mobilenet_v2_makes_the_imagenet_backbone_compute_its_logits(mobilenet_v2):
    reference = MobileNetV2().eval()
    reference.load_state_dict(mobilenet_v2)
    net = create_backbone("mobilenetv2", num_classes=1000, input_size=64)
    note = load_pretrained(net, mobilenet_v2, "m.pth")
    assert note == f"{len(mobilenet_v2)} tensors from torchvision's mobilenet_v2"  # every key, the classifier too
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = reference(x), _evaluated(net)(x)
    assert torch.allclose(got, expected, atol=1e-4 * expected.abs().max().item(), rtol=0)


def test_torchvision_mobilenet_v2_fills_the_cifar_variant_but_not_a_classifier_of_other_classes(mobilenet_v2):
    net = create_backbone("mobilenetv2_cifar")
    head = net.head.fc.weight.clone()
    note = load_pretrained(net, mobilenet_v2, "m.pth")
    assert note == (f"{len(mobilenet_v2) - 2} tensors from torchvision's mobilenet_v2; classifier not mapped (1000 "
                    f"classes in the file, 10 here)")
    assert torch.equal(net.head.fc.weight, head)
    assert torch.equal(net.layers["block7_0_dw"].ops[0].conv.weight, mobilenet_v2["features.17.conv.1.0.weight"])
    assert torch.equal(net.layers["block1_0_project"].ops[0].bn.running_var,
                       mobilenet_v2["features.1.conv.2.running_var"])


@pytest.mark.parametrize("name,pooled", [("vgg16", None), ("vgg19", -1)])
def test_torchvision_vgg_bn_features_fold_their_conv_bias_and_compute_the_same_features(name, pooled):
    """torchvision pools after all five stages; network slimming's VGG-19 not after the last, whose 2x2 map the head
    averages: the reference drops that pool."""
    torch.manual_seed(2)
    reference = randomize_batchnorm(VGG(f"{name}_bn", classifier_width=8)).eval()
    weights = reference.state_dict()
    net = create_backbone(name)
    note = load_pretrained(net, weights, "v.pth")
    convs = sum(isinstance(m, nn.Conv2d) for m in reference.features)
    # conv weight + five BN tensors per layer; the conv biases folded into the BN means; no classifier
    assert note == (f"{6 * convs} tensors from torchvision's {name}_bn; classifier not mapped (torchvision's "
                    f"classifier is three Linear layers on the 7x7x512 map, the CIFAR VGG's one Linear on the pooled "
                    f"512 channels)")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = reference.features[:pooled](x).mean(dim=(2, 3))
        assert torch.allclose(_evaluated(net)(x), net.head.fc(features), atol=1e-4, rtol=1e-4)


def test_torchvision_resnet18_fills_all_but_the_7x7_stem_which_keeps_its_initialisation(resnet18):
    reference = ResNet18().eval()
    reference.load_state_dict(resnet18)
    net = create_backbone("resnet18", num_classes=1000)
    stem = net.layers["stem"].ops[0].conv.weight.clone()
    note = load_pretrained(net, resnet18, "r.pth")
    assert note == (f"{len(resnet18) - 6} tensors from torchvision's resnet18; conv1, bn1 not mapped (torchvision's "
                    f"7x7 stride-2 stem cannot be the CIFAR ResNet-18's 3x3 stem, which keeps its initialisation)")
    assert torch.equal(net.layers["stem"].ops[0].conv.weight, stem)
    # everything after the stem computes torchvision's function
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        after_stem = _evaluated(net).layers["stem"](x)
        features = reference.layer4(reference.layer3(reference.layer2(reference.layer1(after_stem))))
        expected = reference.fc(features.mean(dim=(2, 3)))
        assert torch.allclose(net(x), expected, atol=1e-4 * expected.abs().max().item(), rtol=0)


def test_published_files_without_num_batches_tracked_load(resnet18):
    older = {k: v for k, v in resnet18.items() if not k.endswith("num_batches_tracked")}
    note = load_pretrained(create_backbone("resnet18", num_classes=1000), older, "r.pth")
    assert note.startswith(f"{len(older) - 5} tensors")  # all but the stem's conv and BN


def test_every_backbone_with_a_published_layout_is_registered_once_per_layout():
    assert sorted(LAYOUTS) == [("mobilenetv2", "torchvision"), ("mobilenetv2_cifar", "torchvision"),
                               ("resnet18", "torchvision"), ("vgg16", "torchvision"), ("vgg19", "torchvision")]


@pytest.mark.parametrize("backbone,kwargs,edit,message", [
    ("vgg19", {}, None, "does not fit vgg19 read as torchvision's vgg19_bn: it lacks features.0.bias and 95 more, "
                        "and has bn1.bias and 121 more that it does not use"),
    ("resnet18", {}, lambda w: w.pop("layer4.1.bn2.running_var"), "it lacks layer4.1.bn2.running_var$"),
    ("resnet18", {}, lambda w: w.update(extra=torch.zeros(1)), "it has extra that it does not use$"),
    ("resnet18", {"width": 0.5}, None, r"layer1.0.conv1.weight is \(64, 64, 3, 3\) where resnet18's "
                                       r"layers.layer1_0_conv1.ops.0.conv.weight is \(32, 32, 3, 3\)"),
    ("resnet18", {"reduce_skip": True}, None, "layers.layer1_1_reduce.ops.0.bn.bias and 23 more of resnet18 has no "
                                              "counterpart in torchvision's resnet18"),
    ("resnet18", {"search_space": "kernels"}, None, "fill one operation per layer, and stem has 3: use --search-space "
                                                    "channels"),
    ("resnet20", {}, None, "no published layout maps onto resnet20 "
                           r"\(one does for mobilenetv2, mobilenetv2_cifar, resnet18, vgg16, vgg19\)"),
    ("resnet18", {}, lambda w: w.update(step=3), "is not a state dict: step is not a named tensor"),
])
def test_a_file_that_does_not_fit_is_refused_in_one_line(resnet18, backbone, kwargs, edit, message):
    weights = dict(resnet18)
    if edit is not None:
        edit(weights)
    with pytest.raises(FgnasError, match=message):
        load_pretrained(create_backbone(backbone, **kwargs), weights, "r.pth")


def test_a_checkpoint_of_this_tool_loads_whole_and_its_classifier_only_for_the_same_classes():
    source = create_backbone("resnet20", search_space="kernels")
    weights = {k: v + 1 if v.is_floating_point() else v for k, v in source.state_dict().items()}
    net = create_backbone("resnet20", search_space="kernels")
    assert load_pretrained(net, weights, "m.pt") == f"{len(weights) - len(net.layers)} tensors from a resnet20 " \
                                                    f"checkpoint of this tool"
    assert torch.equal(net.head.fc.bias, weights["head.fc.bias"])
    assert not torch.equal(net.layers["stem"].psi, weights["layers.stem.psi"])  # the search starts from its gates
    other = create_backbone("resnet20", search_space="kernels", num_classes=4)
    assert load_pretrained(other, weights, "m.pt").endswith("classifier not mapped (10 classes in the file, 4 here)")
    with pytest.raises(FgnasError, match="does not fit vgg16 read as a vgg16 checkpoint of this tool: it lacks "
                                         "layers.conv1_1.ops.0.bn.bias and 194 more, and has layers.layer1_0_conv1"):
        load_pretrained(create_backbone("vgg16", search_space="kernels"), weights, "m.pt")


# ---- through the CLI -------------------------------------------------------------------------------------------

def test_a_state_dict_of_another_architecture_exits_2_in_one_line(tmp_path, capsys, mobilenet_v2):
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(mobilenet_v2, path)
    code = search_main(["--backbone", "resnet18", "--pretrained", str(path), "--out", str(tmp_path / "r")] + TINY)
    err = _one_line_exit_2(capsys, code)
    assert f"--pretrained {path} does not fit resnet18 read as torchvision's resnet18: it lacks" in err


def test_a_truncated_or_safetensors_file_exits_2_in_one_line(tmp_path, capsys, resnet18):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18, path)
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    code = search_main(["--backbone", "resnet18", "--pretrained", str(path), "--out", str(tmp_path / "r")] + TINY)
    assert f"--pretrained {path} is not a torch checkpoint" in _one_line_exit_2(capsys, code)
    safetensors = tmp_path / "resnet18.safetensors"
    safetensors.write_bytes(b"{}")
    code = search_main(["--backbone", "resnet18", "--pretrained", str(safetensors), "--out", str(tmp_path / "s")]
                       + TINY)
    assert ".safetensors files are not read" in _one_line_exit_2(capsys, code)


@pytest.mark.slow
def test_a_search_starts_from_torchvision_weights_and_says_what_it_mapped(tmp_path, capsys, monkeypatch, mobilenet_v2):
    from test_pixel1_search import _digits_image_folder

    monkeypatch.setenv("FGNAS_CACHE", str(tmp_path / "cache"))
    data = _digits_image_folder(tmp_path / "digits", per_class=2)
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(mobilenet_v2, path)
    code = search_main(["--backbone", "mobilenetv2", "--data", f"imagefolder:{data}", "--pretrained", str(path),
                        "--out", str(tmp_path / "r")] + TINY + ["--epochs-search", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert (f"weights from {path} ({len(mobilenet_v2) - 2} tensors from torchvision's mobilenet_v2; classifier not "
            f"mapped (1000 classes in the file, 3 here)): skipping pretraining") in out


def test_a_run_of_no_epochs_from_pretrained_weights_finishes_without_plots_of_a_history(tmp_path, capsys):
    net = create_backbone("digits")
    path = tmp_path / "digits.pt"
    torch.save(net.state_dict(), path)
    code = search_main(["--backbone", "digits", "--data", "digits", "--pretrained", str(path),
                        "--out", str(tmp_path / "r"), *TINY])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert (tmp_path / "r" / "arch.json").exists() and not (tmp_path / "r" / "plots" / "resource.png").exists()
    assert (tmp_path / "r" / "plots" / "channels.png").exists()
