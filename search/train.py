"""The four search steps of the paper (section 4.2): pretrain without gates, search theta and psi under
L + lambda * R(psi) until the exact resource of the hard-gated network reaches the target, fine-tune with the gates
fixed. `run_search` drives them with checkpoints after every epoch (and on Ctrl-C) so a run can be resumed.

How the gates move is search/dynamics.py (each channel's Fisher value against its cost, lambda on a planned descent,
a cap on what a layer may lose in one step, a per-layer floor). The weights follow one cosine learning-rate schedule
over the run's whole epoch budget (pretrain + search + fine-tune), the schedule a uniformly shrunk network trained
from scratch for as long would get; search epochs the search does not need go to the fine-tune.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from profiler.errors import FgnasError
from profiler.latency.device_check import check_record, check_table_device
from profiler.spec import ConditionKey
from search.baselines import BASELINES, l1_prune, uniform_width
from search.batchnorm import recalibrate_batchnorm
from search.data import BatchLoader, DataSplits, load_data, make_loaders
from search.dynamics import (
    FISHER_WARMUP_STEPS,
    VALUES,
    GateMover,
    MinChannels,
    lambda_growth,
    next_lambda,
    parse_min_channels,
    planned_resource,
    step_costs,
)
from search.precision import Precision, resolve_precision
from search.pretrained import load_pretrained
from search.resources import Resource, create_resource
from search.sliced import NetShapedOptimizer, SlicedNetwork, write_back
from search.summary import layer_rows, method_line
from search.targets import Target, format_resource, parse_target
from search.transforms import eval_transform

if TYPE_CHECKING:  # imported where used: search.rundir is needed only once a run starts
    from search.rundir import RunDir

PHASES = ("pretrain", "search", "finetune", "done")
REPORTED_RESOURCES = ("params", "flops", "latency")


STREAMS = ("tied", "free")
PRICES = ("slope", "steps")
# --price steps re-prices the gates every this many search steps (search/dynamics.step_costs: ~70 hard resource
# evaluations for a ResNet-20); gates take about 1 / gate_lr steps to cross, so prices this old still lead them.
STEP_PRICE_EVERY = 10


def cosine_lr(base: float, step: int, total: int, floor: float = 0.0) -> float:
    """Cosine annealing from `base` at step 0 to `floor` at step `total`."""
    if total <= 0:
        return base
    t = min(1.0, step / total)
    return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * t))


@dataclass(frozen=True)
class SearchConfig:
    target: str
    backbone: str = "digits"
    search_space: str = "channels"
    data: str = "digits"
    latency_table: str | None = None
    width: float = 1.0
    epochs_pretrain: int = 5
    epochs_search: int = 10  # the most the search may take; it stops as soon as the target is met
    epochs_finetune: int = 5
    batch_size: int = 128
    lr: float = 0.05
    gate_lr: float = 0.05  # how far a gate's margin moves in a step, as a share of the network-wide rms push
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lam: float | None = None  # loss per unit of the resource; None: started from the data (dynamics.balanced_lambda)
    lambda_schedule: str = "auto"  # auto | fixed
    plan_share: float = 0.5  # the planned descent reaches the target after this share of the search epochs
    min_channels: str = "0.25"  # per-layer floor: a share of its channels (< 1) or a count
    max_off_share: float = 0.1  # the most of a layer's on gates that may switch off in one step
    streams: str = "tied"  # tied: the layers writing one residual stream keep one channel set; free: each its own
    # slope: a gate's cost is dR/dg (straight-through); steps: the hard resource's steps (output tiles). Steps is not
    # the default: it prices a multi-operation layer's gates across its operations, where removing a few channels of
    # each empties no tile (the digits demo's kernels search stalled at 0.26 of 0.18 ms and fell back)
    price: str = "slope"
    value: str = "fisher"  # fisher | relative (search/dynamics.VALUES)
    seed: int = 0
    device: str = "cpu"
    precision: str = "auto"  # search/precision.py
    train_subset: int | None = None
    val_subset: int | None = None
    pretrained: str | None = None
    bn_calibration_images: int = 512  # training images that re-estimate BN statistics before each evaluation
    baseline: str | None = None  # uniform | l1 (search/baselines.py) instead of the search
    allow_other_device: bool = False  # price with a host table of another machine (profiler.latency.device_check)

    # What must match for --resume to continue a run (the rest, e.g. epochs or device, may change).
    IDENTITY = ("target", "backbone", "search_space", "data", "width", "seed", "train_subset", "lr", "batch_size",
                "min_channels", "baseline", "streams", "price", "value")

    def __post_init__(self) -> None:
        positive = {"lr": self.lr, "gate_lr": self.gate_lr, "width": self.width, "batch_size": self.batch_size,
                    "max_off_share": self.max_off_share, "plan_share": self.plan_share}
        at_least_zero = {"epochs_pretrain": self.epochs_pretrain, "epochs_search": self.epochs_search,
                         "epochs_finetune": self.epochs_finetune, "momentum": self.momentum,
                         "weight_decay": self.weight_decay, "bn_calibration_images": self.bn_calibration_images}
        if self.lam is not None:
            positive["lambda"] = self.lam
        for name, value in {**positive, **at_least_zero}.items():
            flag = "--" + name.replace("_", "-")
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise FgnasError(f"{flag} {value!r}: give a finite number")
            if value < 0 or (name in positive and value == 0):
                raise FgnasError(f"{flag} {value!r}: must be {'> 0' if name in positive else '>= 0'}")
        for name in ("seed", "train_subset", "val_subset"):
            value = getattr(self, name)
            least = 0 if name == "seed" else 1
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
                raise FgnasError(f"--{name.replace('_', '-')} {value!r}: give a whole number >= {least}")
        if self.max_off_share > 1 or self.plan_share > 1:
            raise FgnasError("--max-off-share and --plan-share are shares: give a value in (0, 1]")
        if self.lambda_schedule not in ("auto", "fixed"):
            raise FgnasError(f"--lambda-schedule {self.lambda_schedule!r}: use auto or fixed")
        parse_min_channels(self.min_channels)
        if self.price not in PRICES:
            raise FgnasError(f"--price {self.price!r}: use slope or steps")
        if self.value not in VALUES:
            raise FgnasError(f"--value {self.value!r}: use {' or '.join(VALUES)}")
        if self.streams not in STREAMS:
            raise FgnasError(f"--streams {self.streams!r}: use tied or free")
        if self.baseline is not None and self.baseline not in BASELINES:
            raise FgnasError(f"--baseline {self.baseline!r}: use one of {', '.join(BASELINES)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SearchConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def identity(self) -> dict:
        return {k: getattr(self, k) for k in self.IDENTITY}


@dataclass(frozen=True)
class EpochMetrics:
    phase: str
    epoch: int  # within the phase, 1-based
    step: int  # optimizer steps since the start of the run
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    params: float
    flops: float
    latency_ms: float | None
    lam: float | None
    lr: float
    seconds: float
    widths: str = ""  # per layer, the channels its operations produce: "name=count[ op:count ...];..."


@dataclass
class SearchState:
    """Everything a checkpoint holds besides tensors: where the run is and what it has measured."""

    phase: str = "pretrain"
    epoch: int = 0  # epochs finished in `phase`
    step: int = 0
    lam: float | None = None
    search_step: int = 0
    start_resource: float | None = None
    search_pruned: bool = False  # the search's epochs ran out and prune_to_target met the target
    baseline_share: float | None = None  # --baseline: the width multiplier (uniform) or share of channels kept (l1)
    finetune_bonus: int = 0  # search epochs the search did not need, given to the fine-tune
    metrics: list[EpochMetrics] = field(default_factory=list)


@dataclass(frozen=True)
class SearchResult:
    run_dir: Path
    target: Target
    resource: float  # the final hard resource in the target's unit
    predicted: dict  # params, flops, latency_ms
    val_accuracy: float
    search_epochs: float  # epochs the search took to reach the target
    summary: list[dict]
    method: str  # how the architecture was reached (search.summary.method_line): a fallback is said plainly


# ---------------------------------------------------------------------------------------------- building blocks

def missing_conditions_message(missing: list[ConditionKey], table_path: str, device: str) -> str:
    """One line: which conditions the table lacks and the fgnas-profile command that measures them."""
    keys = ", ".join(str(k) for k in missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    space = "cifar" if max(k.h for k in missing) <= 32 else "imagenet"
    flags = {
        "kernels": sorted({k.kernel for k in missing}),
        "strides": sorted({k.stride for k in missing}),
        "conv-types": sorted({k.conv_type for k in missing}),
        "activations": sorted({k.activation for k in missing}),
    }
    opts = " ".join(f"--{name} {','.join(str(v) for v in values)}" for name, values in flags.items())
    return (f"latency table {table_path} lacks {len(missing)} condition(s) this backbone needs ({keys}); measure them "
            f"with: fgnas-profile --device {device} --space {space} {opts} --out {table_path}")


def load_table(path: str | None):
    if path is None:
        return None
    from profiler.latency.table import LatencyTable

    return LatencyTable.load(Path(path))


def make_resources(table) -> dict[str, Resource]:
    """The resources reported every epoch: params and FLOPs always, latency when a table is given."""
    out = {"params": create_resource("params"), "flops": create_resource("flops")}
    if table is not None:
        out["latency"] = create_resource("latency", table)
    return out


def measure(net, resources: dict[str, Resource]) -> dict[str, float]:
    return {name: net.hard_resource(r) for name, r in resources.items()}


def widths_text(net) -> str:
    """metrics.csv's per-layer record: channels each layer's operations produce, and per operation when several."""
    parts = []
    for row in net.layer_summary():
        ops = {op: n for op, n in row["ops"].items() if n}
        produced = row["produced"]
        parts.append(f"{row['name']}={produced}" + ("" if len(row["ops"]) == 1 else
                                                     " " + " ".join(f"{op}:{n}" for op, n in ops.items())))
    return ";".join(parts)


def layer_floors(net, min_channels: MinChannels) -> dict[str, int]:
    """Each searchable layer's floor: the fewest channels its operations may produce."""
    return {node.name: min_channels.of(node.cout) for node in net.nodes}


