"""`fgnas-search`: search a network that meets a latency, FLOPs or params target (a thin layer over run_search)."""
from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import fields

from profiler.cli_parser import OneLineParser
from profiler.errors import FgnasError
from search.baselines import BASELINES
from search.dynamics import VALUES
from search.precision import PRECISIONS
from search.pretrained import LAYOUTS
from search.summary import format_summary
from search.train import PRICES, STREAMS, SearchConfig, run_search

# CLI flag -> SearchConfig field, for the flags whose names differ.
FIELD_OF = {"lambda": "lam"}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="fgnas-search",
        description="FGNAS: pretrain a backbone, search per-channel gated operations until the target is met, "
                    "fine-tune, and write arch.json, weights, metrics and plots into a run directory.",
        argument_default=argparse.SUPPRESS,  # only flags given on the command line override a resumed run's config
        epilog="example: fgnas-search --latency-table device_tables/host-amd-f26m2s1.json --target 5ms "
               "--backbone resnet20 --data cifar10:../shared/data/cifar10")
    d = SearchConfig(target="")
    p.add_argument("--target", help="53ms, 150MFLOPs, 1.2GFLOPs, 2.7Mparams, or 60%%latency (share of the unpruned "
                                    "network)")
    p.add_argument("--backbone", help=f"registered backbone (default {d.backbone}): digits, resnet20, vgg16, ...")
    p.add_argument("--search-space", help=f"channels (FGNAS(P)), kernels, table2, ... or 'k=1,3,5;act=relu,prelu' "
                                          f"(default {d.search_space})")
    p.add_argument("--data", help=f"digits | cifar10:PATH | imagefolder:PATH (default {d.data})")
    p.add_argument("--latency-table", help="device_tables/<device>.json (needed for a latency target)")
    p.add_argument("--allow-other-device", action="store_true",
                   help="use a host latency table profiled on another machine (or one whose reference probe now runs "
                        "at another speed); the warning is recorded in arch.json")
    p.add_argument("--width", type=float, help=f"backbone width multiplier (default {d.width})")
    p.add_argument("--epochs-pretrain", type=int, help=f"default {d.epochs_pretrain}")
    p.add_argument("--epochs-search", type=int, help=f"the most the search may take (default {d.epochs_search})")
    p.add_argument("--epochs-finetune", type=int, help=f"default {d.epochs_finetune}")
    p.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=float, help=f"weights' learning rate (default {d.lr})")
    p.add_argument("--gate-lr", type=float, help=f"how far a gate's margin moves a step, relative to the network's "
                                                 f"rms push (default {d.gate_lr})")
    p.add_argument("--lambda", type=float, help="starting regularizer weight, loss per param / FLOP / ms (default: "
                                                "from the data, see search/dynamics.py)")
    p.add_argument("--lambda-schedule", choices=("auto", "fixed"), help="auto: adapt lambda to follow a planned "
                                                                         "descent to the target (default); fixed")
    p.add_argument("--plan-share", type=float, help=f"the planned descent reaches the target after this share of "
                                                    f"--epochs-search (default {d.plan_share})")
    p.add_argument("--min-channels", help=f"per-layer floor: a share of each layer's channels (below 1) or a count "
                                          f"(default {d.min_channels})")
    p.add_argument("--max-off-share", type=float, help=f"the most of a layer's channels that may switch off in one "
                                                       f"step (default {d.max_off_share})")
    p.add_argument("--streams", choices=STREAMS, help="tied (default): the layers that write one residual "
                                                              "stream keep one channel set (exports without SPLIT_V/"
                                                              "CONCATENATION runs); free: each layer its own subset")
    p.add_argument("--price", choices=PRICES, help="slope (default): a gate costs the resource's slope; steps: what "
                                                   "switching it changes in the hard resource, so that a channel "
                                                   "opening an output tile pays for the tile (channel search spaces)")
    p.add_argument("--value", choices=VALUES, help="fisher (default): a channel is worth the loss its removal adds "
                                                   "(Fisher information); relative: that over its layer's mean, so a "
                                                   "residual block's inner convs are not emptied for the stream (but "
                                                   "the dearest layers fall to their floor)")
    p.add_argument("--baseline", choices=BASELINES, help="instead of searching, meet the target the simple way: "
                                                         "uniform (the widest width multiplier, trained from scratch "
                                                         "for every epoch) or l1 (prune the pretrained backbone "
                                                         "uniformly by filter L1 norm, fine-tune)")
    p.add_argument("--seed", type=int, help=f"default {d.seed}")
    p.add_argument("--device", help="cpu or cuda (default cpu)")
    p.add_argument("--precision", choices=PRECISIONS, help="auto (default): bf16 + channels_last on a CPU with native "
                                                           "bfloat16, fp16 on CUDA, else fp32")
    p.add_argument("--train-subset", type=int, help="train on a seeded random subset of N images")
    p.add_argument("--val-subset", type=int, help="validate on a seeded random subset of N images")
    published = ", ".join(sorted({backbone for backbone, _ in LAYOUTS}))
    p.add_argument("--pretrained", help=f"weights to start from instead of pretraining: a checkpoint or model.pt of "
                                        f"this tool, or a torchvision state dict (.pth) for {published}")
    p.add_argument("--bn-calibration-images", type=int,
                   help=f"training images that re-estimate BatchNorm statistics before each evaluation "
                        f"(default {d.bn_calibration_images})")
    p.add_argument("--out", help="run directory (default runs/<backbone>-<target>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR where it stopped")
    p.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    return p


