"""The fine-tune's network: the hard-gated SearchNetwork physically sliced to the channels it keeps, still trainable.

With its gates fixed, the SearchNetwork still computes every pruned channel and multiplies it by zero, so a network
pruned to a quarter of its FLOPs would fine-tune at the full network's cost. `SlicedNetwork` computes only what the
gates keep: per kept operation a conv over exactly the channels it reads, writing only the channels it keeps, with
its own BatchNorm (not folded as export folds it: it trains) and activation; a layer adds its operations' outputs
per channel, scales the sum by the supernet's 1/M (M counts every candidate operation, as SearchableLayer does),
adds its skip input and applies its post-activation and pool. On the kept channels this is the SearchNetwork's
finetune-mode function, batch statistics and gradients included (tests/test_sliced.py). `write_back` returns the
trained state to the SearchNetwork's tensors at the kept positions, so checkpoints, arch.json, model.pt and export
read the SearchNetwork as before.

What differs from training the masked network, by design (pruned channels do not exist here): pruned entries (the
weights of pruned channels, and the weights a kept channel applies to a pruned input, which only ever multiply zeros)
get no weight decay and no momentum, and the BN statistics of pruned channels are not updated; none of them reaches
a kept channel, and export drops them. A head with dropout draws its mask over the alive channels only: a different
random stream than the masked network's, with the same distribution.

Every tensor holds its alive channels in their original (ascending) order, as arch.json lists them. Where an
operation or the skip covers only part of its layer's alive channels, index tensors place it (index_add) and a
depthwise operation picks its input channels (index_select); export's channel orders avoid such gathers, but in
training they cost little beside the convs, and the tied residual streams of the default search need none.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from search.layer import LayerNode
from search.network import Head, SearchNetwork
from search.operations import ACTIVATION_LAYERS, Operation

# Per dimension of a SearchNetwork tensor, the positions a sliced tensor keeps (None: all of them); () for a scalar.
Index = tuple[Tensor | None, ...]


def open_index(index: Index) -> tuple:
    """`index` as a subscript of the full tensor (numpy's ix_): full[open_index(index)] is the sliced tensor, and
    assigning to it writes the sliced tensor back."""
    tensors = [i for i, ix in enumerate(index) if ix is not None]
    subscript: list = []
    for d, ix in enumerate(index):
        if ix is None:
            subscript.append(slice(None))
        else:
            shape = [1] * len(tensors)
            shape[tensors.index(d)] = -1
            subscript.append(ix.view(shape))
    return tuple(subscript)


def _positions(subset: Tensor, within: Tensor) -> Tensor | None:
    """Where the channels `subset` sit among the channels `within` (both ascending original indices); None when
    they are all of them, so that the common case adds and reads whole tensors."""
    return None if torch.equal(subset, within) else torch.searchsorted(within, subset)


def _spread(x: Tensor, at: Tensor | None, width: int) -> Tensor:
    """x's channels placed at positions `at` of a zero tensor `width` channels wide (a pruned channel is zero in the
    masked network, so sums over the full width equal sums over the placed pieces)."""
    if at is None:
        return x
    return x.new_zeros((x.shape[0], width, *x.shape[2:])).index_add_(1, at, x)


class SlicedLayer(nn.Module):
    """One SearchableLayer cut to its alive channels: the kept operations under their original index (module
    `ops.<i>`, so that state keys match the SearchNetwork's), each reading `read_<i>` of the input's channels
    (depthwise) and writing `write_<i>` of the output's. `index` maps each of its state keys to the positions of
    the SearchableLayer's tensor it holds."""

    def __init__(self, node: LayerNode, gates: Tensor, inputs: Tensor, outputs: Tensor,
                 skip: Tensor | None) -> None:
        super().__init__()
        self.width = len(outputs)
        self.candidates = len(node.ops)
        self.ops = nn.ModuleDict()
        self.index: dict[str, Index] = {}
        for i, (spec, g) in enumerate(zip(node.ops, gates)):
            keep = torch.nonzero(g > 0).flatten()
            if not len(keep):
                continue
            depthwise = spec.conv_type == "depthwise"
            op = self.ops[str(i)] = Operation(spec, len(keep) if depthwise else len(inputs), len(keep), node.stride)
            self.register_buffer(f"read_{i}", _positions(keep, inputs) if depthwise else None, persistent=False)
            self.register_buffer(f"write_{i}", _positions(keep, outputs), persistent=False)
            for key, tensor in op.state_dict().items():
                # an operation's tensors are per output channel along dim 0 (the BN batch counter is a scalar); a
                # normal conv's weight also reads the input's alive channels along dim 1
                normal_weight = key == "conv.weight" and not depthwise
                self.index[f"ops.{i}.{key}"] = () if tensor.ndim == 0 else (keep, inputs) if normal_weight else (keep,)
        self.register_buffer("skip_at", None if skip is None else _positions(skip, outputs), persistent=False)
        self.post = ACTIVATION_LAYERS[node.post_activation](self.width)
        self.index.update({f"post.{key}": (outputs,) for key in self.post.state_dict()})
        self.pool = nn.Identity() if node.pool is None else nn.MaxPool2d(node.pool.kernel, node.pool.stride)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        y = None
        for i, op in self.ops.items():
            read = getattr(self, f"read_{i}")
            out = _spread(op(x if read is None else x.index_select(1, read)), getattr(self, f"write_{i}"), self.width)
            y = out if y is None else y + out
        if y is not None and self.candidates > 1:
            y = y / self.candidates
        if skip is not None:
            skip = _spread(skip, self.skip_at, self.width)
            y = skip if y is None else y + skip
        return self.pool(self.post(y))


class SlicedNetwork(nn.Module):
    """A SearchNetwork in finetune mode cut to its hard-gated channels, its weights copied in. `index` maps each
    state key (the SearchNetwork's own key) to the positions of the SearchNetwork's tensor it holds."""

    def __init__(self, net: SearchNetwork) -> None:
        super().__init__()
        if net.mode != "finetune":
            raise ValueError(f"a SearchNetwork is sliced in finetune mode (gates fixed), not {net.mode!r}")
        effective, masks = net.hard_channels()
        alive = {name: torch.nonzero(mask > 0).flatten() for name, mask in masks.items()}
        self.nodes = net.nodes
        self.head_input = net.head_spec.input
        self.layers = nn.ModuleDict()
        self.index: dict[str, Index] = {}
        for node in net.nodes:
            if not len(alive[node.name]):
                raise ValueError(f"layer {node.name} keeps no channel: the network is cut in two (ensure_alive "
                                 f"prevents this)")
            layer = SlicedLayer(node, effective[node.name], alive[node.input], alive[node.name],
                                alive[node.skip] if node.skip else None)
            self.layers[node.name] = layer
            self.index.update({f"layers.{node.name}.{key}": index for key, index in layer.index.items()})
        head_alive = alive[self.head_input]
        self.head = Head(replace(net.head_spec, in_channels=len(head_alive)))
        self.index["head.fc.weight"] = (None, head_alive)
        self.index["head.fc.bias"] = (None,)
        reference = net.head.fc.weight
        self.to(device=reference.device, dtype=reference.dtype)
        self.load_state_dict(self.kept(net.state_dict()))
        self.train(net.training)

    def kept(self, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        """The entries of SearchNetwork-shaped tensors (a state_dict, gradients, momentum) at this network's kept
        positions, under this network's keys."""
        return {key: tensors[key][open_index(index)] for key, index in self.index.items() if key in tensors}

    def forward(self, x: Tensor) -> Tensor:
        outputs = {"input": x}
        for node in self.nodes:
            outputs[node.name] = self.layers[node.name](outputs[node.input],
                                                        outputs[node.skip] if node.skip else None)
        return self.head(outputs[self.head_input])


def write_back(sliced: SlicedNetwork, net: SearchNetwork) -> None:
    """Copy the sliced network's weights and BN statistics into the SearchNetwork at the kept positions; pruned
    positions keep their values."""
    full = net.state_dict()
    with torch.no_grad():
        for key, tensor in sliced.state_dict().items():
            full[key][open_index(sliced.index[key])] = tensor.to(full[key].dtype)


def _weight_names(net: SearchNetwork) -> list[str]:
    """net.weight_parameters()' names, in its order: the masked fine-tune's optimizer's parameters."""
    names = {id(p): name for name, p in net.named_parameters()}
    return [names[id(p)] for p in net.weight_parameters()]


def _single_group(state: dict) -> dict:
    if len(state["param_groups"]) != 1:
        raise ValueError("the fine-tune's optimizer state has one parameter group (make_weight_optimizer)")
    return state["param_groups"][0]


def optimizer_state_to_net(state: dict, sliced: SlicedNetwork, net: SearchNetwork) -> dict:
    """The sliced optimizer's state_dict as an optimizer over net.weight_parameters() holds it: each per-parameter
    tensor (a momentum buffer) placed at the kept positions of zeros of the parameter's full shape. Checkpoints hold
    this form, the one the masked fine-tune wrote, so either kind of checkpoint resumes."""
    group = _single_group(state)
    names = [name for name, _ in sliced.named_parameters()]
    order = _weight_names(net)
    params = dict(net.named_parameters())
    out: dict[int, dict] = {}
    for i, per_param in state["state"].items():
        name = names[i]
        mapped = {}
        for key, value in per_param.items():
            if torch.is_tensor(value) and value.ndim > 0:
                full = torch.zeros_like(params[name])
                full[open_index(sliced.index[name])] = value.to(full.dtype)
                value = full
            mapped[key] = value
        out[order.index(name)] = mapped
    return {"state": out, "param_groups": [{**group, "params": list(range(len(order)))}]}


def optimizer_state_from_net(state: dict, sliced: SlicedNetwork, net: SearchNetwork) -> dict:
    """The inverse of optimizer_state_to_net: a SearchNetwork-shaped optimizer state_dict cut to the sliced
    network's parameters (the state of pruned operations' parameters is dropped)."""
    group = _single_group(state)
    names = [name for name, _ in sliced.named_parameters()]
    order = _weight_names(net)
    out: dict[int, dict] = {}
    for i, per_param in state["state"].items():
        name = order[i]
        if name not in sliced.index:
            continue
        out[names.index(name)] = {key: value[open_index(sliced.index[name])].clone()
                                  if torch.is_tensor(value) and value.ndim > 0 else value
                                  for key, value in per_param.items()}
    return {"state": out, "param_groups": [{**group, "params": list(range(len(names)))}]}


class NetShapedOptimizer:
    """The sliced network's optimizer as checkpoints see it (search/train.py's checkpoint and restore): its
    state_dict in the SearchNetwork's shapes, and loaded from them."""

    def __init__(self, optimizer: torch.optim.Optimizer, sliced: SlicedNetwork, net: SearchNetwork) -> None:
        self.optimizer = optimizer
        self.sliced = sliced
        self.net = net

    def state_dict(self) -> dict:
        return optimizer_state_to_net(self.optimizer.state_dict(), self.sliced, self.net)

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(optimizer_state_from_net(state, self.sliced, self.net))
