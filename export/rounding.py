"""--round-channels: snap each normal operation's kept channels down to the device's output-channel tile (or, for
few channels, its small tile; from the latency table's fit of its condition) where that lowers the predicted latency;
report accuracy before and after.

The channels dropped are those whose gate was least decidedly on (smallest psi_on - psi_off), and the change is made
on the gates, so the gated network and arch.json (search.network.to_arch) stay the single source of truth.
Depthwise operations are left alone: their channels are tied to their input's.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from export.parity import accuracy
from export.run import SearchedRun
from profiler.errors import FgnasError
from profiler.latency.table import LatencyTable
from profiler.spec import ConvSpec
from search.arch import Arch
from search.network import SearchNetwork
from search.resources import create_resource


def rounded_count(table: LatencyTable, spec: ConvSpec) -> int:
    """The op's channel count after rounding: down to a multiple of the condition's tile, or for counts up to the
    tile of its small tile (profiler.latency.fit.effective_channels), the first of those that is cheaper."""
    model, _ = table.resolve(spec.condition)
    steps = [model.cout_tile]
    if model.cout_small_tile and spec.cout <= model.cout_tile:
        steps.append(model.cout_small_tile)
    for step in steps:
        down = spec.cout - spec.cout % step
        if step > 1 and down not in (0, spec.cout) and \
                table.predict_ms(spec.with_channels(spec.cin, down)) < table.predict_ms(spec):
            return down
    return spec.cout


def round_gates(net: SearchNetwork, arch: Arch, table: LatencyTable) -> dict[str, dict[int, tuple[int, int]]]:
    """Switch off gates so each op whose channels are its own (not a channelwise op's, tied to its input) keeps
    `rounded_count` channels; returns {layer: {op: (before, after)}}."""
    changes: dict[str, dict[int, tuple[int, int]]] = {}
    with torch.no_grad():
        for layer in arch.layers:
            psi = net.layers[layer.name].psi
            for i, op in enumerate(layer.ops):
                if op.kind.channelwise or not op.keep:
                    continue
                spec = op.spec
                target = rounded_count(table, spec)
                if target == spec.cout:
                    continue
                keep = torch.tensor(op.keep)
                margin = psi[i, keep, 0] - psi[i, keep, 1]
                drop = keep[torch.argsort(margin)[:spec.cout - target]]
                psi[i, drop, 0] = psi[i, drop, 1] - 1.0
                changes.setdefault(layer.name, {})[i] = (spec.cout, target)
    return changes


def round_run(run: SearchedRun, table_path: Path | None, x: torch.Tensor, labels: np.ndarray
              ) -> tuple[Arch, SearchNetwork, dict]:
    """The rounded architecture, its gated network, and what rounding changed (predicted latency, accuracy)."""
    if table_path is None:
        raise FgnasError("--round-channels needs the device's latency table: pass --table device_tables/DEVICE.json")
    table = LatencyTable.load(table_path)
    latency = create_resource("latency", table)
    net = copy.deepcopy(run.net)
    with torch.no_grad():
        before = {"latency_ms": net.hard_resource(latency), "accuracy": accuracy(net(x).numpy(), labels)}
        changes = round_gates(net, run.arch, table)
        net.ensure_alive()
        after = {"latency_ms": net.hard_resource(latency), "accuracy": accuracy(net(x).numpy(), labels)}
    # the network writes arch.json's dict (search.network.to_arch); the run's records pass through it as they were
    recorded = run.arch.to_dict()
    extra = {k: recorded[k] for k in ("latency_table", "target", "search") if k in recorded}
    arch = Arch.from_dict(net.to_arch({**extra, "predicted": {"latency_ms": after["latency_ms"]}}))
    info = {"table": str(table_path), "before": before, "after": after, "samples": len(labels),
            "changed": {name: {str(i): list(c) for i, c in ops.items()} for name, ops in changes.items()}}
    return arch, net, info
