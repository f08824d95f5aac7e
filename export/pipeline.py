"""fgnas-export's work, as one importable function: prune, write model.tflite / model.onnx (and a quantized
.tflite), prove parity on real inputs, measure latency against the table, write export_report.json."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from export.assembly import assembly_table, shared_layers
from export.files import atomic_write_bytes, atomic_write_json
from export.onnx import run_onnx, write_onnx
from export.parity import ParityResult, accuracy, compare, eval_inputs, require_parity
from export.plan import PrunedPlan
from export.prune import prune
from export.report import LatencyReport, latency_report
from export.run import SearchedRun
from export.tflite import convert_plan, op_inventory, run_tflite
from export.torch_model import PrunedNetwork
from profiler.errors import FgnasError
from profiler.latency.table import LatencyTable

REPORT_VERSION = 1


@dataclass(frozen=True)
class ExportOptions:
    out: Path
    device: str | None = "host"  # None: no latency measurement
    table: Path | None = None
    data: str | None = None  # default: the run's data set
    quantize: str | None = None
    parity_samples: int = 64
    eval_samples: int = 1000
    timing: dict = field(default_factory=dict)  # runs/warmup/threads over the device's own default settings
    round_channels: bool = False
    device_options: dict = field(default_factory=dict)  # create_device keywords: a phone's serial, benchmark binary
    allow_other_device: bool = False  # compare with a table of another device anyway (profiler.latency.device_check)


@dataclass(frozen=True)
class ExportResult:
    out: Path
    files: dict[str, str]
    inventory: dict[str, int]
    parity: tuple[ParityResult, ...]
    accuracy: dict[str, float]
    latency: LatencyReport | None
    report_path: Path
    rounding: dict | None = None
    device_check: dict | None = None  # profiler.latency.device_check's record of the table against the measuring device


def _nhwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def check_tflite(path: Path, plan: PrunedPlan) -> dict[str, int]:
    """The op inventory of the written model; FgnasError if it holds a TRANSPOSE or is not the plan's graph."""
    inventory = op_inventory(path)
    if inventory.get("TRANSPOSE", 0):
        raise FgnasError(f"{path} contains {inventory['TRANSPOSE']} TRANSPOSE ops; the export is wrong: report it")
    convs = sum(len(layer.ops) for layer in plan.layers)
    if inventory.get("CONV_2D", 0) + inventory.get("DEPTHWISE_CONV_2D", 0) != convs:
        raise FgnasError(f"{path} has {inventory.get('CONV_2D', 0)} CONV_2D + {inventory.get('DEPTHWISE_CONV_2D', 0)} "
                         f"DEPTHWISE_CONV_2D ops, the pruned network {convs} convs; the export is wrong: report it")
    return dict(sorted(inventory.items()))


def check_device(table: LatencyTable | None, options: ExportOptions) -> dict | None:
    """Before any work: is the table the measuring device's? (profiler.latency.device_check; OtherDeviceError, exit 2,
    unless options.allow_other_device). None when nothing is measured or priced against a measurement."""
    if table is None or not options.device:
        return None
    from profiler.latency.device_check import check_record, check_table_device
    from profiler.measure.devices import create_device

    with create_device(options.device, **options.device_options) as device:
        return check_record(check_table_device(table, device, options.allow_other_device))


def export_run(run: SearchedRun, options: ExportOptions, log: Callable[[str], None] = lambda _: None) -> ExportResult:
    out = Path(options.out)
    arch, net = run.arch, run.net
    rounding = None
    device_check = check_device(LatencyTable.load(options.table) if options.table else None, options)
    if device_check and device_check["warning"]:
        log(f"warning: {device_check['warning']}")
    data = options.data or run.data
    if data is None:
        raise FgnasError(f"{run.path} does not say which data set the search used: pass --data")
    size = arch.input.height
    samples = max(options.parity_samples, options.eval_samples)
    x, labels = eval_inputs(data, size, samples)
    if options.round_channels:
        from export.rounding import round_run

        log("rounding channels to the table's tiles")
        arch, net, rounding = round_run(run, options.table, x, labels)
    table = LatencyTable.load(options.table) if options.table else None
    plan = prune(arch, net.state_dict(), shared_layers(arch, assembly_table(arch, table)))
    module = PrunedNetwork(plan)
    files = {}

    log("converting to TFLite")
    tflite_path = atomic_write_bytes(out / "model.tflite", convert_plan(plan))
    files["tflite"] = tflite_path.name
    inventory = check_tflite(tflite_path, plan)
    log("exporting ONNX")
    onnx_path = write_onnx(module, out / "model.onnx")
    files["onnx"] = onnx_path.name

    log("checking parity")
    px = x[:options.parity_samples]
    with torch.no_grad():
        reference = net(px).numpy()
        pruned_out = module(px).numpy()
    parity = [compare("pruned PyTorch", reference, pruned_out), compare("ONNX Runtime", reference,
                                                                        run_onnx(onnx_path, px.numpy())),
              compare("LiteRT", reference, run_tflite(tflite_path, _nhwc(px)))]
    quant_path = None
    if options.quantize:
        log(f"quantizing ({options.quantize})")
        representative = _nhwc(x[:min(len(x), 100)])
        quant_path = atomic_write_bytes(out / f"model_{options.quantize}.tflite",
                                        convert_plan(plan, options.quantize, representative))
        files["tflite_quantized"] = quant_path.name
        parity.append(compare(f"LiteRT {options.quantize}", reference, run_tflite(quant_path, _nhwc(px)),
                              enforced=False))
    require_parity(parity)

    log("measuring accuracy")
    ex, ey = x[:options.eval_samples], labels[:options.eval_samples]
    with torch.no_grad():
        acc = {"samples": len(ey), "pytorch": accuracy(net(ex).numpy(), ey),
               "tflite": accuracy(run_tflite(tflite_path, _nhwc(ex)), ey)}
    if quant_path is not None:
        acc[f"tflite_{options.quantize}"] = accuracy(run_tflite(quant_path, _nhwc(ex)), ey)

    latency, settings = None, None
    if options.device:
        from profiler.measure.devices import create_device

        with create_device(options.device, **options.device_options) as device:
            settings = device.default_settings.overridden(**options.timing)
            latency = latency_report(plan, tflite_path, device, settings, table, out / "layers",
                                     arch.predicted.latency_ms, log)

    report = {
        "report_version": REPORT_VERSION,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "run_dir": str(run.path), "data": data, "files": files, "tflite_ops": inventory,
        "gathers": plan.gathers(),
        "channels": {layer.name: layer.out_channels for layer in plan.layers},
        "parity": [p.to_dict() for p in parity], "accuracy": acc,
        "latency": latency.to_dict() if latency else None, "settings": settings.to_dict() if settings else None,
        "rounding": rounding, "predicted": arch.predicted.to_dict(), "device_check": device_check,
    }
    report_path = atomic_write_json(out / "export_report.json", report)
    return ExportResult(out, files, inventory, tuple(parity), acc, latency, report_path, rounding, device_check)
