"""Which layers export assembles SHARED (every operation computes all the layer's alive channels, added at full
width) rather than SPLIT (split/add/concat): the choice search.resources.layer_assembly made when the search priced
the architecture with the same latency table, so the exported graph is the one the search predicted."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from profiler.errors import FgnasError
from profiler.latency.table import LatencyTable
from profiler.lowering import SHARED
from search.arch import Arch, TableRef, as_arch
from search.resources import LatencyResource
from search.summary import assemblies


def shared_layers(arch: Arch | Mapping, table) -> frozenset[str]:
    """The layers the latency table finds cheaper to assemble SHARED; none without a table."""
    if table is None:
        return frozenset()
    arch = as_arch(arch)
    assembled = assemblies(LatencyResource(table), arch)
    return frozenset(layer.name for layer in arch.layers
                     if len(layer.ops) > 1 and assembled[layer.name][0] == SHARED)


class SearchTableChanged(FgnasError):
    """The latency table the search recorded in arch.json is no longer at its path, or holds other content: export
    would choose layer assemblies (and price layers) with another table than the one the search priced. Exit code 2."""


def _describe(info: TableRef) -> str:
    version = "?" if "table_version" not in info.record else info.table_version
    return f"{info.path} (version {version}, {info.content_hash or 'no content hash'})"


def search_table(arch: Arch | Mapping) -> Path | None:
    """The table the search priced this architecture with (arch.json's latency_table), while it is still at its path
    with the content hash the search recorded; None when the search used no table. SearchTableChanged when the file
    is gone or changed (a re-profile bumps the version and the hash): the message names the table the search used and
    says to pass it with --table."""
    info = as_arch(arch).latency_table
    path = info.path if info else None
    if not path:
        return None
    if not Path(path).is_file():
        raise SearchTableChanged(f"the search priced this run with latency table {_describe(info)}, which is no "
                                 f"longer at {path}; pass that table with --table PATH (or another one deliberately)")
    table = LatencyTable.load(Path(path))
    if table.content_hash != info.content_hash:
        raise SearchTableChanged(f"the search priced this run with latency table {_describe(info)}, but {path} now "
                                 f"holds version {table.table_version} ({table.content_hash}); pass the search's "
                                 f"table with --table PATH (or another one deliberately)")
    return Path(path)


def assembly_table(arch: Arch | Mapping, given: LatencyTable | None) -> LatencyTable | None:
    """The table to choose assemblies with: the one given, else the search's own (arch.json's latency_table) while
    it is still at its path with the same content hash; None (everything SPLIT) otherwise."""
    if given is not None:
        return given
    try:
        path = search_table(arch)
    except SearchTableChanged:
        return None
    return LatencyTable.load(path) if path is not None else None
