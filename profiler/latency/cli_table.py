"""`fgnas-table`: look at, compare and query latency tables. A thin layer over profiler.latency.table and tflite_reader.

Subcommands live in a registry (name -> Subcommand) so that other commands (e.g. `import`) are one more entry.
Neither torch nor tensorflow is imported here.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from profiler.cli_parser import OneLineParser
from profiler.errors import FgnasError
from profiler.latency.importers import cli as import_cli
from profiler.latency.table import FITS, LatencyTable
from profiler.spec import ConvSpec

WORST_FITS = 10


@dataclass(frozen=True)
class Subcommand:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


SUBCOMMANDS: dict[str, Subcommand] = {}


def register_subcommand(name: str, subcommand: Subcommand) -> None:
    SUBCOMMANDS[name] = subcommand


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def conditions_frame(table: LatencyTable):
    import pandas as pd

    rows = [{"condition": str(key), "model": m.model, "cout_tile": m.cout_tile, "cin_tile": m.cin_tile,
             "tiles": _tiles_text(m), "n": m.n, "a_ms_per_mflop": m.a_ms_per_mflop, "b_ms": m.b_ms, "r2": m.r2,
             "mape": m.mape, "cv_mape": m.cv_mape, "affine_cv_mape": m.affine.cv_mape}
            for key, m in table.conditions.items()]
    return pd.DataFrame(rows, columns=["condition", "model", "cout_tile", "cin_tile", "tiles", "n", "a_ms_per_mflop",
                                       "b_ms", "r2", "mape", "cv_mape", "affine_cv_mape"])


def _tiles_text(model) -> str:
    """'cout 32 (16 below)/cin 1': the tiles, with a small tile where the condition has one."""
    def one(tile: int, small: int | None) -> str:
        return f"{tile} ({small} below)" if small else str(tile)

    return f"cout {one(model.cout_tile, model.cout_small_tile)}/cin {one(model.cin_tile, model.cin_small_tile)}"


def _source_text(source: dict) -> str:
    """Scalars on one line; nested provenance (files, fit, validation of an imported table) as indented JSON."""
    flat = ", ".join(f"{k}={v}" for k, v in source.items() if not isinstance(v, (dict, list)))
    nested = [f"  {k}: " + json.dumps(v, indent=2).replace("\n", "\n  ") for k, v in source.items()
              if isinstance(v, (dict, list))]
    return "\n".join([flat, *nested])


def show_text(table: LatencyTable) -> str:
    """The summary `fgnas-table show` prints: header, source, error summary, worst fits, ops."""
    import pandas as pd

    doc = table.doc
    lines = [f"table      {table.path}  (schema {doc['schema_version']}, version {doc['table_version']}, "
             f"created {doc['created']})",
             "device     " + ", ".join(f"{k}={v}" for k, v in doc["device"].items()),
             "source     " + _source_text(doc["source"]),
             "settings   " + ", ".join(f"{k}={v}" for k, v in doc["settings"].items()),
             f"raw log    {doc['raw_log']['path']} ({doc['raw_log']['records']} records, sha256 "
             f"{doc['raw_log']['sha256'][:12]}...)",
             f"hash       {doc['content_hash']}"]
    if doc.get("drift"):
        lines.append("drift      " + ", ".join(f"{k}={v}" for k, v in doc["drift"].items()))
    frame = conditions_frame(table)
    lines.append("")
    if frame.empty:
        lines.append("conditions: none")
    else:
        tiled = frame[frame["model"] == "tile"]
        lines.append(f"conditions: {len(frame)} ({len(tiled)} tile-aware, {len(frame) - len(tiled)} affine), "
                     f"{int(frame['n'].sum())} measurements")
        lines.append(f"cross-validated MAPE: selected mean {_pct(frame['cv_mape'].mean())} median "
                     f"{_pct(frame['cv_mape'].median())}; paper's affine mean {_pct(frame['affine_cv_mape'].mean())} "
                     f"median {_pct(frame['affine_cv_mape'].median())}")
        tiles = frame.groupby("tiles").size().sort_values(ascending=False)
        lines.append("tiles: " + ", ".join(f"{text}: {count}" for text, count in tiles.items()))
        knees = {(m.key.conv_type, m.key.kernel): m.knee for m in table.conditions.values() if m.knee}
        lines.append("weight knee: " + ("; ".join(f"{kind} k{kernel} over {k.mb:.3g} MB of weights "
                                                  f"+{100 * k.step:.0f}% +{100 * k.slope:.0f}% per doubling"
                                                  for (kind, kernel), k in sorted(knees.items())) or "none"))
        lines.append("")
        lines.append(f"worst {min(WORST_FITS, len(frame))} fits (by cross-validated MAPE):")
        worst = frame.sort_values("cv_mape", ascending=False, na_position="first").head(WORST_FITS)
        shown = worst[["condition", "model", "tiles", "n", "mape", "cv_mape", "affine_cv_mape"]]
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            lines.append(shown.to_string(index=False, float_format=lambda v: f"{100 * v:.1f}%"))
    lines.append("")
    if table.ops:
        ops = pd.DataFrame([{"op": op, "unit": m.unit, "a_ms_per_unit": m.a_ms_per_unit, "b_ms": m.b_ms, "n": m.n,
                             "mape": _pct(m.mape), "cv_mape": _pct(m.cv_mape)} for op, m in table.ops.items()])
        lines.append("ops:")
        lines.append(ops.to_string(index=False))
    else:
        lines.append("ops: none (models with non-conv ops cannot be priced)")
    lines.append("")
    lines.append("in-network cost: " + _network_text(table))
    return "\n".join(lines)


def _network_text(table: LatencyTable) -> str:
    net = table.network
    if net is None:
        return "none (no calibration networks in the sweep, or they did not lower the error of the ops' sum)"
    unpriced = (table.doc.get("network") or {}).get("unpriced_networks", 0)
    return (f"{net.weights_ms_per_mb:.4f} ms per MB of conv weights, {net.activation_ms_per_mb:.4f} ms per MB of an "
            f"op's activations beyond {net.activation_threshold_mb:g} MB; {net.n} calibration networks"
            f"{f' ({unpriced} left out: unpriced ops)' if unpriced else ''}: MAPE {_pct(net.ops_only_mape)} priced "
            f"by their ops alone, {_pct(net.cv_mape)} with it (leave-one-out)")


def _add_show(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", type=Path)


def _run_show(args: argparse.Namespace) -> int:
    print(show_text(LatencyTable.load(args.table)))
    return 0


def plot_table(table: LatencyTable, out_dir: Path) -> list[Path]:
    """One PNG per condition: the measurements against exact FLOPs with the paper's fit, and against tiled FLOPs
    with the selected fit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from profiler.latency.fit import tiled_mflops
    from profiler.latency.table import lowest_medians
    from profiler.measure.rawlog import read_records

    if table.source.get("kind") == "imported":
        raise FgnasError(f"{table.path} is an imported table: it has no measurements of single convs to plot")
    raw = table.raw_log_file
    if raw is None or not raw.is_file():
        raise FgnasError(f"raw log {raw} not found: plot needs the measurements the table was fitted to")
    if table.path is not None and not raw.is_relative_to(Path(table.path).parent.resolve()):
        # a table is data, not a licence to read any file: its raw log sits beside it (profiler.measure.rawlog)
        raise FgnasError(f"{table.path}: raw_log.path {table.doc['raw_log']['path']!r} points outside the table's "
                         f"folder: restore the table from git or re-profile the device")
    samples: dict = {}
    for record, median in lowest_medians(read_records(raw), "conv").values():
        spec = ConvSpec.from_dict(record["spec"])
        samples.setdefault(spec.condition, []).append((spec, median))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FgnasError(f"cannot create {out_dir}: {exc.strerror}; choose a writable --out") from exc
    written = []
    for key, model in table.conditions.items():
        points = samples.get(key, [])
        if not points:
            continue
        specs, ms = zip(*points)
        exact = np.array([tiled_mflops(s) for s in specs])
        tiled = np.array([tiled_mflops(s, model.cout_tile, model.cin_tile) for s in specs])
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        grid = np.linspace(0, exact.max() * 1.05, 50)
        left.scatter(exact, ms, s=14, label="measured")
        left.plot(grid, model.affine.a * grid + model.affine.b, "r-",
                  label=f"paper's affine fit (CV {_pct(model.affine.cv_mape)})")
        left.set_xlabel("MFLOPs")
        left.set_ylabel("latency (ms)")
        left.legend(fontsize=8)
        grid = np.linspace(0, tiled.max() * 1.05, 50)
        right.scatter(tiled, ms, s=14, label="measured")
        right.plot(grid, model.a_ms_per_mflop * grid + model.b_ms, "g-",
                   label=f"{model.model} fit, tiles {model.cout_tile}/{model.cin_tile} (CV {_pct(model.cv_mape)})")
        right.set_xlabel(f"MFLOPs on channels rounded to cout {model.cout_tile}, cin {model.cin_tile}")
        right.legend(fontsize=8)
        fig.suptitle(str(key))
        fig.tight_layout()
        path = out_dir / f"{str(key).replace(':', '_')}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def _add_plot(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", type=Path)
    p.add_argument("--out", type=Path, required=True, help="directory for the PNGs")


