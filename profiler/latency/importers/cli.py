"""`fgnas-table import --format proxylessnas|ofa FILE_OR_DIR --device NAME [--out PATH]` (registered in cli_table)."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "import a published phone latency lookup table (ProxylessNAS, once-for-all) as a latency table"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=Path, help="the published lookup-table file (for ofa: a file or its directory)")
    p.add_argument("--format", required=True, help="proxylessnas (mobile_trim.yaml) or ofa (<R>_lookup_table.yaml)")
    p.add_argument("--device", required=True, help="name of the device the table describes, e.g. pixel1")
    p.add_argument("--out", type=Path, help="where to write the table (default device_tables/DEVICE.json)")
    p.add_argument("--transfer-ops", type=Path, metavar="TABLE",
                   help="a measured table (e.g. device_tables/host-amd-f26m2s1.json) whose ops the published table "
                        "lacks (SOFTMAX, MUL, HARD_SWISH, ...) are transferred, scaled by the two tables' ADD ratio")
    p.add_argument("--in-network", type=Path, metavar="FILE",
                   help="Single-Path NAS pixel1_runtime_model.json: derive what blocks cost inside a whole network "
                        "relative to alone (--format proxylessnas)")
    p.add_argument("--force", action="store_true", help="replace the table at --out if there is one (a measured "
                                                        "table is otherwise never overwritten by an import)")


def summary_text(table, out: Path) -> str:
    source = table.source
    held = source["validation"]["held_out"]
    return (f"wrote {out}: {len(table.conditions)} conditions, {len(table.ops)} ops from {source['format']} "
            f"({', '.join(f['name'] for f in source['files'][:3])}{', ...' if len(source['files']) > 3 else ''}); "
            f"held-out block error ({source['validation']['kind'].split(':')[0]}): median "
            f"{100 * held['median']:.1f}%, 90th percentile {100 * held['p90']:.1f}% over {held['n']} blocks")


def check_out(out: Path, force: bool) -> None:
    """Refuse, before any work, an --out that is a raw log or a directory, or an existing file without --force."""
    from profiler.errors import FgnasError
    from profiler.measure.rawlog import RAW_LOG_SUFFIX

    if out.name.endswith(RAW_LOG_SUFFIX) or out.is_dir():
        raise FgnasError(f"--out {out} is {'a directory' if out.is_dir() else 'a raw log name'}: pass a table path, "
                         f"e.g. device_tables/NAME.json")
    if out.exists() and not force:
        raise FgnasError(f"{out} already exists: pass --force to replace it, or choose another --out")


def run(args: argparse.Namespace) -> int:
    from profiler.latency.importers.table_import import import_table

    out = args.out or Path("device_tables") / f"{args.device}.json"
    check_out(out, args.force)
    table = import_table(args.format, args.source, args.device, args.transfer_ops, args.in_network)
    table.save(out)
    print(summary_text(table, out))
    return 0
