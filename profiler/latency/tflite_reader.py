"""Read the ops of a float32 .tflite model (flatbuffer schema shipped in ai_edge_litert; no TensorFlow) and price them.

CONV_2D and DEPTHWISE_CONV_2D become ConvSpecs. A PRELU or TANH that consumes only a conv's output is merged into
that conv's activation, because the sweep measures conv+PRELU / conv+TANH pairs exactly as the converter emits them.
A VALID-padded conv (e.g. after an explicit PAD) is priced as the SAME conv with the same output size: input
out_h*stride x out_w*stride, which does the same multiply-accumulates. Every other op is priced by the table's
per-op model on the units profiler.ops.op_units counts; an op the table cannot price is an error, never skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from profiler.errors import FgnasError
from profiler.latency.table import LatencyTable
from profiler.model_ops import ConvOp, ModelOp, OtherOp, whole_model_ms
from profiler.ops import op_units
from profiler.spec import ConvSpec

_FUSED_ACTIVATIONS = {0: "none", 1: "relu", 3: "relu6", 4: "tanh"}  # ActivationFunctionType codes
_MERGED_ACTIVATIONS = {"PRELU": "prelu", "TANH": "tanh"}
_VALID = 1  # Padding.VALID


@dataclass(frozen=True)
class OpPrediction:
    index: int
    op: str
    detail: str
    ms: float
    fallback: str | None
    provenance: str = "measured"  # "measured", "fitted" or "transferred from ..." (LatencyTable.provenance)

    def to_dict(self) -> dict:
        return {"index": self.index, "op": self.op, "detail": self.detail, "ms": self.ms, "fallback": self.fallback,
                "provenance": self.provenance}


@dataclass(frozen=True)
class ModelPrediction:
    """Every op's prediction (each as a model of its own, so each contains one invoke's overhead) and the whole
    model's, which pays that overhead once and what its ops cost more inside one network (network_ms, the table's
    NetworkModel): total = sum of the ops - (ops - 1) x invoke_overhead_ms + network_ms."""

    model: str
    ops: tuple[OpPrediction, ...]
    invoke_overhead_ms: float = 0.0
    network_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return whole_model_ms([p.ms for p in self.ops], self.invoke_overhead_ms) + self.network_ms

    @property
    def conv_ms(self) -> float:
        return sum(p.ms for p in self.ops if p.op.startswith(("CONV_2D", "DEPTHWISE_CONV_2D")))

    def to_dict(self) -> dict:
        return {"model": self.model, "total_ms": self.total_ms, "conv_ms": self.conv_ms,
                "invoke_overhead_ms": self.invoke_overhead_ms, "network_ms": self.network_ms,
                "ops": [p.to_dict() for p in self.ops]}


def conv_text(spec: ConvSpec) -> str:
    """The CLI's --conv notation of a spec (grouped convs add :gN)."""
    kind = {"normal": "", "depthwise": ":dw", "grouped": f":g{spec.groups}"}[spec.conv_type]
    return f"{spec.h}x{spec.w}x{spec.cin}:{spec.cout}:k{spec.kernel}:s{spec.stride}{kind}:{spec.activation}"


def _load_model(path: Path):
    from ai_edge_litert import schema_py_generated as schema

    try:
        buf = Path(path).read_bytes()
    except OSError as exc:
        raise FgnasError(f"cannot read model {path}: {exc.strerror}") from exc
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise FgnasError(f"{path} is not a .tflite model (no TFL3 identifier): pass a model from the TFLite converter")
    try:
        model = schema.ModelT.InitFromPackedBuf(buf, 0)
    except Exception as exc:  # a damaged flatbuffer raises anything from struct/index errors
        raise FgnasError(f"{path} is a damaged .tflite file ({type(exc).__name__}): re-convert the model") from exc
    names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    return model, names, schema.TensorType.FLOAT32


def _shape(subgraph, index: int) -> tuple[int, ...]:
    return tuple(int(d) for d in subgraph.tensors[index].shape)


