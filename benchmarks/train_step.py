"""How fast a training step is on this CPU: fp32 NCHW against bf16 autocast + channels_last (`--precision`), for the
plain backbone (pretraining, the baselines) and the gated one (the search); and the data loader's images/s against
the step's.

Each configuration is timed in rounds, interleaved (fp32, bf16, fp32, ...), each round the median of `--steps` steps
after warm-up; a figure is the lowest round median (a VM's neighbours only ever add time).

    .venv/bin/python benchmarks/train_step.py --threads 2 --rounds 3 --steps 20
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from search.backbones import create_backbone
from search.data import load_data, make_loaders
from search.precision import FP32, Precision, cpu_has_bf16
from search.train import SearchConfig, make_weight_optimizer

BF16 = Precision("bf16", torch.bfloat16, True)


def cpu_name() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return (f"{fields.get('Model name', '?').strip()} family {fields.get('CPU family', '?').strip()} "
            f"model {fields.get('Model', '?').strip()}")


def step_times(backbone: str, mode: str, precision: Precision, batches, steps: int) -> float:
    """Median seconds of one optimizer step (forward, loss, backward, update) in `mode`."""
    torch.manual_seed(0)
    net = create_backbone(backbone, search_space="channels")
    if precision.channels_last:
        net = net.to(memory_format=torch.channels_last)
    net.set_search_mode(mode)
    net.train()
    opt = make_weight_optimizer(net.weight_parameters(), SearchConfig(target="1ms", lr=0.05))
    times = []
    for i, (x, y) in enumerate(batches[:steps + 3]):
        if precision.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=precision.dtype, enabled=precision.dtype is not None):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if mode == "search":
            net.take_fisher()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


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
    p.add_argument("--out", default="benchmarks/results/train_step_host.json")
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
    results: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for mode in ("pretrain", "search"):
            for name, precision in configs.items():
                results.setdefault(f"{mode}/{name}", []).append(
                    step_times(args.backbone, mode, precision, batches, args.steps))
    full, _ = make_loaders(load_data(source, input_size=32), args.batch_size)
    rate = loader_rate(full, 50)
    best = {k: min(v) for k, v in results.items()}
    report = {"cpu": cpu_name(), "torch": torch.__version__, "python": platform.python_version(),
              "threads": args.threads, "batch_size": args.batch_size, "backbone": args.backbone, "data": source,
              "step_ms": {k: v * 1e3 for k, v in best.items()},
              "rounds_ms": {k: [t * 1e3 for t in v] for k, v in results.items()},
              "loader_images_per_s": rate}
    print(f"{report['cpu']}, torch {torch.__version__}, {args.threads} threads, {args.backbone}, batch "
          f"{args.batch_size}")
    for key, value in best.items():
        print(f"  {key}: {value * 1e3:.1f} ms/step ({args.batch_size / value:.0f} images/s)")
    for mode in ("pretrain", "search"):
        if f"{mode}/bf16" in best:
            print(f"  {mode}: bf16 + channels_last is {best[f'{mode}/fp32'] / best[f'{mode}/bf16']:.2f}x fp32 NCHW")
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
