"""Which layers export assembles SHARED (every operation computes all the layer's alive channels, added at full
width) rather than SPLIT (split/add/concat): the choice search.resources.layer_assembly made when the search priced
the architecture with the same latency table, so the exported graph is the one the search predicted."""
from __future__ import annotations

from pathlib import Path

from profiler.table import LatencyTable
from search.resources import SHARED, LatencyResource, arch_layer_assembly


def shared_layers(arch: dict, table) -> frozenset[str]:
    """The arch.json layers the latency table finds cheaper to assemble SHARED; none without a table."""
    if table is None:
        return frozenset()
    resource = LatencyResource(table)
    return frozenset(layer["name"] for layer in arch["layers"]
                     if len(layer["ops"]) > 1 and arch_layer_assembly(resource, layer)[0] == SHARED)


def assembly_table(arch: dict, given: LatencyTable | None) -> LatencyTable | None:
    """The table to choose assemblies with: the one given, else the search's own (arch.json's latency_table) while
    it is still at its path with the same content hash; None (everything SPLIT) otherwise."""
    if given is not None:
        return given
    info = arch.get("latency_table") or {}
    path = info.get("path")
    if not path or not Path(path).is_file():
        return None
    table = LatencyTable.load(Path(path))
    return table if table.content_hash == info.get("content_hash") else None
