"""Behaviour check for refactoring the cost model: every number the latency model and the search's resources give,
dumped to JSON at one commit and compared with another's.

Numbers dumped, per latency table given (--table, repeatable):
  * random convs, several per condition of the table and some of conditions it lacks (its fallbacks), priced with the
    selected and the affine fit (LatencyTable.predict), and through the differentiable latency
    (LatencyTable.latency_torch: value and d/dcin, d/dcout);
  * whole networks: the ops of the raw log's calibration networks (`--raw-log`, each op priced alone, the invoke
    overhead once, the in-network cost) and .tflite models (`--models DIR`) through
    profiler.latency.tflite_reader.predict_model and export.report.price_model;
and once, for every backbone (search.backbones.BACKBONES) x search space (search.search_space.SEARCH_SPACES): the
search's params, FLOPs and, per table, latency of the full network, of random gate patterns, of the smallest
network, the soft resource, and the sum of the cost gradients (search.network.SearchNetwork); and the per-layer
summary (search.summary.layer_rows) and export's assembly choice (export.assembly.shared_layers) of random
architectures. A value a table cannot give is dumped as its error message, so an error must stay the same error.

Networks are built on PyTorch's meta device (no weights: only their graph and gates are used), so MobileNetV2's
`table2` space (36 operations per layer, ~4e9 weights) fits in memory.

    .venv/bin/python benchmarks/cost_equivalence.py --dump /tmp/new.json --table T1 --table T2 ...
    .venv/bin/python benchmarks/cost_equivalence.py --compare /tmp/base.json /tmp/new.json

Run it with the same tables, raw log and models on both commits (copy them aside first: a re-profile changes them).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONVS_PER_CONDITION = 2
CONVS_ELSEWHERE = 150  # random conditions: the table's fallbacks, or its error
GATE_PATTERNS = 3
RANDOM_ARCHS = 2


def _value(fn, *args):
    """fn(*args) as a JSON value: a number, a list of them, or the error's message (FgnasError and the like)."""
    try:
        result = fn(*args)
    except Exception as exc:  # an error is a value to compare too
        return f"error: {type(exc).__name__}: {exc}"
    return result


