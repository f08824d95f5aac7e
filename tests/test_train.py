import json
import math

import pytest
import torch

from profiler.errors import FgnasError
from profiler.spec import ConditionKey
from search.arch import read_arch
from search.backbones import create_backbone
from search.resources import create_resource
from search.rundir import RunDir, operation_types
from search.train import (
    SearchConfig,
    SearchInterrupted,
    cosine_lr,
    fill_to_target,
    missing_conditions_message,
    prune_to_target,
    run_search,
)


def test_cosine_lr_hand_values():
    assert cosine_lr(0.1, 0, 100) == pytest.approx(0.1)
    assert cosine_lr(0.1, 50, 100) == pytest.approx(0.05)
    assert cosine_lr(0.1, 100, 100) == pytest.approx(0.0)
    assert cosine_lr(0.1, 25, 100, floor=0.02) == pytest.approx(0.02 + 0.08 * 0.5 * (1 + math.cos(math.pi / 4)))


def _digits_with_margins():
    net = create_backbone("digits", search_space="channels", num_classes=10, input_size=32, in_channels=1)
    with torch.no_grad():
        for i, psi in enumerate(net.gate_parameters()):
            psi[..., 1] = 0.0
            psi[..., 0] = torch.linspace(0.01, 1.0, psi.shape[1]) + i  # later layers: surer
    return net


def test_prune_to_target_switches_off_the_least_sure_gates_as_few_as_needed():
    net = _digits_with_margins()
    flops = create_resource("flops")
    full = net.full_resource(flops)
    target = 0.9 * full
    reached = prune_to_target(net, flops, target)
    assert reached <= target and reached == net.hard_resource(flops)
    conv1 = next(net.gate_parameters())
    on = (conv1[..., 0] > conv1[..., 1])[0]
    # conv1's first gates have the smallest margins of the network: they go first, in order.
    off = int((~on).sum())
    assert off > 0 and not on[:off].any() and on[off:].all()
    # One gate fewer would miss the target (bisection found the fewest).
    net2 = _digits_with_margins()
    with torch.no_grad():
        next(net2.gate_parameters())[0, :off - 1, 0] = -1.0
    assert net2.hard_resource(flops) > target


def test_fill_to_target_turns_back_on_what_fits():
    net = _digits_with_margins()
    flops = create_resource("flops")
    with torch.no_grad():
        for psi in net.gate_parameters():
            psi[..., 0] -= 0.5  # channels whose margin was under 0.5 are now off
    before = net.hard_resource(flops)
    target = before + 0.5 * (net.full_resource(flops) - before)
    after = fill_to_target(net, flops, target)
    assert before < after <= target


def test_fill_to_target_also_turns_on_channels_inside_tiles_already_paid_for(monkeypatch):
    import search.train as train
    from search.resources import FlopsResource, conv_flops

    class TiledFlops(FlopsResource):  # a conv costs as if its channels were rounded up to 16, as XNNPACK tiles do
        def conv(self, spec, cin, cout):
            return conv_flops(spec, math.ceil(float(cin) / 16) * 16, math.ceil(float(cout) / 16) * 16)

    def gated():
        net = create_backbone("digits", search_space="channels", num_classes=10, input_size=32, in_channels=1)
        with torch.no_grad():
            layers = dict(net.layers.items())
            layers["conv4"].psi[0, 40:] = torch.tensor([-0.1, 0.0])  # off, nearly kept: tried first
            layers["conv6"].psi[0, 72:] = torch.tensor([-0.9, 0.0])  # off, surer; conv6 keeps 72 of 128 channels
        return net

    resource = TiledFlops()
    net = gated()
    before = net.hard_resource(resource)
    target = before * 1.001  # room for no new tile
    monkeypatch.setattr(train, "FIRST_FIT_GATES", 0)
    assert fill_to_target(net, resource, target) == before  # bisection alone stops at conv4's first gate
    monkeypatch.undo()
    net = gated()
    after = fill_to_target(net, resource, target)
    conv6 = dict(net.layers.items())["conv6"].psi
    assert after <= target
    assert int((conv6[0, :, 0] > conv6[0, :, 1]).sum()) == 80  # 72 -> 80 fills the tile conv6 already pays for


def test_operation_types_counts_distinct_producer_sets():
    layer = {"ops": [{"keep": [0, 1, 2]}, {"keep": [2, 3]}, {"keep": []}]}
    # channel 0,1: op0 only; 2: op0+op1; 3: op1 only -> three types
    assert operation_types(layer) == 3
    assert operation_types({"ops": [{"keep": [0, 1]}]}) == 1


