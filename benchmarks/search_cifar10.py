"""Issue 4 acceptance on CIFAR-10: ResNet-20 searched to a share (default 50%) of the unpruned backbone's predicted
latency with FGNAS(P) (channels) and FGNAS (kernels 1/3/5), against a uniform width multiplier of the same
predicted latency trained for the same number of epochs; plus the search overhead (a gated training step over a
plain one).

Shrunk to fit one CPU core: a seeded training subset, a validation subset of the test set, few epochs (all flags).
Every run trains from scratch with the same seed, subset and epochs. Prints a Markdown table and writes JSON.

    taskset -c 1 .venv/bin/python benchmarks/search_cifar10.py --train-subset 5000 --val-subset 2000 \
        --epochs-pretrain 4 --epochs-search 4 --epochs-finetune 3 --out runs/bench-cifar10
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from profiler.table import LatencyTable
from search.backbones import create_backbone
from search.data import load_data, make_loaders
from search.resources import create_resource
from search.train import SearchConfig, make_gate_optimizer, make_weight_optimizer, run_search

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    return Path(os.environ.get("FGNAS_SHARED_DATA", REPO.parent / "shared" / "data"))


@dataclass(frozen=True)
class Row:
    method: str
    top1: float
    latency_ms: float
    params: float
    mflops: float
    seconds: float
    note: str


def latency_of(space: str, width: float, table: LatencyTable) -> float:
    net = create_backbone("resnet20", search_space=space, num_classes=10, input_size=32, in_channels=3, width=width)
    return net.full_resource(create_resource("latency", table))


def width_for(target_ms: float, table: LatencyTable) -> float:
    """The widest uniform multiplier (to 0.01) whose plain ResNet-20 the table predicts at or under the target."""
    lo, hi = 0.05, 1.0
    while hi - lo > 0.005:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if latency_of("channels", mid, table) <= target_ms else (lo, mid)
    return round(lo, 3)


def step_seconds(net, loader, mode: str, config: SearchConfig, resource, steps: int) -> float:
    """Median wall time of one optimizer step (forward, loss(+ lambda R), backward, update) in `mode`."""
    net.set_search_mode(mode)
    net.train()
    opts = [make_weight_optimizer(net.weight_parameters(), config)]
    if mode == "search":
        opts.append(make_gate_optimizer(net.gate_parameters(), config))
    times = []
    batches = iter(loader)
    for i in range(steps + 2):
        x, y = next(batches)
        t0 = time.perf_counter()
        loss = F.cross_entropy(net(x), y)
        if mode == "search":
            loss = loss + 1e-3 * net.soft_resource(resource)
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in opts:
            o.step()
        if i >= 2:  # the first steps warm up allocators
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def overhead(config: SearchConfig, table: LatencyTable, steps: int) -> dict:
    data = load_data(config.data, train_subset=config.batch_size * (steps + 2), seed=config.seed)
    loader, _ = make_loaders(data, config.batch_size, seed=config.seed)
    resource = create_resource("latency", table)
    torch.manual_seed(config.seed)
    plain = step_seconds(create_backbone("resnet20", search_space="channels"), loader, "pretrain", config, resource,
                         steps)
    out = {"plain_step_s": plain}
    for space in ("channels", "kernels"):
        gated = step_seconds(create_backbone("resnet20", search_space=space), loader, "search", config, resource,
                             steps)
        out[f"{space}_step_s"] = gated
        out[f"{space}_overhead"] = gated / plain
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="default cifar10:<shared data>/cifar10")
    p.add_argument("--latency-table", default=str(REPO / "device_tables" / "host.json"))
    p.add_argument("--share", type=float, default=0.5, help="target: this share of ResNet-20's predicted latency")
    p.add_argument("--train-subset", type=int, default=5000)
    p.add_argument("--val-subset", type=int, default=2000)
    p.add_argument("--epochs-pretrain", type=int, default=4)
    p.add_argument("--epochs-search", type=int, default=4)
    p.add_argument("--epochs-finetune", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--overhead-steps", type=int, default=10)
    p.add_argument("--methods", default="fgnas-p,fgnas,multiplier")
    p.add_argument("--out", default="runs/bench-cifar10")
    args = p.parse_args(argv)
    data = args.data or f"cifar10:{shared_data() / 'cifar10'}"
    if args.data is None and not (shared_data() / "cifar10").exists():
        print(f"search_cifar10: no CIFAR-10 under {shared_data()}; set FGNAS_SHARED_DATA", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    table = LatencyTable.load(Path(args.latency_table))
    full = latency_of("channels", 1.0, table)
    target_ms = args.share * full
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = SearchConfig(target=f"{target_ms:.6f}ms", backbone="resnet20", data=data,
                        latency_table=args.latency_table, epochs_pretrain=args.epochs_pretrain,
                        epochs_search=args.epochs_search, epochs_finetune=args.epochs_finetune,
                        batch_size=args.batch_size, train_subset=args.train_subset, val_subset=args.val_subset,
                        lr=0.1)
    total_epochs = args.epochs_pretrain + args.epochs_search + args.epochs_finetune
    width = width_for(target_ms, table)
    configs = {
        "fgnas-p": ("FGNAS(P) (channels)", base, ""),
        "fgnas": ("FGNAS (kernels 1/3/5)", replace(base, search_space="kernels"), ""),
        # Already within the target (width_for): trains for every epoch the searches may use, all in the first phase.
        "multiplier": (f"uniform width x{width}", replace(base, width=width,
                                                          epochs_pretrain=total_epochs, epochs_search=0,
                                                          epochs_finetune=0), f"{total_epochs} epochs"),
    }
    print(f"ResNet-20 predicted {full:.4f} ms on {table.device.get('name')} ({args.latency_table}); target "
          f"{target_ms:.4f} ms; multiplier {width}", flush=True)
    rows = []
    for key in args.methods.split(","):
        label, config, note = configs[key]
        t0 = time.perf_counter()
        result = run_search(config, out / f"{key}-{stamp}", log=lambda line: print("  " + line, flush=True))
        seconds = time.perf_counter() - t0
        if key != "multiplier":
            note = f"search reached the target after {result.search_epochs:.2f} epochs"
        rows.append(Row(label, result.val_accuracy, result.predicted["latency_ms"], result.predicted["params"],
                        result.predicted["flops"] / 1e6, seconds, note))
        print(f"{label}: top-1 {result.val_accuracy:.4f}, {result.predicted['latency_ms']:.4f} ms", flush=True)
    cost = overhead(base, table, args.overhead_steps)
    print("\n| method | top-1 | predicted latency (ms) | params | MFLOPs | wall (s) | note |")
    print("|---|---|---|---|---|---|---|")
    print(f"| ResNet-20 (unpruned, not trained here) | - | {full:.4f} | - | - | - | target {target_ms:.4f} ms |")
    for r in rows:
        print(f"| {r.method} | {r.top1:.4f} | {r.latency_ms:.4f} | {r.params:,.0f} | {r.mflops:.2f} | "
              f"{r.seconds:.0f} | {r.note} |")
    print(f"\nstep time: plain {cost['plain_step_s'] * 1e3:.1f} ms; gated FGNAS(P) "
          f"{cost['channels_step_s'] * 1e3:.1f} ms ({cost['channels_overhead']:.2f}x); gated FGNAS kernels 1/3/5 "
          f"{cost['kernels_step_s'] * 1e3:.1f} ms ({cost['kernels_overhead']:.2f}x); batch {args.batch_size}")
    (out / f"results-{stamp}.json").write_text(json.dumps(
        {"args": vars(args), "full_ms": full, "target_ms": target_ms, "width": width,
         "rows": [r.__dict__ for r in rows], "overhead": cost}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