def _random_spec(rng: random.Random, key):
    from profiler.spec import ConvSpec

    if key.conv_type == "depthwise":
        c = rng.randint(1, 512)
        return ConvSpec(key.h, key.w, c, c, key.kernel, key.stride, c, key.activation)
    g = key.groups if key.conv_type == "grouped" else 1
    cin, cout = g * rng.randint(1, 512 // g), g * rng.randint(1, 512 // g)
    return ConvSpec(key.h, key.w, cin, cout, key.kernel, key.stride, g, key.activation)


def _random_key(rng: random.Random):
    from profiler.spec import ACTIVATIONS, ConditionKey

    hw = rng.choice([1, 2, 4, 7, 8, 14, 16, 28, 32, 56, 112, 224])
    return ConditionKey(hw, hw, rng.choice([1, 3, 5, 7]), rng.choice([1, 2]), rng.choice(["normal", "depthwise"]),
                        rng.choice(ACTIVATIONS))


def conv_numbers(table, rng: random.Random) -> dict:
    import torch

    keys = sorted(table.conditions, key=str)
    keys = [k for k in keys for _ in range(CONVS_PER_CONDITION)] + [_random_key(rng) for _ in range(CONVS_ELSEWHERE)]
    out = {}
    for i, key in enumerate(keys):
        spec = _random_spec(rng, key)

        def torch_latency(spec=spec):
            cin = torch.tensor(float(spec.cin), requires_grad=True)
            cout = torch.tensor(float(spec.cout), requires_grad=True)
            ms = table.latency_torch(spec, cin, cout)
            d_cin, d_cout = torch.autograd.grad(ms, [cin, cout], allow_unused=True)
            return [float(ms), 0.0 if d_cin is None else float(d_cin), 0.0 if d_cout is None else float(d_cout)]

        out[f"{i}:{spec}"] = {"selected": _value(table.predict_ms, spec),
                              "affine": _value(table.predict_ms, spec, "affine"),
                              "torch": _value(torch_latency)}
    return out


def network_numbers(table, raw_log: Path | None, models: Path | None) -> dict:
    from export.report import price_model
    from profiler.latency.table import lowest_medians
    from profiler.latency.tflite_reader import predict_model
    from profiler.model_ops import op_from_dict, whole_model_ms

    out = {}
    if raw_log is not None:
        records = [json.loads(line) for line in raw_log.read_text().splitlines() if line.strip()]
        for net_id, (record, _) in sorted(lowest_medians(records, "net").items()):
            ops = [op_from_dict(d) for d in record["ops"]]

            def priced(ops=ops):
                op_ms = [table.price_op(op)[0] for op in ops]
                return [whole_model_ms(op_ms, table.invoke_overhead_ms), table.network_ms(ops), *op_ms]

            out[f"raw:{net_id}"] = _value(priced)
    for path in sorted(models.glob("*.tflite")) if models is not None else []:

        def predicted(path=path):
            model = predict_model(table, path)
            return [p.ms for p in model.ops] + [model.total_ms, model.network_ms]

        def report(path=path):
            priced = price_model(table, path)
            return [priced.ms, list(priced.unpriced)]

        out[f"predict_model:{path.name}"] = _value(predicted)
        out[f"price_model:{path.name}"] = _value(report)
    return out


def _meta_network(backbone: str, space: str):
    """The backbone's SearchNetwork with its weights on the meta device; gates and masks real."""
    import torch

    from search.backbones import create_backbone

    with torch.device("meta"):
        net = create_backbone(backbone, space)
    for layer in net.layers.values():
        layer.psi = torch.nn.Parameter(torch.zeros(layer.psi.shape))
        layer.depthwise = torch.tensor([[float(op.conv_type == "depthwise")] for op in layer.node.ops])
        layer.fisher = torch.zeros(layer.psi.shape[:2])
    return net


def _random_gates(net, rng: random.Random, soft: bool) -> None:
    """Per layer 1..3 operations on, each keeping a random share of the channels (psi margins: +-1, or random
    reals for the soft resource)."""
    import torch

    g = torch.Generator().manual_seed(rng.randrange(2 ** 31))
    with torch.no_grad():
        for layer in net.layers.values():
            m, cout = layer.psi.shape[:2]
            on = torch.zeros(m, cout, dtype=torch.bool)
            for i in torch.randperm(m, generator=g)[:rng.randint(1, 3)]:
                on[i] = torch.rand(cout, generator=g) < rng.uniform(0.05, 0.9)
                on[i, rng.randrange(cout)] = True
            margin = torch.where(on, 1.0, -1.0)
            if soft:
                margin = margin * (0.1 + torch.rand(m, cout, generator=g))
            layer.psi[..., 0] = margin / 2
            layer.psi[..., 1] = -margin / 2
        net.ensure_alive()


def search_numbers(tables: dict, rng: random.Random) -> dict:
    import torch

    from search.backbones import BACKBONES
    from search.resources import create_resource
    from search.search_space import SEARCH_SPACES

    out = {}
    for backbone in BACKBONES:
        for space in SEARCH_SPACES:
            net = _meta_network(backbone, space)
            resources = {"params": create_resource("params"), "flops": create_resource("flops")}
            resources.update({f"latency:{name}": _value(create_resource, "latency", t) for name, t in tables.items()})
            row = {}
            for rname, resource in resources.items():
                if isinstance(resource, str):
                    row[rname] = resource
                    continue
                values = {"full": _value(net.full_resource, resource), "min": _value(net.min_resource, resource)}
                state = rng.getstate()
                for p in range(GATE_PATTERNS):
                    _random_gates(net, rng, soft=False)
                    values[f"hard{p}"] = _value(net.hard_resource, resource)
                    values[f"grad{p}"] = _value(_gradient_sums, net, resource)
                _random_gates(net, rng, soft=True)
                net.set_search_mode("search")
                values["soft"] = _value(_soft, net, resource)
                rng.setstate(state)  # the same gate patterns for every resource
                row[rname] = values
            _random_gates(net, rng, soft=False)
            row["arch"] = _arch_numbers(net, tables)
            out[f"{backbone}:{space}"] = row
            torch.set_grad_enabled(True)
    return out


def _gradient_sums(net, resource) -> list[float]:
    return [float(g.sum()) for g in net.cost_gradients(resource).values()]


def _soft(net, resource) -> float:
    return float(net.soft_resource(resource).detach())


def _arch_numbers(net, tables: dict) -> dict:
    from export.assembly import shared_layers
    from search.summary import layer_rows

    arch = _value(net.to_arch)
    if isinstance(arch, str):
        return {"to_arch": arch}
    out = {"predicted": arch["predicted"]}
    for name, table in tables.items():
        out[f"rows:{name}"] = _value(layer_rows, arch, table)
        out[f"shared:{name}"] = _value(lambda t: sorted(shared_layers(arch, t)), table)
    out["rows"] = _value(layer_rows, arch)
    return out


def dump(args: argparse.Namespace) -> dict:
    from profiler.latency.table import LatencyTable

    tables = {Path(p).stem: LatencyTable.load(Path(p)) for p in args.table}
    result = {"tables": {}}
    for name, table in tables.items():
        rng = random.Random(f"convs:{name}")
        raw = args.raw_log if args.raw_log and Path(args.raw_log).stem.split(".")[0] == name else None
        result["tables"][name] = {"convs": conv_numbers(table, rng),
                                  "networks": network_numbers(table, raw, args.models)}
    result["search"] = search_numbers(tables, random.Random("search"))
    return result


def _leaves(value, path=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{path}/{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, value


def compare(base: dict, new: dict, tolerance: float) -> int:
    """Print how many numbers agree within `tolerance` relative, the largest difference, and every disagreement
    (gradients separately: the search runs in float32, where a reordered product may move them by an ulp)."""
    old, now = dict(_leaves(base)), dict(_leaves(new))
    worst = {"values": (0.0, None), "gradients": (0.0, None)}
    counted = {"values": 0, "gradients": 0}
    bad = []
    for path in sorted(set(old) | set(now)):
        a, b = old.get(path, "<absent>"), now.get(path, "<absent>")
        kind = "gradients" if "/grad" in path or "/torch[" in path and not path.endswith("[0]") else "values"
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            counted[kind] += 1
            rel = 0.0 if a == b else abs(a - b) / max(abs(a), abs(b))
            if math.isnan(rel) or rel > worst[kind][0]:
                worst[kind] = (rel, path)
            if kind == "values" and not rel <= tolerance:
                bad.append(f"{path}: {a!r} -> {b!r} (relative {rel:.3g})")
        elif a != b:
            bad.append(f"{path}: {a!r} -> {b!r}")
    for kind in ("values", "gradients"):
        rel, path = worst[kind]
        print(f"{kind}: {counted[kind]} numbers compared, largest relative difference {rel:.3g}"
              + (f" at {path}" if path else ""))
    print(f"{len(bad)} differences beyond {tolerance:g} relative (or non-numbers that differ)")
    for line in bad[:50]:
        print("  " + line)
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dump", type=Path, help="write the numbers of this checkout here")
    p.add_argument("--table", action="append", default=[], help="a latency table (repeatable)")
    p.add_argument("--raw-log", type=Path, help="a table's raw log: its calibration networks (ops in the record)")
    p.add_argument("--models", type=Path, help="a folder of .tflite models to price whole")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("BASE", "NEW"))
    p.add_argument("--tolerance", type=float, default=1e-9)
    args = p.parse_args()
    if args.compare:
        base, new = (json.loads(path.read_text()) for path in args.compare)
        return compare(base, new, args.tolerance)
    if not args.dump or not args.table:
        p.error("--dump needs at least one --table (or use --compare BASE NEW)")
    args.dump.write_text(json.dumps(dump(args), indent=0, allow_nan=True) + "\n")
    print(f"wrote {args.dump}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
