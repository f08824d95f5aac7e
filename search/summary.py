"""The per-layer summary printed at the end of a search: channels, operations, params, FLOPs, predicted latency."""
from __future__ import annotations

from collections.abc import Mapping

import torch

from profiler.channel_order import LayerChannels, LayerRuns, layer_runs
from profiler.lowering import SHARED, MergeOps, shareable
from profiler.spec import flops, params
from search.arch import Arch, as_arch
from search.resources import LatencyResource, Resource, layer_assembly, pad_elements, pad_pixels
from search.targets import Target, format_resource


def assemblies(resource: Resource, arch: Arch | Mapping) -> dict[str, tuple[str, float]]:
    """search.resources.layer_assembly of every layer of a searched architecture with several producers (operations,
    and a skip input), in the channel orders export writes (profiler.channel_order): how export assembles it (SPLIT
    or SHARED) and what that costs beyond its convs."""
    arch = as_arch(arch)
    found: dict[str, tuple[str, float]] = {}

    def shared(channels: LayerChannels, split: LayerRuns) -> bool:
        layer = arch.layer(channels.name)
        if len(layer.ops) == 1 and layer.skip is None:
            return False
        gates = torch.zeros(len(layer.ops), layer.cout)
        for i, op in enumerate(layer.ops):
            gates[i, list(op.keep)] = 1.0
        specs = [op.spec if op.keep else None for op in layer.ops]
        with torch.no_grad():
            kind, cost = layer_assembly(resource, specs, torch.tensor(float(len(layer.active_in))), gates,
                                        *layer.conv_hw, shareable(layer), MergeOps.of(split))
        found[layer.name] = kind, float(cost)
        return kind == SHARED

    layer_runs([LayerChannels.of(layer) for layer in arch.layers], arch.input.channels, shared)
    return found


def layer_rows(arch: Arch | Mapping, table=None) -> list[dict]:
    """One row per arch.json layer: its kept operations' exact params and FLOPs (profiler.spec) and, with a latency
    table, their predicted latency, including the assembly of several producers (split/add/concat of its operations
    and skip input, or shared, whichever export will build) and the PADs export writes before some stride-2 convs.
    Layer figures are in-network costs (without the model's one invoke overhead, search.resources.LatencyResource);
    the head and that overhead are in the network's totals."""
    rows = []
    arch = as_arch(arch)
    latency = LatencyResource(table) if table is not None else None
    assembled = assemblies(latency, arch) if latency is not None else {}
    for layer in arch.layers:
        specs = [op.spec for op in layer.ops if op.spec is not None]
        kept = {f"{op.kind.short}{op.kernel}{'' if op.activation in ('relu', 'none') else '-' + op.activation}":
                len(op.keep) for op in layer.ops if op.keep}
        rows.append({
            "layer": layer.name, "channels": f"{len(layer.active_out)}/{layer.cout}",
            "ops": " ".join(f"{k}:{v}" for k, v in kept.items()) or "-",
            "params": sum(params(s) for s in specs), "flops": sum(flops(s) for s in specs),
            "latency_ms": (sum(latency.conv(s, s.cin, s.cout) + latency.pad(pad_pixels(s), pad_elements(s, s.cin))
                               for s in specs)
                           + (assembled[layer.name][1] if layer.name in assembled else 0.0)
                           if latency is not None and specs else None),
        })
    return rows


def method_line(search: dict) -> str:
    """How the architecture was reached, from arch.json's "search" block: said plainly when the fallback pruned."""
    baseline, share = search.get("baseline"), search.get("baseline_share")
    if baseline == "uniform":
        return f"baseline: uniform width multiplier x{share}, trained from scratch (no search)"
    if baseline == "l1":
        return f"baseline: filter-L1 pruning keeping {share:.1%} of every layer's channels, fine-tuned (no search)"
    if search.get("pruned_to_target"):
        return ("FALLBACK: the search's epochs ended above the target; the gates it was least sure about were switched "
                "off to meet it (raise --epochs-search or --gate-lr)")
    return f"searched: the gates reached the target after {search.get('search_epochs', 0.0):.2f} search epochs"


def format_summary(rows: list[dict], totals: dict, target: Target, val_accuracy: float, method: str) -> str:
    """A fixed-width table, then the network totals against the target and how the network was reached."""
    has_latency = any(r["latency_ms"] is not None for r in rows)
    head = f"{'layer':<12} {'channels':>9} {'params':>9} {'FLOPs':>10}" + (f" {'ms':>8}" if has_latency else "")
    lines = [head + "  operations (channels each)"]
    for r in rows:
        line = f"{r['layer']:<12} {r['channels']:>9} {r['params']:>9,} {r['flops'] / 1e6:>9.2f}M"
        if has_latency:
            line += f" {r['latency_ms']:>8.3f}" if r["latency_ms"] is not None else f" {'-':>8}"
        lines.append(line + f"  {r['ops']}")
    total = [f"params {format_resource('params', totals['params'])}",
             f"FLOPs {format_resource('flops', totals['flops'])}"]
    if totals.get("latency_ms") is not None:
        total.append(f"predicted latency {format_resource('latency', totals['latency_ms'])}")
    key = {"latency": "latency_ms"}.get(target.resource, target.resource)
    met = "meets" if totals[key] <= target.value else "MISSES"
    lines.append(f"network: {', '.join(total)} (head included); {met} target {target}; val accuracy {val_accuracy:.4f}")
    lines.append(method)
    return "\n".join(lines)
