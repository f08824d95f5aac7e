"""Does export write the ops the lowering rules (profiler.lowering) list, the ones the search prices?

For random searched architectures of every backbone (export.sampling.random_searched: random operations and channels
per layer, drawn from --space), the .tflite that fgnas-export would write (physical pruning, the SHARED layers the
latency table picks, TF's converter) is read back op by op (profiler.latency.tflite_reader) and compared with
profiler.lowering.lower_arch of the same arch.json: type and shapes of every op. Prints, per backbone, how many
architectures agree exactly and, over the ones that do not, which ops only one side has and what the difference is
worth (both op lists priced whole by the table: LatencyTable.price_model).

Widths and input sizes are reduced (BACKBONE_ARGS) so one conversion takes about a second; the rules do not depend
on them.

    .venv/bin/python benchmarks/lowering_equivalence.py --space kernels --count 20
    .venv/bin/python benchmarks/lowering_equivalence.py --space channels --max-ops 1 --count 20

Writes OUT/lowering_equivalence_<space>.json (every architecture's differences).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from export.assembly import shared_layers  # noqa: E402
from export.files import atomic_write_json  # noqa: E402
from export.prune import prune  # noqa: E402
from export.sampling import random_searched  # noqa: E402
from export.tflite import convert_plan  # noqa: E402
from profiler.latency.table import LatencyTable  # noqa: E402
from profiler.latency.tflite_reader import read_ops  # noqa: E402
from profiler.lowering import differences, lower_arch  # noqa: E402
from search.backbones import BACKBONES  # noqa: E402

BACKBONE_ARGS = {
    "digits": {},
    "resnet20": {"width": 0.25, "input_size": 16},
    "vgg16": {"width": 0.0625},
    "mobilenetv2_cifar": {"width": 0.25, "input_size": 16},
    "mobilenetv2": {"width": 0.25, "input_size": 64},
}


def compare(backbone: str, seed: int, space: str, max_ops: int, table: LatencyTable | None, work: Path) -> dict:
    """One random architecture: the lowering's ops against the exported .tflite's."""
    net = random_searched(backbone, seed, max_ops=max_ops, keep=(0.05, 0.5), search_space=space,
                          **BACKBONE_ARGS.get(backbone, {}))
    arch = net.to_arch()
    shared = shared_layers(arch, table)
    path = work / f"{backbone}_{seed}.tflite"
    path.write_bytes(convert_plan(prune(arch, net.state_dict(), shared)))
    lowered = [item.op for item in lower_arch(arch, shared)]
    exported = read_ops(path)
    only_lowering, only_tflite = differences(lowered, exported)
    priced = {}
    if table is not None:  # what the difference is worth: both op lists priced whole by the table
        priced = {"rules_ms": table.price_model(lowered).total_ms, "tflite_ms": table.price_model(exported).total_ms}
    return {"backbone": backbone, "seed": seed, "ops": len(lowered), "shared_layers": sorted(shared), **priced,
            "only_lowering": [repr(k) for k in only_lowering], "only_tflite": [repr(k) for k in only_tflite],
            "lowering_kinds": dict(Counter(k[0] for k in only_lowering)),
            "tflite_kinds": dict(Counter(k[0] for k in only_tflite))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="kernels", help="the search space the random gates are drawn from")
    p.add_argument("--count", type=int, default=20, help="architectures per backbone")
    p.add_argument("--max-ops", type=int, default=2, help="operations kept per layer, at most")
    p.add_argument("--backbone", action="append", help="default: every registered backbone")
    p.add_argument("--table", type=Path, default=REPO / "device_tables" / "host-amd-f26m2s1.json",
                   help="picks the SHARED layers, as export does ('none': every layer SPLIT)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args()
    table = None if str(args.table) == "none" else LatencyTable.load(args.table)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.backbone or list(BACKBONES):
            found = [compare(backbone, seed, args.space, args.max_ops, table, Path(tmp)) for seed in range(args.count)]
            exact = sum(not r["only_lowering"] and not r["only_tflite"] for r in found)
            lowering = sum((Counter(r["lowering_kinds"]) for r in found), Counter())
            tflite = sum((Counter(r["tflite_kinds"]) for r in found), Counter())
            gap = [r["tflite_ms"] / r["rules_ms"] - 1 for r in found if r.get("rules_ms")]
            worth = f"; the .tflite priced {min(gap):+.1%}..{max(gap):+.1%} vs the rules' ops" if gap else ""
            print(f"{backbone:<18} {exact:>3}/{len(found)} identical op lists; ops only the rules list: "
                  f"{dict(lowering) or '-'}; only the .tflite has: {dict(tflite) or '-'}{worth}", flush=True)
            rows += found
    out = args.out / f"lowering_equivalence_{args.space}.json"
    atomic_write_json(out, {"space": args.space, "max_ops": args.max_ops, "count": args.count,
                            "table": str(args.table), "rows": rows})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