def _run_plot(args: argparse.Namespace) -> int:
    written = plot_table(LatencyTable.load(args.table), args.out)
    print(f"wrote {len(written)} plots to {args.out}")
    return 0


def _reference_spec(key) -> ConvSpec:
    """A typical conv of a condition (64 channels in and out) at which to compare two tables' predictions."""
    groups = key.groups if key.conv_type == "grouped" else (64 if key.conv_type == "depthwise" else 1)
    channels = max(64, groups)
    return ConvSpec(key.h, key.w, channels, channels, key.kernel, key.stride, groups, key.activation)


def diff_text(a: LatencyTable, b: LatencyTable) -> str:
    """What changed from table A to table B: metadata, conditions added/removed, fits that moved."""
    import pandas as pd

    da, db = a.doc, b.doc
    lines = [f"A: {a.path} (version {da['table_version']}, {da['created']}, device {da['device'].get('name')})",
             f"B: {b.path} (version {db['table_version']}, {db['created']}, device {db['device'].get('name')})"]
    for section in ("device", "settings", "source"):
        keys = sorted(set(da[section]) | set(db[section]))
        changed = [f"{k}: {da[section].get(k)!r} -> {db[section].get(k)!r}" for k in keys
                   if da[section].get(k) != db[section].get(k)]
        lines.append(f"{section}: " + ("unchanged" if not changed else "; ".join(changed)))
    only_a = sorted(str(k) for k in set(a.conditions) - set(b.conditions))
    only_b = sorted(str(k) for k in set(b.conditions) - set(a.conditions))
    lines.append(f"conditions only in A ({len(only_a)}): {', '.join(only_a) or '-'}")
    lines.append(f"conditions only in B ({len(only_b)}): {', '.join(only_b) or '-'}")
    rows = []
    for key in set(a.conditions) & set(b.conditions):
        ma, mb = a.conditions[key], b.conditions[key]
        spec = _reference_spec(key)
        pa, pb = ma.predict_ms(spec), mb.predict_ms(spec)
        rows.append({"condition": str(key), "ms@64ch A": pa, "ms@64ch B": pb, "change": pb / pa - 1,
                     "tiles A": f"{ma.cout_tile}/{ma.cin_tile}", "tiles B": f"{mb.cout_tile}/{mb.cin_tile}",
                     "cv A": _pct(ma.cv_mape), "cv B": _pct(mb.cv_mape)})
    if rows:
        frame = pd.DataFrame(rows)
        frame = frame.reindex(frame["change"].abs().sort_values(ascending=False).index)
        lines.append(f"common conditions ({len(frame)}): prediction at 64 channels, largest changes first")
        frame["change"] = frame["change"].map(lambda v: f"{100 * v:+.1f}%")
        with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 500):
            lines.append(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    op_lines = []
    for op in sorted(set(a.ops) | set(b.ops)):
        if op not in a.ops or op not in b.ops:
            op_lines.append(f"  {op}: only in {'A' if op in a.ops else 'B'}")
        elif a.ops[op] != b.ops[op]:
            oa, ob = a.ops[op], b.ops[op]
            op_lines.append(f"  {op}: a {oa.a_ms_per_unit:.3g} -> {ob.a_ms_per_unit:.3g} ms/{oa.unit}, "
                            f"b {oa.b_ms:.4f} -> {ob.b_ms:.4f} ms")
    lines.append("ops: " + ("unchanged" if not op_lines else "\n" + "\n".join(op_lines)))
    return "\n".join(lines)


def _add_diff(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)


def _run_diff(args: argparse.Namespace) -> int:
    print(diff_text(LatencyTable.load(args.a), LatencyTable.load(args.b)))
    return 0


def _add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", type=Path)
    p.add_argument("model", type=Path, nargs="?", help="a float32 .tflite model")
    p.add_argument("--conv", help="one layer instead of a model: HxWxCIN:COUT:kK:sS[:dw][:act], e.g. 28x28x64:96:k3:s1")
    p.add_argument("--fit", choices=FITS, default="selected", help="'affine' uses the paper's plain fit")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--allow-other-device", action="store_true",
                   help="price with a host table profiled on another machine (or whose reference probe now runs at "
                        "another speed here); the warning goes to stderr and into --json's device_check")


