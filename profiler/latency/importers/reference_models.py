"""The standard Keras mobile models an imported phone table must price, and the published whole-model latencies it
is validated on (never fitted to).

Each model is `keras.applications.<family>(weights=None, alpha=WIDTH, input_shape=(SIZE, SIZE, 3),
classifier_activation=None or "softmax")`, converted to float32 TFLite through
profiler.measure.model_builder.convert_function (the path export takes). TensorFlow is imported only by `convert` (in
the process that calls it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The widths keras.applications offers for each family (its documented alpha values), within 0.35..1.4.
FAMILY_WIDTHS: dict[str, tuple[float, ...]] = {
    "MobileNet": (0.5, 0.75, 1.0),
    "MobileNetV2": (0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
    "MobileNetV3Large": (0.75, 1.0),
    "MobileNetV3Small": (0.75, 1.0),
}
INPUT_SIZES = (96, 128, 160, 192, 224)


@dataclass(frozen=True)
class KerasModel:
    family: str
    width: float
    size: int
    softmax: bool = False

    @property
    def name(self) -> str:
        return f"{self.family}_{self.width:g}_{self.size}{'_softmax' if self.softmax else ''}"

    def path(self, directory: Path) -> Path:
        return Path(directory) / f"{self.name}.tflite"


@dataclass(frozen=True)
class PublishedLatency:
    model: KerasModel
    ms: float
    source: str


_SLIM = "tensorflow/models research/slim/nets/mobilenet README (Pixel 1, TFLite float, one big core)"
_PROXYLESS = "mit-han-lab/proxylessnas README (Pixel 1, TFLite, one big core)"
PIXEL1_PUBLISHED: tuple[PublishedLatency, ...] = (
    *(PublishedLatency(KerasModel("MobileNetV2", width, 224), ms, _SLIM)
      for width, ms in ((1.4, 138.0), (1.3, 123.0), (1.0, 73.8), (0.75, 55.8), (0.5, 28.7), (0.35, 19.7))),
    PublishedLatency(KerasModel("MobileNet", 1.0, 224), 113.0, _PROXYLESS),
)


def full_grid() -> list[KerasModel]:
    """Every family x offered width x input size 96..224 (step 32), with and without softmax."""
    return [KerasModel(family, width, size, softmax) for family, widths in FAMILY_WIDTHS.items()
            for width in widths for size in INPUT_SIZES for softmax in (False, True)]


def representative_grid() -> list[KerasModel]:
    """Per family: the narrowest width at 96 px with softmax and the widest at 160 px without (both sizes off the
    lookup table's 224); what the test suite converts (tests/test_pixel1_coverage.py)."""
    grid = []
    for family, widths in FAMILY_WIDTHS.items():
        grid += [KerasModel(family, widths[0], 96, True), KerasModel(family, widths[-1], 160, False)]
    return grid


def convert(models: list[KerasModel], directory: Path) -> list[Path]:
    """Convert each model not already in `directory` (one TensorFlow import for all); the paths, in order."""
    from profiler.atomic import atomic_write_bytes
    from profiler.measure.model_builder import convert_function, load_tensorflow

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for model in models:
        path = model.path(directory)
        if not path.exists():
            tf = load_tensorflow()
            build = getattr(tf.keras.applications, model.family)
            net = build(weights=None, alpha=model.width, input_shape=(model.size, model.size, 3),
                        classifier_activation="softmax" if model.softmax else None)
            atomic_write_bytes(path, convert_function(lambda x, net=net: net(x, training=False),
                                                      [(1, model.size, model.size, 3)]))
            tf.keras.backend.clear_session()
        paths.append(path)
    return paths


if __name__ == "__main__":  # python -m profiler.latency.importers.reference_models DIR [full|representative]
    import sys

    which = full_grid() if len(sys.argv) > 2 and sys.argv[2] == "full" else representative_grid()
    models = which + [p.model for p in PIXEL1_PUBLISHED]
    for p in convert(list(dict.fromkeys(models)), Path(sys.argv[1])):
        print(p)
