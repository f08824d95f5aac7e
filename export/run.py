"""Read a finished search run: arch.json, the fine-tuned weights, and the gated network they came from."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from profiler.errors import FgnasError
from search.arch import Arch, as_arch, load_arch
from search.network import SearchNetwork


@dataclass(frozen=True, eq=False)
class SearchedRun:
    path: Path
    arch: Arch
    state_dict: dict
    net: SearchNetwork  # the gated network, eval and finetune mode: the reference the export must reproduce

    @property
    def data(self) -> str | None:
        """The data set the search ran on (arch.json's `search.data`, else config.json's `data`)."""
        if self.arch.data:
            return self.arch.data
        try:
            return json.loads((self.path / "config.json").read_text()).get("data")
        except (OSError, ValueError):
            return None


def _keeps(arch: Arch) -> list:
    return [[op.keep for op in layer.ops] for layer in arch.layers]


def build_gated(arch: Arch, state_dict: dict) -> SearchNetwork:
    """The backbone arch.json names, with the weights loaded; FgnasError when they do not fit it or its gates."""
    from search.backbones import create_backbone

    backbone = arch.backbone
    net = create_backbone(backbone.name, **backbone.args)
    try:
        net.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise FgnasError(f"the weights do not match arch.json's {backbone.name} network ({detail}); pass the "
                         f"model.pt of the same run") from None
    net.eval()
    net.set_search_mode("finetune")
    if _keeps(as_arch(net.to_arch())) != _keeps(arch):
        raise FgnasError("the weights' gates select other channels than arch.json; pass the arch.json and model.pt "
                         "of the same run")
    return net


def load_run(run_dir: str | Path, weights: str = "model.pt") -> SearchedRun:
    path = Path(run_dir)
    if not path.is_dir():
        raise FgnasError(f"{path} is not a directory: pass the --out directory of a fgnas-search run")
    if not (path / "arch.json").exists():
        hint = (f"continue it with fgnas-search --resume {path}" if (path / "checkpoint.pt").exists()
                else "pass the --out directory of a finished fgnas-search run")
        raise FgnasError(f"{path} holds no finished search (no arch.json): {hint}")
    arch = load_arch(path / "arch.json")
    weights_path = path / weights
    if not weights_path.exists():
        raise FgnasError(f"{path} has arch.json but no {weights}: the search did not finish writing; re-run it")
    try:
        state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: torch raises several unrelated types
        raise FgnasError(f"{weights_path} cannot be read as weights ({type(exc).__name__}); "
                         f"re-run the search") from None
    if not isinstance(state_dict, dict):
        raise FgnasError(f"{weights_path} is not a state_dict; pass the model.pt fgnas-search wrote")
    return SearchedRun(path, arch, state_dict, build_gated(arch, state_dict))
