"""Which layers export assembles SHARED (every operation computes all the layer's alive channels, added at full
width) rather than SPLIT (split/add/concat): the choice search.resources.layer_assembly made when the search priced
the architecture with the same latency table, so the exported graph is the one the search predicted."""
from __future__ import annotations

import math

import torch

from profiler.spec import ConvSpec
from search.resources import SHARED, LatencyResource, layer_assembly


def shareable(layer: dict) -> bool:
    """A layer SHARED assembly can serve: no skip and normal convs only (a depthwise op cannot read other channels)."""
    return layer["skip"] is None and all(op["conv_type"] == "normal" for op in layer["ops"])


def shared_layers(arch: dict, table) -> frozenset[str]:
    """The arch.json layers the latency table finds cheaper to assemble SHARED; none without a table."""
    if table is None:
        return frozenset()
    resource = LatencyResource(table)
    chosen = set()
    for layer in arch["layers"]:
        if len(layer["ops"]) < 2 or not shareable(layer):
            continue
        gates = torch.zeros(len(layer["ops"]), layer["cout"])
        for i, op in enumerate(layer["ops"]):
            gates[i, op["keep"]] = 1.0
        specs = [ConvSpec.from_dict(op["spec"]) if op["keep"] else None for op in layer["ops"]]
        h, w = (math.ceil(n / layer["stride"]) for n in layer["in_hw"])
        with torch.no_grad():
            kind, _ = layer_assembly(resource, specs, torch.tensor(float(len(layer["active_in"]))), gates, h, w, True)
        if kind == SHARED:
            chosen.add(layer["name"])
    return frozenset(chosen)
