"""SearchNetwork: a graph of searchable layers and a classifier head, with its gates and resource accounting.

Backbones (search/backbones/) only describe the graph (a list of LayerNode and a HeadSpec); everything the search
needs — gated forward, R(psi), the exact resource of the hard-gated architecture, arch.json — lives here once.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import torch
from torch import Tensor, nn

from profiler.channel_order import LayerChannels, LayerRuns, layer_runs
from profiler.lowering import Read, average_deferred, operation_reads, post_activation_op, scales_output
from profiler.spec import ConvSpec
from search.arch import ARCH_SCHEMA_VERSION, CONV_KINDS
from search.gates import gate, hard_gate
from search.layer import LayerNode, SearchableLayer
from search.resources import (
    SHARED,
    Count,
    MergeOps,
    Resource,
    active_channels,
    gamma_out,
    layer_assembly,
    pad_elements,
    pad_pixels,
)

MODES = ("pretrain", "search", "finetune")


@dataclass(frozen=True)
class HeadSpec:
    input: str
    in_hw: tuple[int, int]
    in_channels: int
    num_classes: int
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return {"input": self.input, "pool": "avg", "in_channels": self.in_channels,
                "num_classes": self.num_classes, "dropout": self.dropout}


class Head(nn.Module):
    def __init__(self, spec: HeadSpec) -> None:
        super().__init__()
        self.dropout = nn.Dropout(spec.dropout) if spec.dropout else nn.Identity()
        self.fc = nn.Linear(spec.in_channels, spec.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(x.mean(dim=(2, 3))))


class SearchNetwork(nn.Module):
    def __init__(self, nodes: list[LayerNode], head: HeadSpec, in_channels: int, input_size: int,
                 backbone: str = "custom", args: dict | None = None) -> None:
        super().__init__()
        self.nodes = tuple(nodes)
        self.head_spec = head
        self.in_channels = in_channels
        self.input_size = input_size
        self.backbone = backbone
        self.backbone_args = dict(args or {})
        self._check_graph()
        self.layers = nn.ModuleDict({n.name: SearchableLayer(n) for n in self.nodes})
        self.head = Head(head)
        self.mode = "search"
        # Layers whose gates move as one (tie_streams); the first of each group holds the decision.
        self.tied: tuple[tuple[str, ...], ...] = ()

    def _check_graph(self) -> None:
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names) or "input" in names or any("." in n for n in names):
            raise ValueError("layer names must be unique, not 'input', and contain no '.' (they are module names)")
        channels = {"input": self.in_channels}
        for node in self.nodes:
            if node.input not in channels or (node.skip is not None and node.skip not in channels):
                raise ValueError(f"layer {node.name} reads a layer that does not precede it")
            if channels[node.input] != node.cin or (node.skip is not None and channels[node.skip] != node.cout):
                raise ValueError(f"layer {node.name}: channel counts do not match its input or skip")
            channels[node.name] = node.cout
        if channels.get(self.head_spec.input) != self.head_spec.in_channels:
            raise ValueError("the head does not match its input layer")

    # ---- modes and parameters ----------------------------------------------------------------------------------

    def set_search_mode(self, mode: str) -> None:
        """pretrain: gates ignored (every channel on); search: gates learned (Eq. 5); finetune: gates fixed."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        for layer in self.layers.values():
            layer.psi.requires_grad_(mode == "search")
            layer.recording = mode == "search"

    def gate_parameters(self) -> Iterator[nn.Parameter]:
        return (layer.psi for layer in self.layers.values())

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        gates = {id(p) for p in self.gate_parameters()}
        return (p for p in self.parameters() if id(p) not in gates)

    # ---- gates and masks ---------------------------------------------------------------------------------------

    def _gates(self, soft: bool) -> dict[str, Tensor]:
        return {name: gate(layer.psi) if soft else hard_gate(layer.psi.detach()) for name, layer in self.layers.items()}

    def _propagate(self, gates: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Effective gates per layer (depthwise rule applied) and every tensor's alive-channel mask (Eq. 10)."""
        device = next(iter(gates.values())).device
        masks = {"input": torch.ones(self.in_channels, device=device)}
        effective = {}
        for node in self.nodes:
            g = self.layers[node.name].effective_gates(gates[node.name], masks[node.input])
            effective[node.name] = g
            masks[node.name] = active_channels(g, masks[node.skip] if node.skip else None)
        return effective, masks

    def hard_channels(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The hard-gated network's effective gates per layer [M, C] and every tensor's alive-channel mask [C]: what
        arch.json, the summaries and the sliced fine-tune (search/sliced.py) keep."""
        with torch.no_grad():
            return self._propagate(self._gates(soft=False))

    def streams(self) -> list[list[str]]:
        """Layers grouped by the channel space they write: a layer and the one its output is added to, and a
        depthwise layer with its input (its channels are its input's)."""
        parent = {node.name: node.name for node in self.nodes}

        def root(name: str) -> str:
            while parent[name] != name:
                name = parent[name]
            return name

        for node in self.nodes:
            if node.skip is not None:
                parent[root(node.name)] = root(node.skip)
            if any(op.conv_type == "depthwise" for op in node.ops) and node.input in parent:
                parent[root(node.name)] = root(node.input)
        groups: dict[str, list[str]] = {}
        for node in self.nodes:
            groups.setdefault(root(node.name), []).append(node.name)
        return list(groups.values())

    def tie_streams(self) -> tuple[tuple[str, ...], ...]:
        """Tie the gates of the layers that write one residual stream (same gate shape), so that they keep one
        channel set: layers adding different subsets of a stream export as SPLIT_V + ADD + CONCATENATION runs that
        cost latency and buy no accuracy. A stream whose layers' gates differ in shape stays free. Margins start
        from the group's first layer."""
        self.tied = tuple(tuple(group) for group in self.streams() if len(group) > 1
                          and len({tuple(self.layers[n].psi.shape) for n in group}) == 1)
        self.retie()
        return self.tied

    def retie(self) -> None:
        """Copy each tied group's decision (its first layer's gates) to the others."""
        with torch.no_grad():
            for first, *others in self.tied:
                for name in others:
                    self.layers[name].psi.copy_(self.layers[first].psi)

    def ensure_alive(self) -> list[str]:
        """Switch back on the most nearly-on usable gate of every layer whose operations produce no channel (a
        depthwise gate counts only where its input channel is alive), so the network is never cut in two and the
        hard-gated network always has a physical equivalent. Returns the layers it changed."""
        changed = []
        group_of = {name: group for group in self.tied for name in group}
        with torch.no_grad():
            masks = {"input": torch.ones(self.in_channels, device=next(self.gate_parameters()).device)}
            for node in self.nodes:
                layer = self.layers[node.name]
                effective = layer.effective_gates(hard_gate(layer.psi), masks[node.input])
                if not effective.any():
                    usable = layer.effective_gates(torch.ones_like(effective), masks[node.input]) > 0
                    margin = (layer.psi[..., 0] - layer.psi[..., 1]).masked_fill(~usable, float("-inf"))
                    op, channel = divmod(int(margin.argmax()), node.cout)
                    for name in group_of.get(node.name, (node.name,)):  # a tied stream keeps one channel set
                        psi = self.layers[name].psi
                        psi[op, channel, 0] = psi[op, channel, 1] + 1e-3
                    effective = layer.effective_gates(hard_gate(layer.psi), masks[node.input])
                    changed.append(node.name)
                masks[node.name] = active_channels(effective, masks[node.skip] if node.skip else None)
        return changed

    def forward(self, x: Tensor) -> Tensor:
        effective = None if self.mode == "pretrain" else self._propagate(self._gates(self.mode == "search"))[0]
        outputs = {"input": x}
        for node in self.nodes:
            gates = None if effective is None else effective[node.name]
            skip = outputs[node.skip] if node.skip else None
            outputs[node.name] = self.layers[node.name](outputs[node.input], gates, skip)
        return self.head(outputs[self.head_spec.input])

    # ---- what the search reads and writes (search/dynamics.py) ----------------------------------------------------

    def margins(self) -> dict[str, Tensor]:
        """psi_on - psi_off of every gate, per layer [M, C]: on where positive."""
        return {name: (layer.psi[..., 0] - layer.psi[..., 1]).detach().clone() for name, layer in self.layers.items()}

    def set_margins(self, margins: dict[str, Tensor]) -> None:
        with torch.no_grad():
            for name, m in margins.items():
                psi = self.layers[name].psi
                psi[..., 0] = m / 2
                psi[..., 1] = -m / 2

    def take_fisher(self) -> dict[str, Tensor]:
        """Each gate's Fisher information recorded since the last call (search mode), per layer [M, C]; resets it."""
        out = {}
        for name, layer in self.layers.items():
            out[name] = layer.fisher.clone()
            layer.fisher.zero_()
        return out

    def cost_gradients(self, resource: Resource) -> dict[str, Tensor]:
        """dR/dG at the current hard gates, per layer [M, C]: what each channel costs, its share of the next layer's
        input included (Eq. 8-10 through h's identity backward)."""
        gates = {name: hard_gate(layer.psi.detach()).requires_grad_(True) for name, layer in self.layers.items()}
        total = torch.as_tensor(self._resource(resource, gates))
        if not total.requires_grad:
            return {name: torch.zeros_like(g) for name, g in gates.items()}
        grads = torch.autograd.grad(total, list(gates.values()), allow_unused=True)
        return {name: torch.zeros_like(g) if d is None else d.detach()
                for (name, g), d in zip(gates.items(), grads)}

    def produced_channels(self) -> dict[str, int]:
        """Channels each layer's own operations produce in the hard-gated network (its skip input not counted)."""
        effective, _ = self.hard_channels()
        return {name: int((g.sum(dim=0) > 0).sum()) for name, g in effective.items()}

    # ---- resources ---------------------------------------------------------------------------------------------

    def _resource(self, resource: Resource, gates: dict[str, Tensor]) -> Count:
        """R(psi) of Eq. 8 over the whole network, plus the head and the non-conv ops the resource prices: the ops
        profiler.lowering lists for the hard-gated network, in the channel orders export will write
        (profiler.channel_order), each layer SPLIT or SHARED as layer_assembly finds cheaper."""
        effective, masks = self._propagate(gates)
        assemblies: dict[str, Count] = {}

        def shared(layer: LayerChannels, split: LayerRuns) -> bool:
            node = self.layers[layer.name].node
            if len(node.ops) == 1 and node.skip is None:
                return False
            kind, assemblies[node.name] = self._assembly(resource, node, effective[node.name],
                                                         masks[node.input].sum(), MergeOps.of(split),
                                                         masks[node.skip] if node.skip else None)
            return kind == SHARED

        channels = {node.name: self._layer_channels(node, effective, masks) for node in self.nodes}
        runs = layer_runs(list(channels.values()), self.in_channels, shared)
        orders = {"input": tuple(range(self.in_channels)), **{name: r.order for name, r in runs.items()}}
        skip_sources = {node.skip for node in self.nodes if node.skip}
        total: Count = 0.0
        for node in self.nodes:
            cin = masks[node.input].sum()
            couts = gamma_out(effective[node.name])
            reads = operation_reads(channels[node.name], runs[node.name], orders[node.input], node.op_specs)
            scale = 1.0 / len(node.ops)
            if average_deferred(scale, node.skip is not None, node.name in skip_sources, node.post_activation):
                scale = 1.0
            for i, (spec, cout) in enumerate(zip(node.op_specs, couts)):
                # a removed operation (no Read) is priced with its PAD: for the gradient only, see below
                read = reads.get(i, Read(pad=True))
                padded = pad_elements(spec, cout if spec.conv_type == "depthwise" else cin) if read.pad else 0
                cost = torch.as_tensor(resource.conv(spec, cin, cout)) + (resource.pad(pad_pixels(spec), padded)
                                                                          if padded else 0.0)
                if read.select != "all":  # a depthwise operation reading part of its input (export/prune)
                    cost = cost + resource.select(spec.h, spec.w, cout, contiguous=read.select == "slice")
                if scales_output(spec.activation, scale):
                    cost = cost + resource.multiply(*node.conv_hw, cout)
                # A removed operation costs nothing (a latency intercept included) but keeps its gradient, so
                # that the regularizer still weighs turning it back on.
                present = (cout > 0).to(cost.dtype).detach()
                total = total + present * cost + (1.0 - present) * (cost - cost.detach())
            total = total + assemblies.get(node.name, 0.0)
            alive = masks[node.name].sum()
            post = post_activation_op(node.post_activation, MergeOps.of(runs[node.name]))
            if post is not None:
                total = total + resource.activation(post, *node.conv_hw, alive)
            if node.pool:
                total = total + resource.max_pool(*node.conv_hw, alive)
        head_in = masks[self.head_spec.input].sum()
        total = total + resource.global_pool(*self.head_spec.in_hw, head_in)
        return total + resource.linear(head_in, self.head_spec.num_classes) + resource.base()

    @staticmethod
    def _layer_channels(node: LayerNode, effective: dict[str, Tensor], masks: dict[str, Tensor]) -> LayerChannels:
        """A hard-gated layer as profiler.channel_order reads it."""
        keeps = tuple(tuple(row.nonzero().flatten().tolist()) for row in effective[node.name].detach() > 0)
        return LayerChannels(node.name, node.input, node.skip, keeps,
                             tuple(CONV_KINDS[op.conv_type].channelwise for op in node.ops),
                             tuple((masks[node.name].detach() > 0).nonzero().flatten().tolist()))

    @staticmethod
    def _assembly(resource: Resource, node: LayerNode, gates: Tensor, cin: Tensor, split: MergeOps,
                  skip_mask: Tensor | None = None) -> tuple[str, Count]:
        """Assembling the layer's operations, and its skip input, as export does (search.resources.layer_assembly):
        `split`, the runs export would write the layer in (the skip input one more producer), or SHARED."""
        specs = [spec if bool(g.sum() > 0) else None for spec, g in zip(node.op_specs, gates)]
        if skip_mask is not None:
            gates = torch.cat([gates, skip_mask.detach().to(gates.dtype)[None]])
            specs = specs + [None]
        can_share = node.skip is None and all(op.conv_type == "normal" for op in node.ops)
        return layer_assembly(resource, specs, cin, gates, *node.conv_hw, can_share, split)

    def soft_resource(self, resource: Resource) -> Tensor:
        """R(psi): its value is the hard-gated resource, its gradient flows to psi through Eq. 5 and Eq. 10."""
        return torch.as_tensor(self._resource(resource, self._gates(soft=True)))

    def hard_resource(self, resource: Resource) -> float:
        """The exact resource of the current hard-gated architecture."""
        with torch.no_grad():
            return float(self._resource(resource, self._gates(soft=False)))

    def full_resource(self, resource: Resource) -> float:
        """The resource of the unpruned backbone (every gate on)."""
        with torch.no_grad():
            return float(self._resource(resource, {n: torch.ones_like(g) for n, g in self._gates(False).items()}))

    def min_resource(self, resource: Resource, floors: dict[str, int] | None = None) -> float:
        """The smallest reachable network: `floors[layer]` channels per layer (default one), the same first indices
        everywhere so that depthwise layers and skips keep them alive, produced by the layer's cheapest operation."""
        floors = floors or {}
        cin = {"input": self.in_channels}
        gates = {}
        with torch.no_grad():
            for node in self.nodes:
                keep = floors.get(node.name, 1)
                costs = [float(resource.conv(spec, torch.tensor(float(cin[node.input])), torch.tensor(float(keep))))
                         for spec in node.op_specs]
                g = torch.zeros_like(self.layers[node.name].psi[..., 0])
                g[costs.index(min(costs)), :keep] = 1.0
                gates[node.name] = g
                cin[node.name] = keep
            return float(self._resource(resource, gates))

    # ---- descriptions ------------------------------------------------------------------------------------------

    def conv_specs(self) -> list[ConvSpec]:
        """Every candidate operation at full width: the conditions a latency table must cover."""
        return [spec for node in self.nodes for spec in node.op_specs]

    def nonconv_ops(self) -> list[str]:
        """The non-conv ops whose latency models the table must have (names as in profiler.ops)."""
        ops = {"MEAN", "FULLY_CONNECTED"}
        ops |= {"ADD"} if any(node.skip for node in self.nodes) else set()
        ops |= {"MAX_POOL_2D"} if any(node.pool for node in self.nodes) else set()
        return sorted(ops)

    def layer_specs(self) -> list[dict]:
        """The searchable layers as built: graph position and candidate operations."""
        return [{**node.to_dict(), "ops": [op.name for op in node.ops]} for node in self.nodes]

    def layer_summary(self) -> list[dict]:
        """The current hard-gated architecture per layer: channels kept by each operation and alive outputs."""
        effective, masks = self.hard_channels()
        return [{"name": node.name, "cout": node.cout, "active_in": int(masks[node.input].sum()),
                 "active_out": int(masks[node.name].sum()),
                 "produced": int((effective[node.name].sum(dim=0) > 0).sum()),
                 "ops": {op.name: int(g.sum()) for op, g in zip(node.ops, effective[node.name])}}
                for node in self.nodes]

    def to_arch(self, extra: dict | None = None) -> dict:
        """arch.json content (docs/arch-format.md) for the current hard-gated architecture; `extra` adds the latency
        table, target and predicted latency (`{"predicted": {"latency_ms": ...}}` is merged, not replaced)."""
        from search.resources import create_resource

        extra = dict(extra or {})
        effective, masks = self.hard_channels()
        layers = []
        for node in self.nodes:
            active_in = _indices(masks[node.input])
            ops = []
            for op, g in zip(node.ops, effective[node.name]):
                keep = _indices(g)
                spec = None
                if keep:
                    cin = len(keep) if op.conv_type == "depthwise" else len(active_in)
                    spec = op.conv_spec(*node.in_hw, cin, len(keep), node.stride).to_dict()
                ops.append({**op.to_dict(), "keep": keep, "spec": spec})
            layers.append({**node.to_dict(), "active_in": active_in, "active_out": _indices(masks[node.name]),
                           "ops": ops})
        head = {**self.head_spec.to_dict(), "active_in": _indices(masks[self.head_spec.input])}
        predicted = {"params": round(self.hard_resource(create_resource("params"))),
                     "flops": round(self.hard_resource(create_resource("flops"))), "latency_ms": None}
        predicted.update(extra.pop("predicted", {}))
        return {
            "schema_version": ARCH_SCHEMA_VERSION,
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "backbone": {"name": self.backbone, "args": self.backbone_args},
            "input": {"channels": self.in_channels, "height": self.input_size, "width": self.input_size},
            "layers": layers,
            "head": head,
            "latency_table": extra.pop("latency_table", None),
            "target": extra.pop("target", None),
            "predicted": predicted,
            **extra,
        }


def _indices(mask: Tensor) -> list[int]:
    return [int(i) for i in torch.nonzero(mask > 0).flatten()]