def _run_predict(args: argparse.Namespace) -> int:
    from profiler.latency.device_check import check_record, check_table_device

    if (args.model is None) == (args.conv is None):
        raise FgnasError("give either a MODEL.tflite or --conv HxWxCIN:COUT:kK:sS[:dw][:act], not both or neither")
    table = LatencyTable.load(args.table)
    check = check_table_device(table, allow_other_device=args.allow_other_device)  # a host table: this machine's?
    if check is not None and check.warning:
        print(f"fgnas-table: warning: {check.warning}", file=sys.stderr)
    if args.conv is not None:
        from profiler.latency.tflite_reader import conv_text

        try:
            spec = ConvSpec.parse(args.conv)
        except ValueError as exc:
            raise FgnasError(str(exc)) from None
        p = table.predict(spec, args.fit)
        if args.json:
            print(json.dumps({"conv": conv_text(spec), "condition": str(p.key), "used_condition": str(p.used_key),
                              "ms": p.ms, "fallback": p.fallback, "fit": args.fit,
                              "device_check": check_record(check)}))
        else:
            print(f"{conv_text(spec)}  {p.ms:.4f} ms  ({p.fallback or 'condition ' + str(p.key)})")
        return 0
    from profiler.latency.tflite_reader import predict_model

    prediction = predict_model(table, args.model, args.fit)
    if args.json:
        print(json.dumps({**prediction.to_dict(), "fit": args.fit, "table": str(args.table),
                          "device_check": check_record(check)}, indent=1))
        return 0
    for p in prediction.ops:
        note = f"  [{p.fallback}]" if p.fallback else ""
        print(f"{p.index:4d}  {p.op:<22} {p.detail:<34} {p.ms:9.4f} ms  {p.provenance}{note}")
    print(f"total {prediction.total_ms:.3f} ms ({prediction.conv_ms:.3f} ms in convs, {len(prediction.ops)} ops, the "
          f"{prediction.invoke_overhead_ms * 1000:.2f} us invoke overhead in each op's figure counted once, "
          f"{prediction.network_ms:.3f} ms more inside one network)")
    return 0


register_subcommand("show", Subcommand("summarise a table: device, source, fit errors, worst fits", _add_show,
                                       _run_show))
register_subcommand("plot", Subcommand("one PNG per condition: measurements and fitted lines", _add_plot, _run_plot))
register_subcommand("diff", Subcommand("what changed between two tables", _add_diff, _run_diff))
register_subcommand("predict", Subcommand("predicted latency of a .tflite model or one --conv layer", _add_predict,
                                          _run_predict))
register_subcommand("import", Subcommand(import_cli.HELP, import_cli.add_arguments, import_cli.run))


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="fgnas-table", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in SUBCOMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.help))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return SUBCOMMANDS[args.command].run(args)
    except FgnasError as exc:
        print(f"fgnas-table: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # the reader (e.g. `| head`) left early: nothing more to say; keep Python from complaining at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