def _conv_spec(path: Path, index: int, name: str, op, subgraph, activation: str) -> ConvSpec:
    opts = op.builtinOptions
    _, h, w, cin = _shape(subgraph, op.inputs[0])
    filt = _shape(subgraph, op.inputs[1])
    _, kh, kw, last = filt
    where = f"{path}: op {index} {name}"
    if opts.dilationHFactor != 1 or opts.dilationWFactor != 1:
        raise FgnasError(f"{where} is dilated; the latency table has no dilated convs (profile it or avoid dilation)")
    if kh != kw or opts.strideH != opts.strideW or opts.strideH not in (1, 2):
        raise FgnasError(f"{where} has kernel {kh}x{kw}, stride {opts.strideH}x{opts.strideW}; the table prices "
                         f"square kernels with stride 1 or 2")
    stride = opts.strideH
    if opts.padding == _VALID:
        _, ho, wo, _ = _shape(subgraph, op.outputs[0])
        h, w = ho * stride, wo * stride
    if name == "DEPTHWISE_CONV_2D":
        return ConvSpec(h, w, cin, last, kh, stride, cin, activation)
    return ConvSpec(h, w, cin, filt[0], kh, stride, cin // last, activation)


def read_ops(path: Path) -> list[ConvOp | OtherOp]:
    """The ops of the model's main subgraph in execution order, convs as ConvSpecs (PRELU/TANH merged)."""
    path = Path(path)
    model, names, float32 = _load_model(path)
    subgraph = model.subgraphs[0]
    consumers: dict[int, list[int]] = {}
    for i, op in enumerate(subgraph.operators):
        for t in op.inputs:
            consumers.setdefault(int(t), []).append(i)
    graph_outputs = {int(t) for t in subgraph.outputs}

    def op_name(op) -> str:
        code = model.operatorCodes[op.opcodeIndex]
        return names.get(max(code.builtinCode, code.deprecatedBuiltinCode), f"CUSTOM:{code.customCode!r}")

    result: list[ConvOp | OtherOp] = []
    merged: set[int] = set()
    for i, op in enumerate(subgraph.operators):
        if i in merged:
            continue
        name = op_name(op)
        # the data operands; the others may be int32 shapes, axes or paddings
        activations = [int(op.inputs[0])] + [int(t) for t in op.outputs] if len(op.inputs) else []
        if any(subgraph.tensors[t].type != float32 for t in activations):
            raise FgnasError(f"{path}: op {i} {name} is not float32; the latency table prices float32 models only")
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            fused = op.builtinOptions.fusedActivationFunction
            if fused not in _FUSED_ACTIVATIONS:
                raise FgnasError(f"{path}: op {i} {name} has fused activation code {fused}, which the table does not "
                                 f"price (none, relu, relu6, tanh)")
            activation, ops = _FUSED_ACTIVATIONS[fused], (name,)
            out = int(op.outputs[0])
            users = consumers.get(out, [])
            if activation == "none" and len(users) == 1 and out not in graph_outputs:
                follower = op_name(subgraph.operators[users[0]])
                if follower in _MERGED_ACTIVATIONS:
                    activation, ops = _MERGED_ACTIVATIONS[follower], (name, follower)
                    merged.add(users[0])
            result.append(ConvOp(i, ops, _conv_spec(path, i, name, op, subgraph, activation)))
        else:
            inputs = tuple(_shape(subgraph, int(t)) for t in op.inputs if t >= 0)
            outputs = tuple(_shape(subgraph, int(t)) for t in op.outputs)
            result.append(OtherOp(i, name, inputs, outputs))
    return result


def op_label(entry: ConvOp | OtherOp) -> str:
    """The TFLite op name(s) of a read op: "CONV_2D+PRELU" for a conv with its merged activation."""
    return "+".join(entry.ops) if isinstance(entry, ConvOp) else entry.op


def _prediction(table: LatencyTable, entry: ModelOp, ms: float, fallback: str | None) -> OpPrediction:
    provenance = table.provenance(entry)
    if isinstance(entry, ConvOp):
        return OpPrediction(entry.index, op_label(entry), conv_text(entry.spec), ms, fallback, provenance)
    unit, units = op_units(entry.op, list(entry.input_shapes), list(entry.output_shapes))
    return OpPrediction(entry.index, entry.op, f"{units} {unit}", ms, fallback, provenance)


def predict_op(table: LatencyTable, entry: ModelOp, fit: str = "selected") -> OpPrediction:
    """One read op's predicted latency (as a one-op model); FgnasError when the table cannot price it."""
    return _prediction(table, entry, *table.price_op(entry, fit))


def predict_model(table: LatencyTable, path: Path, fit: str = "selected") -> ModelPrediction:
    """Per-op predicted latency of a float32 .tflite model and its total (LatencyTable.price_model); FgnasError
    naming the first op it cannot price."""
    price = table.price_model(read_ops(path), fit)
    if price.unpriced:
        entry, exc = price.unpriced[0]
        raise FgnasError(f"{path}: op {entry.index} {op_label(entry)}: {exc}")
    return ModelPrediction(str(path), tuple(_prediction(table, *row) for row in price.priced),
                           price.invoke_overhead_ms, price.network_ms)
