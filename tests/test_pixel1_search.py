"""Issue 7's last acceptance item: `fgnas-search --latency-table device_tables/pixel1.json --target 53ms --backbone
mobilenetv2` on a fresh clone, with a tiny data subset, writes an arch.json whose predicted Pixel 1 latency is at
most 53 ms (the unpruned MobileNetV2 1.0-224 is ~82 ms on that table)."""
import json
from pathlib import Path

import numpy as np
import pytest

from search.cli import main

REPO = Path(__file__).resolve().parents[1]


def _digits_image_folder(root: Path, per_class: int) -> Path:
    """scikit-learn's digits as PNG files in train/ and val/ class folders (imagefolder resizes them to 224)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for split, start in (("train", 0), ("val", per_class)):
        for label in range(3):
            folder = root / split / str(label)
            folder.mkdir(parents=True)
            images = digits.images[digits.target == label][start:start + per_class]
            for i, image in enumerate(images):
                Image.fromarray((image * 15).astype(np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.mark.slow
def test_mobilenetv2_search_on_the_pixel1_table_meets_53ms(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FGNAS_CACHE", str(tmp_path / "cache"))
    data = _digits_image_folder(tmp_path / "digits", per_class=4)
    run = tmp_path / "run"
    code = main(["--latency-table", str(REPO / "device_tables" / "pixel1.json"), "--target", "53ms",
                 "--backbone", "mobilenetv2", "--data", f"imagefolder:{data}", "--epochs-pretrain", "0",
                 "--epochs-search", "1", "--epochs-finetune", "0", "--batch-size", "4", "--gate-lr", "0.2",
                 "--bn-calibration-images", "8", "--out", str(run), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    arch = json.loads((run / "arch.json").read_text())
    assert arch["backbone"]["name"] == "mobilenetv2" and arch["input"]["height"] == 224
    assert arch["latency_table"]["device"] == "pixel1"
    assert arch["target"]["value"] == 53.0
    assert 0 < arch["predicted"]["latency_ms"] <= 53.0
    assert "meets target 53ms" in out
