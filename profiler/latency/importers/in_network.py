"""What a block costs inside a whole network relative to the same block timed alone, on the same phone.

The ProxylessNAS lookup table times every MBConv block alone; the sum of isolated blocks over-prices MobileNetV2
1.0-224 on the Pixel 1 by about 12%. Single-Path NAS published, for the same phone and runtime (Pixel 1, TFLite, one
big core), per-layer latencies obtained by profiling whole MnasNet-backbone networks: each layer's contribution
inside a network (`pixel1_runtime_model.json`). Its 22 layers x 4 ops (k3/k5, expand 3/6) have exactly the shapes of
ProxylessNAS blocks (the same 16/24/40/80/96/192/320 channels at 224 px), so each pair is one measurement of
in-network / isolated cost.

The gain grows with the working set: an op timed alone on a repeated input keeps a small working set in cache
anyway, while a large one (weights + activations beyond the 1-2 MB of cache) is served from memory each run, and
inside a network the producer has just written its input. So the pairs are binned by their block's largest working
set (a conv's weights + input + output, MB), in octaves from 0.1 MB chosen before looking at the ratios; the
factor is each bin's median, and tables apply it to every op by its own working set, interpolated in log size and
clamped at the ends (profiler.latency.table.LatencyTable.in_network_factor). Derived from these two published tables
only, never from the whole-model latencies the table is validated on.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

from profiler.errors import FgnasError
from profiler.latency.importers.blocks import LutEntry
from profiler.model_ops import ConvOp

# Single-Path NAS's MnasNet-A backbone at 224 px (nas-search/supernet_macro.py): per layer (input size, cin, cout,
# stride); layer 0 has expansion 1 whatever the op index.
SINGLEPATH_LAYERS: tuple[tuple[int, int, int, int], ...] = (
    (112, 32, 16, 1), (112, 16, 24, 2), *((56, 24, 24, 1),) * 3, (56, 24, 40, 2), *((28, 40, 40, 1),) * 3,
    (28, 40, 80, 2), *((14, 80, 80, 1),) * 3, (14, 80, 96, 1), *((14, 96, 96, 1),) * 3, (14, 96, 192, 2),
    *((7, 192, 192, 1),) * 3, (7, 192, 320, 1))
SINGLEPATH_OPS = {"0": (3, 3), "1": (3, 6), "2": (5, 3), "3": (5, 6)}  # op index -> (kernel, expand ratio)
BIN_EDGES_MB = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8)
CITATION = ("D. Stamoulis et al., Single-Path NAS: Designing Hardware-Efficient ConvNets in less than 4 Hours, "
            "ECML-PKDD 2019; enyac-group/single-path-nas@f3a84617e5a44cb527b4dad49409ae6e261f3057:"
            "nas-search/pixel1_runtime_model.json")


def _proxyless_key(h: int, cin: int, cout: int, stride: int, kernel: int, expand: int) -> str:
    ho = h // stride
    skip = int(stride == 1 and cin == cout)
    return (f"expanded_conv-input:{h}x{h}x{cin}-output:{ho}x{ho}x{cout}-expand:{expand}-kernel:{kernel}"
            f"-stride:{stride}-idskip:{skip}")


def matched_ratios(singlepath: Path, entries: list[LutEntry]) -> list[tuple[int, str, float]]:
    """(block input size, ProxylessNAS key, in-network / isolated latency) for every Single-Path layer and op whose
    block the lookup table has."""
    try:
        model = json.loads(Path(singlepath).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FgnasError(f"cannot read the Single-Path NAS runtime model {singlepath}: {exc}") from exc
    isolated = {e.key: e.mean_ms for e in entries if e.role == "block"}
    ratios = []
    for index, (h, cin, cout, stride) in enumerate(SINGLEPATH_LAYERS):
        for op, (kernel, expand) in SINGLEPATH_OPS.items():
            key = _proxyless_key(h, cin, cout, stride, kernel, 1 if index == 0 else expand)
            ms = model.get(str(index), {}).get(op)
            if ms is not None and key in isolated:
                ratios.append((h, key, float(ms) / isolated[key]))
    if not ratios:
        raise FgnasError(f"{singlepath}: no Single-Path NAS layer matches a block of this lookup table")
    return ratios


def working_set_mb(entry: LutEntry) -> float:
    """The largest working set of the block's convs: weights + input + output activations, float32, in MB."""
    return max(op.weights_mb + op.activation_mb for op in (ConvOp(0, (), spec) for spec in entry.convs))


def in_network_model(singlepath: Path, entries: list[LutEntry]) -> dict:
    """The table's source.in_network: the median in-network / isolated ratio per working-set bin, with its spread."""
    ratios = matched_ratios(singlepath, entries)
    by_key = {e.key: e for e in entries}
    sized = [(working_set_mb(by_key[key]), r) for _, key, r in ratios]
    factors = []
    for lo, hi in zip(BIN_EDGES_MB, BIN_EDGES_MB[1:]):
        values = [r for mb, r in sized if lo <= mb < hi]
        if values:
            factors.append({"working_set_mb": round((lo * hi) ** 0.5, 5), "from_mb": lo, "to_mb": hi,
                            "factor": round(statistics.median(values), 5), "n": len(values),
                            "p10": round(float(np.percentile(values, 10)), 5),
                            "p90": round(float(np.percentile(values, 90)), 5)})
    return {"model": "each op's price x factor(its weights + activations in MB), interpolated in log size between "
                     "bin centres, clamped at the ends; 1 for ops on vectors and 1x1 maps",
            "derived_from": "median per working-set bin of in-network / isolated latency of the same block: "
                            "Single-Path NAS per-layer contributions in whole networks over ProxylessNAS isolated "
                            "blocks (same phone, runtime and shapes)",
            "file": {"name": Path(singlepath).name, "sha256": _sha256(Path(singlepath))},
            "citation": CITATION, "pairs": len(ratios), "factors": factors}


def _sha256(path: Path) -> str:
    from profiler.latency.table import sha256_file

    return sha256_file(path)
