"""A search run's directory: config, checkpoint, per-epoch metrics CSV, arch.json, final weights and plots.

    RUN_DIR/config.json     the SearchConfig (what --resume checks and continues)
    RUN_DIR/checkpoint.pt   model, optimizers, lambda and the run's position; rewritten atomically every epoch
    RUN_DIR/metrics.csv     one row per epoch of every phase
    RUN_DIR/arch.json       the searched architecture (docs/arch-format.md), written when the search ends
    RUN_DIR/model.pt        the fine-tuned weights (state_dict of the SearchNetwork, gates included)
    RUN_DIR/plots/          resource.png (resource against epoch), channels.png and operations.png (Fig. 6-7)
"""
from __future__ import annotations

import csv
import io
import json
import pickle
import re
import warnings
from dataclasses import asdict, fields
from pathlib import Path

import torch

from profiler.atomic import atomic_write_bytes as _atomic_write_bytes
from profiler.errors import FgnasError
from search.arch import CONV_KINDS, write_arch
from search.targets import Target

_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+)")


def load_torch_file(path: str | Path, what: str) -> object:
    """torch.load with weights_only=True: tensors, containers and plain numbers and strings only, which is all a
    checkpoint or state_dict of ours holds (configs and states are saved as dicts, never as objects). A full unpickle
    would run whatever a crafted file names (os.system, ...), so anything else is refused with one line. `what` names
    the file for the user, e.g. "--pretrained m.pt"."""
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr, which must stay one line
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FgnasError(f"{what}: no such file") from None
    except IsADirectoryError:
        raise FgnasError(f"{what} is a directory, not a torch checkpoint") from None
    except pickle.UnpicklingError as exc:
        if "weights_only" not in str(exc):
            raise FgnasError(f"{what} is not a torch checkpoint (damaged pickle: {str(exc).splitlines()[0]})") from None
        named = _REFUSED_GLOBAL.search(str(exc))
        holds = f"it names {named.group(1).rstrip('.')}" if named else "it holds more than tensors and plain data"
        raise FgnasError(f"{what} was not loaded: {holds}, and unpickling that could run code; only checkpoints "
                         f"and state_dicts of tensors and plain data are read") from None
    except Exception as exc:  # a truncated or foreign file: torch raises several unrelated types
        raise FgnasError(f"{what} is not a torch checkpoint ({type(exc).__name__})") from None


def operation_types(layer: dict) -> int:
    """Fig. 6(b): the number of distinct sets of operations producing an alive channel of an arch.json layer (a
    channel made by two operations is a type of its own)."""
    producers: dict[int, set[int]] = {}
    for i, op in enumerate(layer["ops"]):
        for c in op["keep"]:
            producers.setdefault(c, set()).add(i)
    return len({frozenset(s) for s in producers.values()})


