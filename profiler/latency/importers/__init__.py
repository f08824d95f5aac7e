"""Importing published phone latency lookup tables (ProxylessNAS, once-for-all) as our latency tables.

lut_keys.py reads the YAML files, proxylessnas.py / ofa.py turn entries into ops, blocks.py decomposes MBConv blocks,
joint_fit.py fits per-condition models jointly, table_import.py builds the LatencyTable with its provenance, and
cli.py is `fgnas-table import`. This package file stays light (no scipy/yaml) so that `fgnas-table` starts fast.
"""
from __future__ import annotations

from pathlib import Path

from profiler.latency.table import LatencyTable


def import_table(format_name: str, path: Path, device: str, **companions: Path | None) -> LatencyTable:
    """See profiler.latency.importers.table_import.import_table (companions: transfer_from, in_network)."""
    from profiler.latency.importers.table_import import import_table as build

    return build(format_name, path, device, **companions)
