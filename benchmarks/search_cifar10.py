"""Does the search beat the simpler ways to meet a target? ResNet-20 on CIFAR-10 (all 50k training images, top-1 on
all 10k test images unless narrowed), at a share of the unpruned network's predicted latency on a table profiled on
this machine and at a share of its FLOPs, against:

- uniform: the widest width multiplier that meets the target, trained from scratch for every epoch of the budget;
- l1: the pretrained backbone pruned uniformly by filter L1 norm, fine-tuned for the search's epochs;
- fgnas-p: FGNAS(P), channels only, from the same pretrained backbone (residual streams tied; `--price slope`);
- fgnas-p-steps: the same with `--price steps`;
- fgnas-p-relative: fgnas-p-steps with `--value relative` (a channel's Fisher value over its layer's mean);
- fgnas-p-free: the same with `--streams free`;
- fgnas: FGNAS over kernels 1/3/5, from a pretrained kernels supernet.

Every arm gets the same number of epochs: uniform trains for pretrain + search + fine-tune epochs; the others start
from a backbone pretrained for `--epochs-pretrain` epochs (cached per seed and search space: one cosine to zero, as a
user's pretrained network) and get `--epochs-search` + `--epochs-finetune` epochs (the search stops at the target and
gives what it did not use to the fine-tune). With `--pretrain inline` each arm pretrains inside its own run instead,
one cosine over all its epochs, as uniform's. Each run is a run directory under --out; a finished one is read back, an
interrupted one resumed, so re-running the command continues where it stopped.

Without --latency-table the benchmark profiles this machine first (`fgnas-profile --device host --space cifar`
narrowed to ResNet-20's conditions, into --out): a table from another machine is wrong here.

    taskset -c 1 nice .venv/bin/python benchmarks/search_cifar10.py --seeds 0,1 --out runs/bench-cifar10
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARMS = ("uniform", "l1", "fgnas-p", "fgnas-p-steps", "fgnas-p-relative", "fgnas-p-free", "fgnas", "fgnas-relative")
ARM_SPACE = {"uniform": "channels", "l1": "channels", "fgnas-p": "channels", "fgnas-p-steps": "channels",
             "fgnas-p-relative": "channels",
             "fgnas-p-free": "channels", "fgnas": "kernels", "fgnas-relative": "kernels"}
# fgnas-p-free: FGNAS(P) with --streams free (each layer adding to a residual stream picks its own channels), the
# search as it was before streams were tied; the baselines do not search, so their streams setting is moot.
ARM_STREAMS = {"fgnas-p": "tied", "fgnas-p-steps": "tied", "fgnas-p-relative": "tied", "fgnas": "tied",
               "fgnas-relative": "tied"}
# fgnas-p-steps: FGNAS(P) pricing gates by the hard resource's steps (--price steps: output tiles), not its slope;
# every other arm is run with slope prices, as before --price existed (moot for the baselines, which do not search).
ARM_PRICE = {"fgnas-p-steps": "steps", "fgnas-p-relative": "steps"}
# fgnas-p-relative: fgnas-p-steps valuing a channel by its Fisher information over its layer's mean (--value relative,
# fgnas-search's default since it won here); fgnas-relative: FGNAS (kernels 1/3/5) with relative values and slope
# prices (steps prices stall with several operations a layer). The other arms keep the raw Fisher value they were run
# with, so that their finished runs stay theirs.
ARM_VALUE = {"fgnas-p-relative": "relative", "fgnas-relative": "relative"}


def shared_data() -> Path:
    return Path(os.environ.get("FGNAS_SHARED_DATA", REPO.parent / "shared" / "data"))


@dataclass(frozen=True)
class Row:
    target: str
    arm: str
    seed: int
    top1: float
    latency_ms: float | None
    mflops: float
    params: float
    seconds: float
    widths: list[int]
    note: str


def cpu_name() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return (f"{fields.get('Model name', '?').strip()} family {fields.get('CPU family', '?').strip()} "
            f"model {fields.get('Model', '?').strip()}")


def profile_table(out: Path) -> Path:
    """This machine's table for ResNet-20's channel and kernel spaces (3x3 and 1x1, 1x1/3x3/5x5 kernels, relu and
    none, strides 1 and 2 at 32/16/8 px, and the ops it prices)."""
    table = out / "host-resnet20.json"
    if not table.exists():
        cmd = [str(REPO / ".venv" / "bin" / "fgnas-profile"), "--device", "host", "--space", "cifar", "--kernels",
               "1,3,5", "--activations", "relu,none", "--conv-types", "normal", "--resolutions", "32,16,8",
               "--out", str(table)]
        print("profiling:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return table


def pretrained(base, seed: int, space: str, out: Path, log) -> str:
    """The backbone pretrained for base.epochs_pretrain epochs (cached: a finished run is reused)."""
    from search.train import run_search

    run_dir = out / f"pretrain-{space}-s{seed}"
    config = replace(base, target="100%flops", search_space=space, seed=seed, epochs_search=0, epochs_finetune=0,
                     latency_table=None, streams="free", price="slope")
    if not (run_dir / "model.pt").exists():
        run_search(config, run_dir, resume=(run_dir / "checkpoint.pt").exists(), log=log)
    return str(run_dir / "model.pt")


def run_arm(base, arm: str, seed: int, target: str, out: Path, log, pretrain: str = "cached") -> Row:
    from search.train import run_search

    name = f"{target}-{arm}-s{seed}"
    run_dir = out / name
    streams = ARM_STREAMS.get(arm, "free")
    if arm == "uniform":
        config = replace(base, target=target, seed=seed, baseline="uniform", search_space="channels", streams=streams,
                         price="slope")
    else:
        weights = pretrained(base, seed, ARM_SPACE[arm], out, log) if pretrain == "cached" else None
        config = replace(base, target=target, seed=seed, pretrained=weights, search_space=ARM_SPACE[arm],
                         baseline="l1" if arm == "l1" else None, streams=streams, price=ARM_PRICE.get(arm, "slope"),
                         value=ARM_VALUE.get(arm, "fisher"))
    t0 = time.perf_counter()
    finished = (run_dir / "arch.json").exists()
    result = run_search(config, run_dir, resume=(run_dir / "config.json").exists(), log=log)
    seconds = json.loads((run_dir / "wall.json").read_text())["seconds"] if finished else time.perf_counter() - t0
    if not finished:
        (run_dir / "wall.json").write_text(json.dumps({"seconds": seconds}))
    arch = json.loads((run_dir / "arch.json").read_text())
    search = arch["search"]
    note = {"uniform": f"width x{search.get('baseline_share')}",
            "l1": f"kept {search.get('baseline_share', 0) or 0:.1%} of every layer"}.get(
        arm, f"reached the target after {result.search_epochs:.2f} search epochs"
             + ("; FALLBACK prune_to_target used" if search["pruned_to_target"] else ""))
    widths = [len(layer["active_out"]) for layer in arch["layers"]]
    return Row(target, arm, seed, result.val_accuracy, result.predicted["latency_ms"], result.predicted["flops"] / 1e6,
               result.predicted["params"], seconds, widths, note)


def table_markdown(rows: list[Row]) -> str:
    lines = ["| target | arm | seeds | top-1 mean | spread | predicted ms | MFLOPs | params | wall (min) | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r.target, r.arm) for r in rows}, key=lambda k: (k[0], ARMS.index(k[1])))
    for target, arm in keys:
        group = [r for r in rows if r.target == target and r.arm == arm]
        tops = [r.top1 * 100 for r in group]
        spread = f"{min(tops):.2f}-{max(tops):.2f}" if len(tops) > 1 else "-"
        ms = statistics.mean(r.latency_ms for r in group) if group[0].latency_ms is not None else float("nan")
        lines.append(f"| {target} | {arm} | {','.join(str(r.seed) for r in group)} | {statistics.mean(tops):.2f} | "
                     f"{spread} | {ms:.4f} | {statistics.mean(r.mflops for r in group):.2f} | "
                     f"{statistics.mean(r.params for r in group):,.0f} | "
                     f"{sum(r.seconds for r in group) / 60:.0f} | {'; '.join(r.note for r in group)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="default cifar10:<shared data>/cifar10")
    p.add_argument("--latency-table", default=None, help="default: profile this machine into --out")
    p.add_argument("--latency-share", type=float, default=0.5)
    p.add_argument("--flops-share", type=float, default=0.5)
    p.add_argument("--targets", default="latency,flops")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--train-subset", type=int, default=None)
    p.add_argument("--val-subset", type=int, default=None)
    p.add_argument("--epochs-pretrain", type=int, default=30)
    p.add_argument("--epochs-search", type=int, default=10)
    p.add_argument("--epochs-finetune", type=int, default=20)
    p.add_argument("--pretrain", choices=("cached", "inline"), default="cached",
                   help="cached: one pretrained backbone per seed (its own cosine to zero, as a user's pretrained "
                        "network), forked by every arm; inline: each arm pretrains in its own run, on one cosine "
                        "over all its epochs, as uniform trains")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--min-channels", default=None, help="the searches' per-layer floor (fgnas-search --min-channels); "
                                                         "default: fgnas-search's")
    p.add_argument("--precision", default="auto")
    p.add_argument("--out", default="runs/bench-cifar10")
    p.add_argument("--allow-other-device", action="store_true",
                   help="skip the table's reference-probe check: for a second benchmark run on the other core, whose "
                        "training slows the probe beyond its bound on a 2-core machine (check the table first)")
    args = p.parse_args(argv)
    data = args.data or f"cifar10:{shared_data() / 'cifar10'}"
    if args.data is None and not (shared_data() / "cifar10").exists():
        print(f"search_cifar10: no CIFAR-10 under {shared_data()}; set FGNAS_SHARED_DATA", file=sys.stderr)
        return 2
    import torch

    from profiler.latency.table import LatencyTable
    from search.backbones import create_backbone
    from search.resources import create_resource
    from search.train import SearchConfig

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    targets = args.targets.split(",")
    table_path = args.latency_table
    if "latency" in targets and table_path is None:
        table_path = str(profile_table(out))
    base = SearchConfig(target="", backbone="resnet20", data=data, latency_table=table_path,
                        epochs_pretrain=args.epochs_pretrain, epochs_search=args.epochs_search,
                        epochs_finetune=args.epochs_finetune, batch_size=args.batch_size, lr=args.lr,
                        train_subset=args.train_subset, val_subset=args.val_subset, precision=args.precision,
                        allow_other_device=args.allow_other_device,
                        **({"min_channels": args.min_channels} if args.min_channels else {}))
    # Absolute targets from the plain ResNet-20: a relative one would resolve against the kernels supernet's own
    # (3 operations a layer) resource for the FGNAS arm.
    plain = create_backbone("resnet20")
    full = {"flops": plain.full_resource(create_resource("flops"))}
    texts = {"flops": f"{args.flops_share * full['flops'] / 1e6:.4f}MFLOPs"}
    if table_path:
        table = LatencyTable.load(Path(table_path))
        full["latency_ms"] = plain.full_resource(create_resource("latency", table))
        texts["latency"] = f"{args.latency_share * full['latency_ms']:.6f}ms"
    header = (f"ResNet-20 on {data}, {cpu_name()}, {args.threads} thread(s), precision {args.precision}; epochs "
              f"{args.epochs_pretrain} + {args.epochs_search} + {args.epochs_finetune} ({args.pretrain} pretraining); "
              f"table {table_path} "
              f"(unpruned {full.get('latency_ms', float('nan')):.4f} ms, {full['flops'] / 1e6:.2f} MFLOPs); targets "
              f"{', '.join(texts[t] for t in targets)}")
    print(header, flush=True)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for target in targets:
            for arm in args.arms.split(","):
                row = run_arm(base, arm, seed, texts[target], out, lambda line: print("  " + line, flush=True),
                              args.pretrain)
                rows.append(row)
                print(f"{row.target} {row.arm} seed {row.seed}: top-1 {row.top1:.4f}, {row.latency_ms} ms, "
                      f"{row.mflops:.2f} MFLOPs, widths {row.widths} ({row.note})", flush=True)
                (out / "results.json").write_text(json.dumps(
                    {"header": header, "args": vars(args), "rows": [asdict(r) for r in rows]}, indent=2))
    print("\n" + header + "\n\n" + table_markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