def test_missing_conditions_message_lists_them_and_the_profile_command():
    missing = [ConditionKey(32, 32, 5, 1, "normal", "relu"), ConditionKey(16, 16, 3, 2, "depthwise", "relu")]
    msg = missing_conditions_message(missing, "device_tables/host-amd-f26m2s1.json", "host")
    assert "32x32:k5:s1:normal:relu" in msg and "16x16:k3:s2:depthwise:relu" in msg
    assert "fgnas-profile --device host --space cifar --kernels 3,5 --strides 1,2 --conv-types depthwise,normal" in msg
    assert "\n" not in msg


def test_the_seed_sets_the_initial_weights(tmp_path):
    from search.train import _prepare

    def first_weights(seed: int, name: str) -> torch.Tensor:
        run = _prepare(_tiny(seed=seed), tmp_path / name, resume=False, log=lambda line: None, progress=False)
        return next(run.net.weight_parameters()).detach().clone()

    torch.manual_seed(123)  # what ran before must not matter
    a = first_weights(0, "a")
    torch.rand(7)
    assert torch.equal(a, first_weights(0, "b"))
    assert not torch.equal(a, first_weights(1, "c"))


def _tiny(target: str = "9MFLOPs", **kw) -> SearchConfig:
    base = dict(target=target, backbone="digits", search_space="channels", data="digits", epochs_pretrain=1,
                epochs_search=4, epochs_finetune=1, batch_size=32, train_subset=512, val_subset=128, lr=0.05,
                gate_lr=0.2)
    return SearchConfig(**{**base, **kw})


@pytest.mark.slow
def test_search_meets_a_flops_target_and_writes_the_run_directory(tmp_path):
    run = tmp_path / "run"
    result = run_search(_tiny(), run)
    assert result.predicted["flops"] <= 9e6 < 12.7e6  # the digits backbone has 12.7 MFLOPs
    assert result.resource == result.predicted["flops"]
    arch = read_arch(run / "arch.json")
    assert arch["search"]["pruned_to_target"] is False  # the gates got there, not the fallback
    assert arch["target"]["value"] == 9e6 and arch["predicted"]["flops"] == round(result.predicted["flops"])
    assert arch["backbone"]["name"] == "digits"
    rows = (run / "metrics.csv").read_text().splitlines()
    phases = [r.split(",")[0] for r in rows[1:]]
    assert phases[0] == "pretrain" and phases[-1] == "finetune" and "search" in phases
    assert float(rows[-1].split(",")[8]) == pytest.approx(result.predicted["flops"])
    for name in ("resource.png", "channels.png", "operations.png", "widths.png"):
        assert (run / "plots" / name).stat().st_size > 1000
    weights = torch.load(run / "model.pt")
    net = create_backbone("digits", num_classes=10, input_size=32, in_channels=1)
    net.load_state_dict(weights)
    net.set_search_mode("finetune")
    assert net.hard_resource(__import__("search.resources").resources.create_resource("flops")) == \
        pytest.approx(result.predicted["flops"])
    assert len(result.summary) == len(arch["layers"])
    # A finished run resumes to the same result without training again.
    again = run_search(_tiny(), run, resume=True)
    assert again.predicted == result.predicted