def config_from_args(args: argparse.Namespace, base: dict | None) -> SearchConfig:
    """The stored config of a resumed run (or the defaults), overridden by the flags given."""
    names = {f.name for f in fields(SearchConfig)}
    merged = dict(base or {})
    for key, value in vars(args).items():
        name = FIELD_OF.get(key, key)
        if name in names:
            merged[name] = value
    if "target" not in merged:
        raise FgnasError("give a target, e.g. --target 5ms, --target 150MFLOPs or --target 2.7Mparams")
    return SearchConfig.from_dict(merged)


_DASHED_VALUE = re.compile(r"^-[0-9.]")


def attach_dashed_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`--target -5ms` -> `--target=-5ms`. argparse takes a word that starts with '-' and is not a plain number
    (`-5ms`, `-.5ms`) for an option and stops with "expected one argument"; attached, the value reaches our own
    validation, which names the problem in one line."""
    takes_value = {flag for action in parser._actions if action.option_strings and action.nargs is None
                   for flag in action.option_strings}
    out: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":  # everything after it is positional, as argparse reads it
            return out + argv[i:]
        if word in takes_value and i + 1 < len(argv) and _DASHED_VALUE.match(argv[i + 1]):
            out.append(f"{word}={argv[i + 1]}")
            i += 2
            continue
        out.append(word)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(attach_dashed_values(parser, list(sys.argv[1:] if argv is None else argv)))
    quiet = getattr(args, "quiet", False)
    try:
        resume = getattr(args, "resume", None)
        if resume is not None:
            from search.rundir import RunDir

            run_dir = resume
            config = config_from_args(args, RunDir(resume).stored_config())
        else:
            config = config_from_args(args, None)
            run_dir = getattr(args, "out", None) or (
                f"runs/{config.backbone}-{config.target}-{time.strftime('%Y%m%d-%H%M%S')}")
        from tqdm import tqdm

        log = (lambda _: None) if quiet else tqdm.write
        result = run_search(config, run_dir, resume=resume is not None, log=log, progress=not quiet)
    except FgnasError as exc:
        print(f"fgnas-search: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("fgnas-search: interrupted before training started; nothing to resume", file=sys.stderr)
        return 130
    print(format_summary(result.summary, result.predicted, result.target, result.val_accuracy, result.method))
    print(f"run directory: {result.run_dir} (arch.json, model.pt, metrics.csv, plots/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
