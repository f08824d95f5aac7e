"""Which candidate operations a searchable layer gets (the paper's Table 2), from a named preset or a spec string.

A backbone gives each layer its own operation (e.g. VGG's 3x3 conv + ReLU) and says whether the layer's operation
is searched at all; a `SearchSpace` then replaces the factors it names (kernels, conv types, activations) and keeps
the backbone's value for the others. `channels` replaces nothing: one operation per layer, channel pruning only,
i.e. FGNAS(P).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import product

from profiler.errors import FgnasError
from search.operations import ACTIVATION_LAYERS, CONV_LAYERS, OpSpec


@dataclass(frozen=True)
class SearchSpace:
    name: str = "channels"
    kernels: tuple[int, ...] | None = None
    conv_types: tuple[str, ...] | None = None
    activations: tuple[str, ...] | None = None

    def candidates(self, base: OpSpec, cin: int, cout: int) -> tuple[OpSpec, ...]:
        """The layer's operations: the product of the searched factors, in a stable order, without duplicates.

        A depthwise candidate needs cin == cout and is left out elsewhere.
        """
        found: dict[OpSpec, None] = {}
        for conv_type, kernel, act in product(self.conv_types or (base.conv_type,), self.kernels or (base.kernel,),
                                              self.activations or (base.activation,)):
            if conv_type == "depthwise" and cin != cout:
                continue
            found[replace(base, conv_type=conv_type, kernel=kernel, activation=act)] = None
        return tuple(found) or (base,)

    def to_str(self) -> str:
        if self.name in SEARCH_SPACES and SEARCH_SPACES[self.name] == self:
            return self.name
        parts = [f"{key}={','.join(str(v) for v in values)}" for key, values in
                 (("k", self.kernels), ("conv", self.conv_types), ("act", self.activations)) if values]
        return ";".join(parts) or "channels"


SEARCH_SPACES: dict[str, SearchSpace] = {}


def register_search_space(space: SearchSpace) -> SearchSpace:
    SEARCH_SPACES[space.name] = space
    return space


register_search_space(SearchSpace("channels"))
register_search_space(SearchSpace("kernels", kernels=(1, 3, 5)))
register_search_space(SearchSpace("kernels35", kernels=(3, 5)))  # the paper's MobileNetV2 space (depthwise 3/5)
register_search_space(SearchSpace("activations", activations=("relu", "prelu", "tanh")))
register_search_space(SearchSpace("table2", kernels=(1, 3, 5, 7, 9, 11), conv_types=("normal", "depthwise"),
                                  activations=("relu", "prelu", "tanh")))


def parse_search_space(text: str) -> SearchSpace:
    """A preset name, or `k=1,3,5;conv=normal,depthwise;act=relu,prelu` (any subset of the three factors)."""
    if text in SEARCH_SPACES:
        return SEARCH_SPACES[text]
    fields: dict[str, tuple] = {}
    try:
        for part in filter(None, text.split(";")):
            key, values = part.split("=")
            items = tuple(v.strip() for v in values.split(",") if v.strip())
            if key.strip() == "k":
                fields["kernels"] = tuple(int(v) for v in items)
            elif key.strip() == "conv":
                fields["conv_types"] = items
            elif key.strip() == "act":
                fields["activations"] = items
            else:
                raise ValueError(key)
    except ValueError:
        fields = {}
    bad = [k for k in fields.get("kernels", ()) if k not in (1, 3, 5, 7, 9, 11)]
    bad += [c for c in fields.get("conv_types", ()) if c not in CONV_LAYERS]
    bad += [a for a in fields.get("activations", ()) if a not in ACTIVATION_LAYERS]
    if not fields or bad:
        raise FgnasError(f"unknown search space {text!r}: use one of {', '.join(SEARCH_SPACES)} or a spec such as "
                         f"'k=1,3,5;conv=normal,depthwise;act=relu,prelu,tanh' (odd kernels 1..11, conv types "
                         f"{'/'.join(CONV_LAYERS)}, activations {'/'.join(ACTIVATION_LAYERS)})")
    return SearchSpace("custom", **fields)


def resolve_search_space(space: str | SearchSpace) -> SearchSpace:
    return space if isinstance(space, SearchSpace) else parse_search_space(space)