def test_a_target_below_the_smallest_network_stops_before_training(tmp_path):
    with pytest.raises(FgnasError, match="below the smallest network"):
        run_search(_tiny("10params"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_latency_target_needs_a_table(tmp_path):
    with pytest.raises(FgnasError, match="latency table"):
        run_search(_tiny("1ms"), tmp_path / "run")


def test_resume_refuses_a_directory_from_another_run(tmp_path):
    run = tmp_path / "run"
    RunDir(run).start({**_tiny().to_dict(), "latency_table_hash": None})
    with pytest.raises(FgnasError, match="different run.*target '9MFLOPs' there, '8MFLOPs' here"):
        run_search(_tiny("8MFLOPs"), run, resume=True)
    with pytest.raises(FgnasError, match="not a fgnas-search run directory"):
        run_search(_tiny(), tmp_path / "elsewhere", resume=True)
    with pytest.raises(FgnasError, match="already holds a search run"):
        run_search(_tiny(), run)


@pytest.mark.slow
def test_ctrl_c_leaves_a_checkpoint_that_resumes_to_the_end(tmp_path):
    run = tmp_path / "run"

    def interrupt_in_search(line: str) -> None:
        if line.startswith("search:"):  # logged inside the search phase, after pretraining was checkpointed
            raise KeyboardInterrupt

    with pytest.raises(SearchInterrupted, match="--resume"):
        run_search(_tiny(), run, log=interrupt_in_search)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["state"]["phase"] == "search"
    assert [m["phase"] for m in ckpt["state"]["metrics"]] == ["pretrain"]
    lines = []
    result = run_search(_tiny(), run, resume=True, log=lines.append)
    assert lines[0].startswith("resuming")
    assert result.predicted["flops"] <= 9e6
    phases = [json.loads(json.dumps(m))["phase"] for m in torch.load(run / "checkpoint.pt", weights_only=False)
              ["state"]["metrics"]]
    assert phases.count("pretrain") == 1 and phases[-1] == "finetune"


@pytest.mark.slow
def test_a_fine_tune_interrupted_between_epochs_resumes_to_the_uninterrupted_weights(tmp_path):
    # l1: pretraining, then the fine-tune gets the search's epoch: two fine-tune epochs of the sliced network
    config = _tiny("9MFLOPs", baseline="l1", epochs_search=1)
    # run_search builds the backbone before it seeds torch: two runs in one process start alike only if seeded here
    torch.manual_seed(0)
    straight = run_search(config, tmp_path / "straight")

    def interrupt_after_the_first_fine_tune_epoch(line: str) -> None:
        if line.startswith("finetune 1:"):
            raise KeyboardInterrupt

    run = tmp_path / "interrupted"
    torch.manual_seed(0)
    with pytest.raises(SearchInterrupted):
        run_search(config, run, log=interrupt_after_the_first_fine_tune_epoch)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert (ckpt["state"]["phase"], ckpt["state"]["epoch"]) == ("finetune", 1)
    # the checkpoint holds the SearchNetwork's state and its optimizer's, in the SearchNetwork's shapes
    net = create_backbone("digits", num_classes=10, input_size=32, in_channels=1)
    net.load_state_dict(ckpt["model"])
    weights = list(net.weight_parameters())
    for i, per_param in ckpt["optimizers"][0]["state"].items():
        assert per_param["momentum_buffer"].shape == weights[i].shape
    resumed = run_search(config, run, resume=True)
    assert resumed.val_accuracy == straight.val_accuracy
    expected = torch.load(tmp_path / "straight" / "model.pt")
    for key, value in torch.load(run / "model.pt").items():
        assert torch.equal(value, expected[key]), key


def test_the_summary_says_plainly_when_the_fallback_pruned_or_a_baseline_was_trained():
    from search.summary import method_line

    assert method_line({"pruned_to_target": True}).startswith("FALLBACK")
    assert method_line({"pruned_to_target": False, "search_epochs": 1.5}) == \
        "searched: the gates reached the target after 1.50 search epochs"
    assert "uniform width multiplier x0.71" in method_line({"baseline": "uniform", "baseline_share": 0.71})
    assert "keeping 68.5%" in method_line({"baseline": "l1", "baseline_share": 0.685})


@pytest.mark.slow
def test_no_layer_loses_more_than_the_step_cap_in_a_step_or_ends_below_its_floor(tmp_path, monkeypatch):
    import search.dynamics as dynamics

    worst: dict[str, float] = {}
    move = dynamics.GateMover.move

    def checked_move(self, lam, costs):
        before = {n: int((m > 0).sum()) for n, m in self.net.margins().items()}
        move(self, lam, costs)
        for name, m in self.net.margins().items():
            lost = before[name] - int((m > 0).sum())
            allowed = max(1, math.floor(self.max_off_share * before[name]))
            worst[name] = max(worst.get(name, 0.0), lost / allowed)

    monkeypatch.setattr(dynamics.GateMover, "move", checked_move)
    result = run_search(_tiny("6MFLOPs", max_off_share=0.05, min_channels="0.3"), tmp_path / "run")
    assert worst and max(worst.values()) <= 1.0
    assert max(worst.values()) == 1.0  # the cap was reached, so it was what held the layer back
    arch = read_arch(tmp_path / "run" / "arch.json")
    assert arch["search"]["pruned_to_target"] is False and result.predicted["flops"] <= 6e6
    for layer in arch["layers"]:
        produced = {c for op in layer["ops"] for c in op["keep"]}
        assert len(produced) >= math.ceil(0.3 * layer["cout"])
