"""How fast a training step is on this CPU: fp32 NCHW against bf16 autocast + channels_last (`--precision`), for the
plain backbone (pretraining, the baselines) and the gated one (the search); the fine-tune of a pruned network, masked
(the gated network with its gates fixed) against sliced (search/sliced.py), at `--precision auto`'s choice; and the
data loader's images/s against the step's.

Each configuration is timed in rounds, interleaved (fp32, bf16, fp32, ...), each round the median of `--steps` steps
after warm-up; a figure is the lowest round median (a VM's neighbours only ever add time). `--clock cpu` times the
process's CPU time instead of the wall clock, for a core shared with other jobs (the time it waits is not counted;
what they do to its caches is).

    .venv/bin/python benchmarks/train_step.py --threads 2 --rounds 3 --steps 20
    .venv/bin/python benchmarks/train_step.py --modes finetune --finetune-widths 0.5,0.7 --threads 1
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from search.backbones import create_backbone
from search.data import load_data, make_loaders
from search.network import SearchNetwork
from search.precision import FP32, Precision, cpu_has_bf16, resolve_precision
from search.resources import create_resource
from search.sliced import SlicedNetwork
from search.train import SearchConfig, make_weight_optimizer

BF16 = Precision("bf16", torch.bfloat16, True)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def cpu_name() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return (f"{fields.get('Model name', '?').strip()} family {fields.get('CPU family', '?').strip()} "
            f"model {fields.get('Model', '?').strip()}")


def model_step_times(model: nn.Module, params, precision: Precision, batches, steps: int, clock=time.perf_counter,
                     after_step=lambda: None) -> float:
    """Median seconds of one optimizer step (forward, loss, backward, update) of `model` training `params`."""
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = make_weight_optimizer(params, SearchConfig(target="1ms", lr=0.05))
    times = []
    for i, (x, y) in enumerate(batches[:steps + 3]):
        if precision.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        t0 = clock()
        with torch.autocast("cpu", dtype=precision.dtype, enabled=precision.dtype is not None):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        after_step()
        if i >= 3:
            times.append(clock() - t0)
    return statistics.median(times)


def step_times(backbone: str, mode: str, precision: Precision, batches, steps: int, clock=time.perf_counter) -> float:
    """Median seconds of one optimizer step in `mode`."""
    torch.manual_seed(0)
    net = create_backbone(backbone, search_space="channels")
    net.set_search_mode(mode)
    return model_step_times(net, net.weight_parameters(), precision, batches, steps, clock,
                            net.take_fisher if mode == "search" else lambda: None)


def pruned(backbone: str, width: float) -> SearchNetwork:
    """`backbone` in finetune mode keeping the first ceil(width * C) channels of every layer (about width^2 of its
    FLOPs): the same channels everywhere, so residual streams stay whole as tied streams keep them."""
    torch.manual_seed(0)
    net = create_backbone(backbone, search_space="channels")
    margins = {}
    for name, layer in net.layers.items():
        ops, channels = layer.psi.shape[:2]
        kept = torch.arange(channels) < math.ceil(width * channels - 1e-9)
        margins[name] = torch.where(kept, 1.0, -1.0).expand(ops, channels)
    net.set_margins(margins)
    net.set_search_mode("finetune")
    return net


def finetune_times(backbone: str, width: float, precision: Precision, batches, steps: int,
                   clock=time.perf_counter) -> dict[str, float]:
    """Median seconds of one fine-tune step of `backbone` pruned to `width`: the masked network and the sliced one."""
    masked = pruned(backbone, width)
    sliced = SlicedNetwork(masked)
    return {"masked": model_step_times(masked, masked.weight_parameters(), precision, batches, steps, clock),
            "sliced": model_step_times(sliced, sliced.parameters(), precision, batches, steps, clock)}


def flops_share(backbone: str, width: float) -> float:
    net, flops = pruned(backbone, width), create_resource("flops")
    return net.hard_resource(flops) / net.full_resource(flops)


def loader_rate(loader, batches: int) -> float:
    """Training images per second the loader delivers (augmentation included)."""
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        x, _ = next(it)
        n += len(x)
    return n / (time.perf_counter() - t0)


def accuracy(source: str, precision: str, seed: int, epochs: int, subset: int, val_subset: int, out: Path) -> float:
    """Top-1 of the plain backbone trained for `epochs` epochs from scratch at `precision` (same seed, same data)."""
    import shutil

    from search.train import run_search

    run_dir = out / f"{precision}-s{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    config = SearchConfig(target="100%flops", backbone="resnet20", data=source, epochs_pretrain=epochs,
                          epochs_search=0, epochs_finetune=0, lr=0.1, seed=seed, precision=precision,
                          train_subset=subset, val_subset=val_subset)
    return run_search(config, run_dir).val_accuracy


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"))
    p.add_argument("--backbone", default="resnet20")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--clock", choices=tuple(CLOCKS), default="wall")
    p.add_argument("--out", default="benchmarks/results/train_step_host.json")
    p.add_argument("--modes", default="pretrain,search",
                   help="pretrain, search (fp32 against bf16) and finetune (masked against sliced, per width)")
    p.add_argument("--finetune-widths", default="0.5,0.7",
                   help="finetune: the share of every layer's channels the pruned network keeps")
    p.add_argument("--accuracy-epochs", type=int, default=0,
                   help="also train the plain backbone this many epochs in fp32 and in bf16 (same seeds) and compare")
    p.add_argument("--accuracy-seeds", default="0,1")
    p.add_argument("--accuracy-subset", type=int, default=10000, help="training images for the accuracy check")
    p.add_argument("--accuracy-val", type=int, default=5000, help="test images for the accuracy check")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    source = f"cifar10:{args.data}" if Path(args.data).exists() else "digits"
    data = load_data(source, input_size=32, train_subset=args.batch_size * (args.steps + 4))
    loader, _ = make_loaders(data, args.batch_size)
    batches = list(loader)
    configs = {"fp32": FP32, "bf16": BF16} if cpu_has_bf16() else {"fp32": FP32}
    modes = args.modes.split(",")
    widths = [float(w) for w in args.finetune_widths.split(",")] if "finetune" in modes else []
    auto = resolve_precision("auto", torch.device("cpu"))
    results: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for mode in ("pretrain", "search"):
            for name, precision in configs.items() if mode in modes else ():
                results.setdefault(f"{mode}/{name}", []).append(
                    step_times(args.backbone, mode, precision, batches, args.steps, CLOCKS[args.clock]))
        for width in widths:
            for variant, seconds in finetune_times(args.backbone, width, auto, batches, args.steps,
                                                   CLOCKS[args.clock]).items():
                results.setdefault(f"finetune-{width:g}/{auto.name}/{variant}", []).append(seconds)
    full, _ = make_loaders(load_data(source, input_size=32), args.batch_size)
    rate = loader_rate(full, 50)
    best = {k: min(v) for k, v in results.items()}
    report = {"cpu": cpu_name(), "torch": torch.__version__, "python": platform.python_version(),
              "threads": args.threads, "clock": args.clock, "batch_size": args.batch_size, "backbone": args.backbone,
              "data": source,
              "step_ms": {k: v * 1e3 for k, v in best.items()},
              "rounds_ms": {k: [t * 1e3 for t in v] for k, v in results.items()},
              "loader_images_per_s": rate,
              "finetune_flops_share": {f"{w:g}": flops_share(args.backbone, w) for w in widths}}
    print(f"{report['cpu']}, torch {torch.__version__}, {args.threads} threads, {args.backbone}, batch "
          f"{args.batch_size}, {args.clock} clock")
    for key, value in best.items():
        print(f"  {key}: {value * 1e3:.1f} ms/step ({args.batch_size / value:.0f} images/s)")
    for mode in ("pretrain", "search"):
        if f"{mode}/bf16" in best:
            print(f"  {mode}: bf16 + channels_last is {best[f'{mode}/fp32'] / best[f'{mode}/bf16']:.2f}x fp32 NCHW")
    for width in widths:
        key = f"finetune-{width:g}/{auto.name}"
        print(f"  fine-tune at width {width:g} ({report['finetune_flops_share'][f'{width:g}']:.1%} of the FLOPs): "
              f"sliced is {best[key + '/masked'] / best[key + '/sliced']:.2f}x masked")
    print(f"  loader: {rate:.0f} images/s")
    if args.accuracy_epochs and "bf16" in configs:
        runs = Path(args.out).with_suffix("")
        report["accuracy"] = {name: {seed: accuracy(source, name, int(seed), args.accuracy_epochs,
                                                    args.accuracy_subset, args.accuracy_val, runs)
                                     for seed in args.accuracy_seeds.split(",")} for name in configs}
        report["accuracy_setup"] = (f"{args.backbone} from scratch, {args.accuracy_epochs} epochs, "
                                    f"{args.accuracy_subset} training / {args.accuracy_val} test images, lr 0.1")
        for name, by_seed in report["accuracy"].items():
            print(f"  top-1 {name}: " + ", ".join(f"seed {s} {a:.4f}" for s, a in by_seed.items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
