"""The once-for-all lookup tables (`<R>_lookup_table.yaml`, Samsung Galaxy Note10, TFLite, batch 1), one file per
input resolution R (160..224 in steps of 4).

`expand` is the ABSOLUTE number of middle channels; a block whose middle channels equal its input channels (the
first block) has no expand conv. Blocks with `hs:1` use h-swish (TFLite HARD_SWISH, not fused), the others ReLU;
`se:1` adds squeeze-excite. The head is `Conv_1` (1x1 conv, h-swish), `AvgPool2D` (MEAN), `Conv_2` (1x1 conv on the
pooled 1x1 map, h-swish, no BN) and `Logits` (FULLY_CONNECTED); the stem `Conv` is a 3x3 stride-2 conv with h-swish.
"""
from __future__ import annotations

from pathlib import Path

from profiler.errors import FgnasError
from profiler.latency.importers.blocks import (
    LutEntry,
    MBConv,
    decompose_mbconv,
    elementwise,
    fully_connected,
    global_mean,
)
from profiler.latency.importers.lut_keys import LutRecord, read_lut
from profiler.spec import ConvSpec

LICENSE = "Apache-2.0 (mit-han-lab/once-for-all at commit 698a5c10b434172056a565b340c46ce11df18629)"
CITATION = ("H. Cai, C. Gan, T. Wang, Z. Zhang, S. Han, Once-for-All: Train One Network and Specialize it for "
            "Efficient Deployment, ICLR 2020; mit-han-lab/once-for-all@698a5c10b434172056a565b340c46ce11df18629:"
            "tutorial/checkpoints/latency_table@note10/<R>_lookup_table.yaml")
DEVICE = {"name": "note10", "model": "Samsung Galaxy Note10", "soc": None, "runtime": "TensorFlow Lite", "batch": 1,
          "threads": None, "note": "the once-for-all repository gives neither the SoC variant nor the thread count"}
FILE_SUFFIX = "_lookup_table.yaml"
OP_TIES: dict[str, str] = {}


def _hswish_conv(rec: LutRecord, kernel: int, stride: int, resolution: int, role: str) -> LutEntry:
    h, w, cin = rec.shape("input")
    ho, wo, cout = rec.shape("output")
    conv = ConvSpec(h, w, cin, cout, kernel, stride, 1, "none")
    return LutEntry(rec.key, role, resolution, rec.mean_ms, rec.std_ms, rec.count, (conv,),
                    (elementwise("HARD_SWISH", ho, wo, cout),))


def _entry(rec: LutRecord, resolution: int) -> LutEntry:
    if rec.name == "expanded_conv":
        h, w, cin = rec.shape("input")
        _, _, cout = rec.shape("output")
        mid = rec.int_field("expand")
        block = MBConv(h, w, cin, cout, mid, rec.int_field("kernel"), rec.int_field("stride"),
                       bool(rec.int_field("idskip")), bool(rec.int_field("se")), bool(rec.int_field("hs")),
                       activation="relu", has_expand=mid != cin)
        convs, ops = decompose_mbconv(block)
        return LutEntry(rec.key, "block", resolution, rec.mean_ms, rec.std_ms, rec.count, convs, ops)
    if rec.name == "Conv":
        return _hswish_conv(rec, 3, 2, resolution, "stem")
    if rec.name == "Conv_1":
        return _hswish_conv(rec, 1, 1, resolution, "last_conv")
    if rec.name == "Conv_2":
        return _hswish_conv(rec, 1, 1, resolution, "head_conv")
    if rec.name == "AvgPool2D":
        h, w, c = rec.shape("input")
        return LutEntry(rec.key, "pool", resolution, rec.mean_ms, rec.std_ms, rec.count, (), (global_mean(h, w, c),))
    if rec.name == "Logits":
        _, _, cin = rec.shape("input")
        return LutEntry(rec.key, "logits", resolution, rec.mean_ms, rec.std_ms, rec.count, (),
                        (fully_connected(cin, rec.int_field("output")),))
    raise FgnasError(f"unknown entry {rec.key!r} for --format ofa (known: expanded_conv, Conv, Conv_1, Conv_2, "
                     "AvgPool2D, Logits); is this a ProxylessNAS table? try --format proxylessnas")


def _resolution(records: list[LutRecord], path: Path) -> int:
    stems = [rec for rec in records if rec.name == "Conv"]
    if len(stems) != 1:
        raise FgnasError(f"{path}: expected exactly one stem `Conv-input:RxRx3-...` entry to tell the resolution")
    return stems[0].shape("input")[0]


def read_entries(path: Path) -> tuple[list[LutEntry], list[Path]]:
    """The entries of one OFA lookup-table file, or of every `<R>_lookup_table.yaml` in a directory."""
    files = sorted(path.glob(f"*{FILE_SUFFIX}"), key=lambda p: p.name) if path.is_dir() else [path]
    if not files:
        raise FgnasError(f"{path} holds no *{FILE_SUFFIX} files: pass an OFA lookup-table file or its directory")
    entries: list[LutEntry] = []
    for file in files:
        records = read_lut(file)
        resolution = _resolution(records, file)
        try:
            entries.extend(_entry(rec, resolution) for rec in records)
        except (KeyError, ValueError) as exc:
            raise FgnasError(f"{file}: cannot read an entry as OFA ({exc})") from exc
    return entries, files