def check_target(net, target: Target, resource: Resource, floors: dict[str, int], min_channels: MinChannels) -> None:
    """Refuse at once a target no architecture in the search space can reach above the floors."""
    smallest = net.min_resource(resource, floors)
    if target.value < smallest:
        raise FgnasError(f"target {target} is below the smallest network this backbone and search space can reach "
                         f"with --min-channels {min_channels} ({format_resource(target.resource, smallest)}); raise "
                         f"--target or lower --min-channels")


def _batches(loader: BatchLoader, precision: Precision):
    for x, y in loader:
        yield (x.contiguous(memory_format=torch.channels_last) if precision.channels_last else x), y


def evaluate(net: nn.Module, loader: BatchLoader, device: torch.device, precision: Precision) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy on `loader`."""
    net.eval()
    total_loss, correct, count = 0.0, 0, 0
    with torch.no_grad(), torch.autocast(device.type, dtype=precision.dtype, enabled=precision.dtype is not None):
        for x, y in _batches(loader, precision):
            logits = net(x)
            total_loss += F.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            count += len(y)
    return total_loss / max(1, count), correct / max(1, count)


def make_weight_optimizer(params: Iterable[nn.Parameter], config: SearchConfig) -> torch.optim.SGD:
    """SGD with Nesterov momentum 0.9 and weight decay 1e-4, as the paper trains (section 4.2)."""
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                           nesterov=True)


def _floor_gates(net: nn.Module, floors: dict[str, int]) -> torch.Tensor:
    """Flat indices (over every layer's [M, C] gates in order) of the gates that keep each layer at its floor: the
    surest operation of each of its `floor` surest channels."""
    kept, offset = [], 0
    for node in net.nodes:
        margins = net.layers[node.name].psi.detach()
        margins = margins[..., 0] - margins[..., 1]
        best, op = margins.max(dim=0)
        channels = torch.argsort(best, descending=True)[:floors.get(node.name, 1)]
        kept.append(offset + op[channels] * margins.shape[1] + channels)
        offset += margins.numel()
    return torch.cat(kept)


def _gate_switch(net: nn.Module, on: bool, floors: dict[str, int] | None = None
                 ) -> tuple[Callable[..., float], list[int]]:
    """Gates ordered by how unsure the search is about them (psi_on - psi_off nearest zero first) among those now
    off (`on`: to switch on) or on (to switch off; never the gates that keep a layer at its floor). Returns
    switch(k, resource, also=()) -> the hard resource with the first k and the gates `also` switched (from the
    current gates; ensure_alive keeps every layer producing), and the order (flat gate indices)."""
    params = list(net.gate_parameters())
    offsets = [0]
    for p in params:
        offsets.append(offsets[-1] + p[..., 0].numel())
    followers = {name for group in net.tied for name in group[1:]}
    with torch.no_grad():
        margins = torch.cat([(p[..., 0] - p[..., 1]).flatten() for p in params])
        eligible = margins <= 0 if on else margins > 0
        if not on and floors:
            eligible[_floor_gates(net, floors)] = False
        for i, name in enumerate(net.layers):  # a tied group's gates move with its first layer's (net.retie)
            if name in followers:
                eligible[offsets[i]:offsets[i + 1]] = False
        candidates = torch.nonzero(eligible).flatten()
        order = candidates[torch.argsort(margins[candidates], descending=on)].tolist()
    saved = [p.detach().clone() for p in params]

    def switch(k: int, resource: Resource, also: Sequence[int] = ()) -> float:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
            for flat in [*order[:k], *also]:
                i = next(j for j in range(len(params)) if offsets[j] <= flat < offsets[j + 1])
                p = params[i]
                op, ch = divmod(flat - offsets[i], p.shape[-2])
                p[op, ch, 0] = p[op, ch, 1] + (1e-3 if on else -1e-3)
            net.retie()
            net.ensure_alive()
            return net.hard_resource(resource)

    return switch, order


# Off gates tried one by one after the bisection (those the search was least sure about first): each evaluation
# prices the whole network, so the pass is bounded.
FIRST_FIT_GATES = 400


def fill_to_target(net: nn.Module, resource: Resource, target: float) -> float:
    """Gates move together, so one step can overshoot below the target. Turn back on the off gates the search was
    least sure about (largest psi_on - psi_off first), as many as keep the hard resource within the target
    (bisection on how many); then try the next ones one by one and keep each that still fits: on a latency table a
    channel inside an output tile another channel already opened costs nothing. Returns the resource after filling."""
    switch, order = _gate_switch(net, on=True)
    lo, hi = 0, len(order)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if switch(mid, resource) <= target:
            lo = mid
        else:
            hi = mid - 1
    fitted: list[int] = []
    for flat in order[lo + 1:lo + 1 + FIRST_FIT_GATES]:
        if switch(lo, resource, [*fitted, flat]) <= target:
            fitted.append(flat)
    return switch(lo, resource, fitted)


def prune_to_target(net: nn.Module, resource: Resource, target: float, floors: dict[str, int] | None = None) -> float:
    """When the search's epochs are spent short of the target: switch off the on gates the search was least sure
    about (smallest psi_on - psi_off first), as few as bring the hard resource within the target (bisection).
    This is what bounds the search's length whatever lambda did; no layer goes below its floor. Returns the resource
    after pruning."""
    switch, order = _gate_switch(net, on=False, floors=floors)
    lo, hi = 0, len(order)
    while lo < hi:
        mid = (lo + hi) // 2
        if switch(mid, resource) <= target:
            hi = mid
        else:
            lo = mid + 1
    return switch(lo, resource)


StepHook = Callable[[int], bool]  # called after each optimizer step with the run's step; True stops the epoch


def train_epoch(net: nn.Module, loader: BatchLoader, optimizer: torch.optim.Optimizer,
                lr_at: Callable[[int], float], state: SearchState, scaler: torch.amp.GradScaler,
                device: torch.device, precision: Precision, where: str, after_step: StepHook | None = None,
                progress=None) -> tuple[float, float]:
    """One pass over `loader` training the weights; lr_at(step) sets their lr, after_step moves the gates (search).
    Returns mean training loss and accuracy. A loss that is no longer finite stops the run with one line."""
    net.train()
    total_loss, correct, count = 0.0, 0, 0
    for x, y in _batches(loader, precision):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(state.step)
        with torch.autocast(device.type, dtype=precision.dtype, enabled=precision.dtype is not None):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y)
        if not torch.isfinite(loss):
            raise FgnasError(f"the training loss became {float(loss)} in {where} (step {state.step}); lower --lr "
                             f"(now {optimizer.param_groups[0]['lr']:.3g} at this step) and start a new run")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        state.step += 1
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        count += len(y)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if after_step is not None and after_step(state.step):
            break
    return total_loss / max(1, count), correct / max(1, count)


# --------------------------------------------------------------------------------------------------- the run

class SearchInterrupted(FgnasError):
    """Ctrl-C: the checkpoint is saved; the CLI exits 130 with the resume command."""

    exit_code = 130


def resolve_device(name: str) -> torch.device:
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise FgnasError(f"unknown --device {name!r}: use cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FgnasError("--device cuda but no CUDA GPU is visible to torch; use --device cpu")
    return torch.device(name)


def _state_to_dict(state: SearchState) -> dict:
    return {**asdict(state), "metrics": [asdict(m) for m in state.metrics]}


def _state_from_dict(d: dict) -> SearchState:
    return SearchState(**{**d, "metrics": [EpochMetrics(**m) for m in d["metrics"]]})


# An optimizer as checkpoints save and restore it (its state_dict); the fine-tune's is in the SearchNetwork's shapes.
Checkpointed = torch.optim.Optimizer | NetShapedOptimizer


@dataclass
class _Run:
    """What every phase needs; built once by `_prepare`."""

    config: SearchConfig
    rundir: RunDir
    target: Target
    resource: Resource
    resources: dict[str, Resource]
    table: object
    data: DataSplits
    net: nn.Module
    device: torch.device
    precision: Precision
    floors: dict[str, int]
    train_loader: BatchLoader
    val_loader: BatchLoader
    calibration_loader: BatchLoader
    state: SearchState
    optimizer_states: list | None
    log: Callable[[str], None]
    progress: bool
    device_check: dict | None = None  # profiler.latency.device_check's record of the table against this machine

    def checkpoint(self, optimizers: list[Checkpointed], scaler: torch.amp.GradScaler) -> None:
        self.rundir.save_checkpoint({
            "config": self.config.to_dict(), "state": _state_to_dict(self.state), "model": self.net.state_dict(),
            "optimizers": [o.state_dict() for o in optimizers], "scaler": scaler.state_dict(),
        })
        self.rundir.write_metrics(self.state.metrics)

    def restore(self, optimizers: list[Checkpointed]) -> None:
        """Optimizer states saved mid-phase are loaded into the phase's fresh optimizers, once."""
        if self.optimizer_states is not None and len(self.optimizer_states) == len(optimizers):
            for opt, sd in zip(optimizers, self.optimizer_states):
                opt.load_state_dict(sd)
        self.optimizer_states = None

    def end_epoch(self, phase: str, loss: float, acc: float, lr: float, seconds: float,
                  model: nn.Module | None = None) -> EpochMetrics:
        """Validate `model` (the network being trained: the SearchNetwork, or the fine-tune's sliced network, which
        computes the same function) and record the epoch."""
        model = self.net if model is None else model
        # Eval mode must see the statistics of the current weights and architecture, not a lagging average (a short
        # run, and every search step that prunes, leaves them stale); the checkpoint keeps the recalibrated ones.
        recalibrate_batchnorm(model, self.calibration_loader, self.config.bn_calibration_images)
        val_loss, val_acc = evaluate(model, self.val_loader, self.device, self.precision)
        res = measure(self.net, self.resources)
        row = EpochMetrics(phase, self.state.epoch + 1, self.state.step, loss, acc, val_loss, val_acc,
                           res["params"], res["flops"], res.get("latency"),
                           self.state.lam if phase == "search" else None, lr, seconds, widths_text(self.net))
        self.state.metrics.append(row)
        self.state.epoch += 1
        now = res.get(self.target.resource)
        self.log(f"{phase} {row.epoch}: loss {loss:.3f} train acc {acc:.3f} val acc {val_acc:.3f} "
                 f"{format_resource(self.target.resource, now)} (target {self.target}) {seconds:.1f}s")
        return row

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the run's whole budget: one cosine spans them (a run started from --pretrained has no
        pretraining in it)."""
        cfg = self.config
        pretrain = 0 if cfg.pretrained else cfg.epochs_pretrain
        return (pretrain + cfg.epochs_search + cfg.epochs_finetune) * len(self.train_loader)

    def lr_at(self, step: int) -> float:
        return cosine_lr(self.config.lr, step, self.total_steps)

    def bar(self, phase: str, epoch: int, total: int):
        from tqdm import tqdm

        return tqdm(total=len(self.train_loader), desc=f"{phase} {epoch}/{total}", leave=False,
                    disable=not self.progress, unit="step")


def _prepare(config: SearchConfig, run_dir: str | Path, resume: bool, log: Callable[[str], None],
             progress: bool) -> _Run:
    from search.backbones import create_backbone
    from search.rundir import RunDir

    rundir = RunDir(run_dir)
    target = parse_target(config.target)
    stored = None
    if resume:
        stored = rundir.stored_config()
        rundir.check_same_run(config.identity(), SearchConfig.from_dict(stored).identity())
    table = load_table(config.latency_table)
    device_check = check_record(check_table_device(table, allow_other_device=config.allow_other_device)) \
        if table is not None else None
    if device_check and device_check["warning"]:
        log(f"warning: {device_check['warning']}")
    resource = create_resource(target.resource, table)
    resources = make_resources(table)
    table_hash = table.content_hash if table is not None else None
    if stored is not None:
        rundir.check_same_run({"latency_table_hash": table_hash}, stored)
    data = load_data(config.data, train_subset=config.train_subset, val_subset=config.val_subset, seed=config.seed)
    def build(width: float):
        space = "channels" if config.baseline else config.search_space
        torch.manual_seed(config.seed)  # the initial weights are the seed's, whatever was built before
        return create_backbone(config.backbone, search_space=space, num_classes=data.num_classes,
                               input_size=data.input_size, in_channels=data.in_channels, width=width)

    net = build(config.width)
    if table is not None:
        missing = table.missing_conditions(net.conv_specs())
        if missing:
            raise FgnasError(missing_conditions_message(missing, config.latency_table,
                                                        table.device.get("name", "NAME")))
    target = target.resolve(net.full_resource(resource))
    uniform = None
    if config.baseline == "uniform":
        uniform = uniform_width(lambda w: build(config.width * w), resource, target)
        net = build(config.width * uniform)
    min_channels = parse_min_channels(config.min_channels)
    floors = layer_floors(net, min_channels)
    check_target(net, target, resource, floors, min_channels)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    if not resume:
        rundir.start({**config.to_dict(), "latency_table_hash": table_hash})
    torch.manual_seed(config.seed)
    net.to(device, memory_format=_memory_format(precision))
    train_loader, val_loader = make_loaders(data, config.batch_size, seed=config.seed, device=device)
    calibration_loader = BatchLoader(data.train.subset(config.bn_calibration_images, config.seed), config.batch_size,
                                     eval_transform(data.input_size, data.mean, data.std), shuffle=False,
                                     device=device)
    state, optimizer_states = SearchState(baseline_share=uniform), None
    ckpt = rundir.load_checkpoint() if resume else None
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        state = _state_from_dict(ckpt["state"])
        optimizer_states = ckpt["optimizers"]
        log(f"resuming {rundir.path} at {state.phase} epoch {state.epoch + 1} (step {state.step})")
    elif config.pretrained:
        loaded = load_pretrained(net, _read_pretrained(config.pretrained), f"--pretrained {config.pretrained}")
        state.phase = "search"
        log(f"weights from {config.pretrained} ({loaded}): skipping pretraining")
    if config.streams == "tied":
        net.tie_streams()
    return _Run(config, rundir, target, resource, resources, table, data, net, device, precision, floors,
                train_loader, val_loader, calibration_loader, state, optimizer_states, log, progress, device_check)


def _read_pretrained(path: str) -> dict:
    """A state_dict, or a checkpoint/run file holding one under "model"; read with weights_only (a crafted file must
    not run code). search/pretrained.py maps it onto the network."""
    from search.rundir import load_torch_file

    if path.endswith(".safetensors"):
        raise FgnasError(f"--pretrained {path}: .safetensors files are not read (the safetensors package is not a "
                         f"dependency); save the state dict with torch.save")
    blob = load_torch_file(path, f"--pretrained {path}")
    weights = blob.get("model", blob) if isinstance(blob, dict) else None
    if not isinstance(weights, dict):
        raise FgnasError(f"--pretrained {path} holds no state_dict")
    return weights


def _next_phase(run: _Run, phase: str) -> None:
    run.state.phase = phase
    run.state.epoch = 0
    run.optimizer_states = None


def _memory_format(precision: Precision) -> torch.memory_format:
    return torch.channels_last if precision.channels_last else torch.preserve_format


def _train_weights(run: _Run, scaler: torch.amp.GradScaler, phase: str, epochs: int, next_phase: str) -> None:
    """Pretraining (gates ignored) and fine-tuning (gates fixed): weights only, on the run's cosine. The fine-tune
    trains the network sliced to the channels the gates keep (search/sliced.py: the same function at the pruned
    network's cost) and writes it back into the SearchNetwork after every epoch, so that checkpoints, and all that
    follows the fine-tune, read the SearchNetwork as before."""
    state, net = run.state, run.net
    net.set_search_mode(phase)
    if phase == "finetune":
        model = SlicedNetwork(net).to(memory_format=_memory_format(run.precision))
        opt = make_weight_optimizer(model.parameters(), run.config)
        saved = NetShapedOptimizer(opt, model, net)  # checkpoints keep the optimizer state in the network's shapes
    else:
        model = net
        opt = saved = make_weight_optimizer(net.weight_parameters(), run.config)

    def sync() -> None:
        if model is not net:
            write_back(model, net)

    run.restore([saved])
    phase_start = state.step - state.epoch * len(run.train_loader)
    try:
        while state.epoch < epochs:
            run.train_loader.set_epoch(len(state.metrics))
            t0 = time.perf_counter()
            with run.bar(phase, state.epoch + 1, epochs) as bar:
                loss, acc = train_epoch(model, run.train_loader, opt, run.lr_at, state, scaler, run.device,
                                        run.precision, f"{phase} epoch {state.epoch + 1}", progress=bar)
            run.end_epoch(phase, loss, acc, run.lr_at(state.step), time.perf_counter() - t0, model)
            sync()
            run.checkpoint([saved], scaler)
    except KeyboardInterrupt:
        state.step = phase_start + state.epoch * len(run.train_loader)
        sync()
        run.checkpoint([saved], scaler)
        raise
    _next_phase(run, next_phase)
    run.checkpoint([saved], scaler)


def _pretrain(run: _Run, scaler: torch.amp.GradScaler) -> None:
    if run.config.baseline == "uniform":  # already within the target: the whole budget trains it from scratch
        _train_weights(run, scaler, "pretrain", run.total_steps // len(run.train_loader), "done")
    else:
        _train_weights(run, scaler, "pretrain", run.config.epochs_pretrain, "search")


def _prune_l1(run: _Run, scaler: torch.amp.GradScaler) -> None:
    """--baseline l1 in place of the search: prune the pretrained backbone by filter L1 norm, uniformly, to the
    target; the fine-tune gets the search's epochs."""
    state, net, target = run.state, run.net, run.target
    net.set_search_mode("finetune")
    state.baseline_share = l1_prune(net, run.resource, target)
    state.finetune_bonus = run.config.epochs_search
    run.log(f"L1-norm pruning kept {state.baseline_share:.1%} of every layer's channels: "
            f"{format_resource(target.resource, net.hard_resource(run.resource))} <= {target}")
    _next_phase(run, "finetune")
    run.checkpoint([], scaler)


def _search(run: _Run, scaler: torch.amp.GradScaler) -> None:
    if run.config.baseline == "l1":
        _prune_l1(run, scaler)
        return
    cfg, state, net, target = run.config, run.state, run.net, run.target
    net.set_search_mode("search")
    weights = make_weight_optimizer(net.weight_parameters(), cfg)
    run.restore([weights])
    steps_per_epoch = len(run.train_loader)
    price = cfg.price
    if state.start_resource is None:
        state.start_resource = net.hard_resource(run.resource)
        run.log(f"search: from {format_resource(target.resource, state.start_resource)} to {target} "
                f"(floor {cfg.min_channels}, lambda {cfg.lambda_schedule}, {price} prices, {cfg.value} values)")
    plan_steps = max(1, math.ceil(cfg.plan_share * cfg.epochs_search * steps_per_epoch))
    mover = GateMover(net, run.floors, cfg.gate_lr, cfg.max_off_share, cfg.value)
    growth = lambda_growth(plan_steps, cfg.gate_lr)
    reached = net.hard_resource(run.resource) <= target.value
    priced: list[dict] = []  # --price steps: the last step_costs

    def after_step(_: int) -> bool:
        nonlocal reached
        mover.observe()
        state.search_step += 1
        if not mover.ready:
            return False
        if price == "slope":
            costs = net.cost_gradients(run.resource)
        else:
            if state.search_step % STEP_PRICE_EVERY == 0 or not priced:
                priced[:] = [step_costs(net, run.resource, mover.groups(net.margins()))]
            costs = priced[0]
        if state.lam is None:
            first = state.start_resource - planned_resource(state.start_resource, target.value, mover.horizon,
                                                            plan_steps)
            state.lam = cfg.lam if cfg.lam is not None else mover.starting_rate(costs, first)
            run.log(f"  lambda starts at {state.lam:.3g} per {run.resource.unit}")
        mover.move(state.lam, costs)
        now = net.hard_resource(run.resource)
        if now <= target.value:
            reached = True
            filled = fill_to_target(net, run.resource, target.value)
            run.log(f"search reached {format_resource(target.resource, now)}; gates refilled to "
                    f"{format_resource(target.resource, filled)}")
            return True
        if cfg.lambda_schedule == "auto":
            # the plan as the resource can show it: a gate pushed now crosses about mover.horizon steps later
            planned = planned_resource(state.start_resource, target.value,
                                       max(0, state.search_step - FISHER_WARMUP_STEPS - mover.horizon), plan_steps)
            state.lam = next_lambda(state.lam, growth, now, planned, state.start_resource, target.value)
        if state.search_step % 50 == 0:
            run.log(f"  step {state.search_step}: {format_resource(target.resource, now)} lambda {state.lam:.3g}")
        return False

    try:
        while not reached and state.epoch < cfg.epochs_search:
            run.train_loader.set_epoch(len(state.metrics))
            t0 = time.perf_counter()
            with run.bar("search", state.epoch + 1, cfg.epochs_search) as bar:
                loss, acc = train_epoch(net, run.train_loader, weights, run.lr_at, state, scaler, run.device,
                                        run.precision, f"search epoch {state.epoch + 1}", after_step=after_step,
                                        progress=bar)
            run.end_epoch("search", loss, acc, run.lr_at(state.step), time.perf_counter() - t0)
            run.checkpoint([weights], scaler)
    except KeyboardInterrupt:
        run.checkpoint([weights], scaler)
        raise
    if not reached:
        now = net.hard_resource(run.resource)
        pruned = prune_to_target(net, run.resource, target.value, run.floors)
        run.log(f"FALLBACK: the search's {cfg.epochs_search} epochs ended at {format_resource(target.resource, now)}; "
                f"switched off the gates it was least sure about to reach {format_resource(target.resource, pruned)}")
        if pruned > target.value:
            raise FgnasError(f"the search did not reach {target} within {cfg.epochs_search} epochs (now "
                             f"{format_resource(target.resource, pruned)}); raise --target or --epochs-search")
        state.search_pruned = True
    # the search's unused steps, in whole epochs: a search that stops one step into an epoch has not used it
    state.finetune_bonus = max(0, round(cfg.epochs_search - state.search_step / steps_per_epoch))
    run.log(f"search reached {format_resource(target.resource, net.hard_resource(run.resource))} "
            f"<= {target} after {state.search_step / steps_per_epoch:.2f} epochs; the fine-tune gets the "
            f"{state.finetune_bonus} search epoch(s) left")
    _next_phase(run, "finetune")
    run.checkpoint([weights], scaler)


def _finetune(run: _Run, scaler: torch.amp.GradScaler) -> None:
    _train_weights(run, scaler, "finetune", run.config.epochs_finetune + run.state.finetune_bonus, "done")


PHASE_RUNNERS = {"pretrain": _pretrain, "search": _search, "finetune": _finetune}


def _finish(run: _Run) -> SearchResult:
    net, target = run.net, run.target
    net.set_search_mode("finetune")
    predicted = measure(net, run.resources)
    latency = predicted.get("latency")
    table_info = None
    if run.table is not None:
        table_info = {"path": run.config.latency_table, "device": run.table.device.get("name"),
                      "table_version": run.table.table_version, "content_hash": run.table.content_hash,
                      "device_check": run.device_check}
    recalibrate_batchnorm(net, run.calibration_loader, run.config.bn_calibration_images)
    val_loss, val_acc = evaluate(net, run.val_loader, run.device, run.precision)
    search_epochs = run.state.search_step / max(1, len(run.train_loader))
    arch = net.to_arch({
        "latency_table": table_info,
        "target": {"resource": target.resource, "value": target.value, "text": run.config.target},
        "predicted": {"latency_ms": latency},
        "search": {"data": run.config.data, "val_accuracy": val_acc, "seed": run.config.seed,
                   "search_space": "channels" if run.config.baseline else run.config.search_space,
                   "pruned_to_target": run.state.search_pruned, "baseline": run.config.baseline,
                   "baseline_share": run.state.baseline_share, "search_epochs": search_epochs},
    })
    run.rundir.write_arch(arch)
    run.rundir.save_weights(net.state_dict())
    run.rundir.write_metrics(run.state.metrics)
    run.rundir.write_plots(run.state.metrics, target, arch)
    return SearchResult(run.rundir.path, target, predicted[target.resource],
                        {"params": predicted["params"], "flops": predicted["flops"], "latency_ms": latency},
                        val_acc, search_epochs, layer_rows(arch, run.table), method_line(arch["search"]))


def run_search(config: SearchConfig, run_dir: str | Path, resume: bool = False,
               log: Callable[[str], None] = lambda _: None, progress: bool = False) -> SearchResult:
    """Pretrain, search, fine-tune (skipping what a resumed run has done); write the run directory."""
    run = _prepare(config, run_dir, resume, log, progress)
    scaler = torch.amp.GradScaler(run.device.type, enabled=run.precision.scaled)
    try:
        while run.state.phase != "done":
            PHASE_RUNNERS[run.state.phase](run, scaler)
    except KeyboardInterrupt:
        raise SearchInterrupted(f"interrupted: checkpoint saved in {run.rundir.path}; continue with "
                                f"fgnas-search --resume {run.rundir.path}") from None
    return _finish(run)
