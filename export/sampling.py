"""Random searched networks (gates drawn at random from a backbone's search space), so that tests and
benchmarks/export_latency.py exercise export on architectures no search has produced yet."""
from __future__ import annotations

import torch

from search.backbones import create_backbone
from search.network import SearchNetwork


def random_searched(backbone: str, seed: int, max_ops: int = 3, keep: tuple[float, float] = (0.1, 0.7),
                    **kwargs) -> SearchNetwork:
    """`backbone` (create_backbone kwargs) with, per layer, 1..max_ops random operations each keeping a random
    fraction of the channels, random BN statistics, in eval and finetune mode (hard gates)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = create_backbone(backbone, **kwargs)
    with torch.no_grad():
        for layer in net.layers.values():
            m, cout = layer.psi.shape[:2]
            on = torch.zeros(m, cout, dtype=torch.bool)
            chosen = torch.randperm(m, generator=g)[:int(torch.randint(1, max_ops + 1, (1,), generator=g))]
            for i in chosen:
                fraction = keep[0] + (keep[1] - keep[0]) * float(torch.rand(1, generator=g))
                on[i] = torch.rand(cout, generator=g) < fraction
                on[i, int(torch.randint(cout, (1,), generator=g))] = True
            layer.psi[..., 0] = torch.where(on, 1.0, -1.0)
            layer.psi[..., 1] = 0.0
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5, generator=g)
                module.running_var.uniform_(0.5, 2.0, generator=g)
                module.bias.uniform_(-0.3, 0.3, generator=g)
            if isinstance(module, torch.nn.PReLU):
                module.weight.uniform_(0.05, 0.5, generator=g)
    net.ensure_alive()
    net.eval()
    net.set_search_mode("finetune")
    return net