class RunDir:
    CONFIG = "config.json"
    CHECKPOINT = "checkpoint.pt"
    METRICS = "metrics.csv"
    ARCH = "arch.json"
    WEIGHTS = "model.pt"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    # ---- starting and resuming --------------------------------------------------------------------------------

    def start(self, config_dict: dict) -> None:
        """A new run: refuse a directory that already holds one (that is what --resume is for)."""
        if self.file(self.CHECKPOINT).exists() or self.file(self.CONFIG).exists():
            raise FgnasError(f"{self.path} already holds a search run: continue it with --resume {self.path} or "
                             f"choose another --out")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FgnasError(f"cannot create run directory {self.path}: {exc.strerror}") from None
        _atomic_write_bytes(self.file(self.CONFIG), (json.dumps(config_dict, indent=1) + "\n").encode())

    def stored_config(self) -> dict:
        """The config of the run in this directory, or FgnasError when it is not a fgnas-search run directory."""
        try:
            config = json.loads(self.file(self.CONFIG).read_text())
        except FileNotFoundError:
            raise FgnasError(f"{self.path} is not a fgnas-search run directory (no {self.CONFIG}); pass the --out of "
                             f"an earlier run to --resume") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FgnasError(f"{self.file(self.CONFIG)} is not valid JSON ({exc}); start a new run") from None
        if not isinstance(config, dict) or "target" not in config:
            raise FgnasError(f"{self.file(self.CONFIG)} is not a fgnas-search config; start a new run")
        # a run started before --streams / --price / --value existed searched with free streams, slope prices and
        # Fisher values
        return {"streams": "free", "price": "slope", "value": "fisher", **config}

    def check_same_run(self, identity: dict, stored_identity: dict) -> None:
        """--resume continues only the run that made the directory: the same target, backbone, data, ... ."""
        diffs = [f"{k} {stored_identity.get(k)!r} there, {v!r} here" for k, v in identity.items()
                 if stored_identity.get(k) != v]
        if diffs:
            raise FgnasError(f"{self.path} was made by a different run ({'; '.join(diffs)}): resume with the same "
                             f"arguments (or none), or start a new run with another --out")

    # ---- checkpoint -------------------------------------------------------------------------------------------

    def save_checkpoint(self, payload: dict) -> None:
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        _atomic_write_bytes(self.file(self.CHECKPOINT), buffer.getvalue())

    def load_checkpoint(self) -> dict | None:
        path = self.file(self.CHECKPOINT)
        if not path.exists():
            return None
        blob = load_torch_file(path, f"checkpoint {path}")
        if not isinstance(blob, dict) or not {"model", "state", "optimizers"} <= blob.keys():
            raise FgnasError(f"checkpoint {path} is not a fgnas-search checkpoint; start a new run")
        return blob

    def save_weights(self, state_dict: dict) -> Path:
        buffer = io.BytesIO()
        torch.save(state_dict, buffer)
        _atomic_write_bytes(self.file(self.WEIGHTS), buffer.getvalue())
        return self.file(self.WEIGHTS)

    # ---- results ----------------------------------------------------------------------------------------------

    def write_metrics(self, rows: list) -> Path:
        """All epochs so far (dataclass rows), rewritten atomically so the CSV always matches the checkpoint."""
        out = io.StringIO()
        if rows:
            names = [f.name for f in fields(rows[0])]
            writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: ("" if v is None else v) for k, v in asdict(row).items()})
        _atomic_write_bytes(self.file(self.METRICS), out.getvalue().encode())
        return self.file(self.METRICS)

    def write_arch(self, arch: dict) -> Path:
        return write_arch(self.file(self.ARCH), arch)

    def write_plots(self, rows: list, target: Target, arch: dict) -> list[Path]:
        """resource.png, channels.png, operations.png and widths.png (per layer, per epoch) under plots/ (matplotlib,
        Agg backend: no display needed)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plots = self.path / "plots"
        plots.mkdir(exist_ok=True)
        written = []

        columns = [("params", "params"), ("flops", "FLOPs"), ("latency_ms", "predicted latency (ms)")]
        columns = [(k, label) for k, label in columns if any(getattr(r, k) is not None for r in rows)]
        if columns:  # a run with no epochs (--pretrained, no search or fine-tune epochs) has no history to plot
            fig, axes = plt.subplots(len(columns), 1, figsize=(7, 2.4 * len(columns)), sharex=True, squeeze=False)
            x = list(range(1, len(rows) + 1))
            target_column = {"params": "params", "flops": "flops", "latency": "latency_ms"}[target.resource]
            for ax, (key, label) in zip(axes[:, 0], columns):
                ax.plot(x, [getattr(r, key) for r in rows], marker="o", ms=3)
                if key == target_column:
                    ax.axhline(target.value, color="red", ls="--", label=f"target {target}")
                    ax.legend(loc="upper right")
                for phase, color in (("search", "#fff2cc"), ("finetune", "#e2f0d9")):
                    idx = [i for i, r in zip(x, rows) if r.phase == phase]
                    if idx:
                        ax.axvspan(min(idx) - 0.5, max(idx) + 0.5, color=color, zorder=0)
                ax.set_ylabel(label)
            axes[-1, 0].set_xlabel("epoch (pretrain, search: yellow, fine-tune: green)")
            fig.tight_layout()
            written.append(self._save(fig, plots / "resource.png"))

        layers = arch["layers"]
        names = [layer["name"] for layer in layers]
        pos = range(len(layers))
        fig, ax = plt.subplots(figsize=(max(6, 0.4 * len(layers)), 3.2))
        ax.bar(pos, [layer["cout"] for layer in layers], color="#9dc3e6", label="backbone")
        ax.bar(pos, [len(layer["active_out"]) for layer in layers], color="#c55a11", width=0.5, label="searched")
        ax.set_xticks(list(pos), names, rotation=90, fontsize=7)
        ax.set_ylabel("channels")
        ax.legend()
        fig.tight_layout()
        written.append(self._save(fig, plots / "channels.png"))

        op_names = sorted({_op_label(op) for layer in layers for op in layer["ops"]})
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(6, 0.4 * len(layers)), 5.5), sharex=True)
        ax1.bar(pos, [operation_types(layer) for layer in layers], color="#70ad47")
        ax1.set_ylabel("operation types")
        bottom = [0] * len(layers)
        for name in op_names:
            counts = [sum(len(op["keep"]) for op in layer["ops"] if _op_label(op) == name) for layer in layers]
            ax2.bar(pos, counts, bottom=bottom, label=name)
            bottom = [b + c for b, c in zip(bottom, counts)]
        ax2.set_ylabel("channels per operation")
        ax2.set_xticks(list(pos), names, rotation=90, fontsize=7)
        ax2.legend(fontsize=7, ncol=min(4, len(op_names)))
        fig.tight_layout()
        written.append(self._save(fig, plots / "operations.png"))

        # How each layer's width moved, epoch by epoch (metrics.csv's widths column): where the search cut, and when.
        per_epoch = [_widths(r.widths) for r in rows]
        if per_epoch and all(per_epoch):
            grid = [[epoch.get(name, 0) / layer["cout"] for epoch in per_epoch] for name, layer in zip(names, layers)]
            fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(rows) + 2), max(3, 0.25 * len(layers) + 1)))
            image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            ax.set_yticks(list(pos), names, fontsize=7)
            ax.set_xticks(range(len(rows)), [f"{r.phase[0]}{r.epoch}" for r in rows], rotation=90, fontsize=7)
            ax.set_xlabel("epoch (p: pretrain, s: search, f: fine-tune)")
            fig.colorbar(image, ax=ax, label="share of the layer's channels produced")
            fig.tight_layout()
            written.append(self._save(fig, plots / "widths.png"))
        return written

    @staticmethod
    def _save(fig, path: Path) -> Path:
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        plt.close(fig)
        _atomic_write_bytes(path, buffer.getvalue())
        return path


def _op_label(op: dict) -> str:
    return f"{CONV_KINDS[op['conv_type']].label}{op['kernel']}x{op['kernel']} {op['activation']}"


def _widths(text: str) -> dict[str, int]:
    """metrics.csv's widths column ("name=count[ op:count ...];...") as {layer: channels produced}."""
    out = {}
    for part in filter(None, (text or "").split(";")):
        name, _, rest = part.partition("=")
        out[name] = int(rest.split()[0])
    return out
