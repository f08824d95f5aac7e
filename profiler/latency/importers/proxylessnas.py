"""The ProxylessNAS mobile lookup table (`mobile_trim.yaml`, Google Pixel 1, TFLite, batch 1).

`expand` is the expansion RATIO (middle channels = expand x input channels); expand 1 means no expand conv.
Activations are ReLU6, fused into the expand and depthwise convs; the project conv has none.
`Conv` is the stem (3x3 stride 2), `Conv_1` the final 1x1 conv, `Logits` the global average pool (MEAN) plus the
classifier (FULLY_CONNECTED), published as one figure. One figure cannot separate two ops, so MEAN's per-element slope
is tied to ADD's (both stream their input through memory once; ADD is fitted from the skip blocks) and
FULLY_CONNECTED takes the rest: see OP_TIES.
"""
from __future__ import annotations

from pathlib import Path

from profiler.errors import FgnasError
from profiler.latency.importers.blocks import LutEntry, MBConv, decompose_mbconv, fully_connected, global_mean
from profiler.latency.importers.lut_keys import LutRecord, read_lut
from profiler.spec import ConvSpec

RESOLUTION = 224
OP_TIES = {"MEAN": "ADD"}
ACTIVATION = "relu6"
LICENSE = "MIT (copy in itouchz/Neural-Predictor-Tensorflow, (c) 2021 Patara Trirat)"
CITATION = ("H. Cai, L. Zhu, S. Han, ProxylessNAS: Direct Neural Architecture Search on Target Task and Hardware, "
            "ICLR 2019; lookup table mobile_trim.yaml (hanlab.mit.edu/files/proxylessNAS/LatencyTools), "
            "copy at itouchz/Neural-Predictor-Tensorflow@02335c58ab3d5a995c388815232d145272a0ace0:"
            "proxylessnas/pixel_trim.yaml")
DEVICE = {"name": "pixel1", "model": "Google Pixel 1", "soc": "Qualcomm Snapdragon 821", "runtime": "TensorFlow Lite",
          "batch": 1, "threads": None, "note": "as stated by the ProxylessNAS paper; the file records no thread count"}


def _block(rec: LutRecord) -> LutEntry:
    h, w, cin = rec.shape("input")
    _, _, cout = rec.shape("output")
    ratio = rec.int_field("expand")
    block = MBConv(h, w, cin, cout, ratio * cin, rec.int_field("kernel"), rec.int_field("stride"),
                   bool(rec.int_field("idskip")), activation=ACTIVATION, has_expand=ratio != 1)
    convs, ops = decompose_mbconv(block)
    return LutEntry(rec.key, "block", RESOLUTION, rec.mean_ms, rec.std_ms, rec.count, convs, ops)


def _stem(rec: LutRecord) -> LutEntry:
    h, w, cin = rec.shape("input")
    _, _, cout = rec.shape("output")
    conv = ConvSpec(h, w, cin, cout, 3, 2, 1, ACTIVATION)
    return LutEntry(rec.key, "stem", RESOLUTION, rec.mean_ms, rec.std_ms, rec.count, (conv,))


def _last_conv(rec: LutRecord) -> LutEntry:
    h, w, cin = rec.shape("input")
    _, _, cout = rec.shape("output")
    conv = ConvSpec(h, w, cin, cout, 1, 1, 1, ACTIVATION)
    return LutEntry(rec.key, "last_conv", RESOLUTION, rec.mean_ms, rec.std_ms, rec.count, (conv,))


def _logits(rec: LutRecord) -> LutEntry:
    h, w, cin = rec.shape("input")
    ops = (global_mean(h, w, cin), fully_connected(cin, rec.int_field("output")))
    return LutEntry(rec.key, "logits", RESOLUTION, rec.mean_ms, rec.std_ms, rec.count, (), ops)


_ROLES = {"expanded_conv": _block, "Conv": _stem, "Conv_1": _last_conv, "Logits": _logits}


def read_entries(path: Path) -> tuple[list[LutEntry], list[Path]]:
    """The entries of a ProxylessNAS lookup-table file, and the files read (one)."""
    if path.is_dir():
        raise FgnasError(f"{path} is a directory: --format proxylessnas takes one mobile_trim.yaml file")
    entries = []
    for rec in read_lut(path):
        if rec.name not in _ROLES:
            raise FgnasError(f"{path}: unknown entry {rec.key!r} for --format proxylessnas "
                             f"(known: {', '.join(_ROLES)}); is this an OFA table? try --format ofa")
        try:
            entries.append(_ROLES[rec.name](rec))
        except (KeyError, ValueError) as exc:
            raise FgnasError(f"{path}: cannot read entry {rec.key!r} as ProxylessNAS ({exc})") from exc
    return entries, [path]
