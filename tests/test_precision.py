import pytest
import torch

import search.precision as precision
from profiler.errors import FgnasError
from search.precision import FP32, resolve_precision

CPU = torch.device("cpu")


def test_auto_uses_bf16_and_channels_last_only_where_the_cpu_runs_it_natively(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    chosen = resolve_precision("auto", CPU)
    assert chosen.dtype == torch.bfloat16 and chosen.channels_last and not chosen.scaled
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", CPU) == FP32
    assert resolve_precision("fp32", CPU) == FP32


def test_bf16_on_a_cpu_without_it_and_fp16_on_a_cpu_are_refused_with_advice(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    with pytest.raises(FgnasError, match="no native bfloat16.*auto or fp32"):
        resolve_precision("bf16", CPU)
    with pytest.raises(FgnasError, match="fp16 is for CUDA"):
        resolve_precision("fp16", CPU)
    with pytest.raises(FgnasError, match="use one of"):
        resolve_precision("int8", CPU)


def test_search_cli_refuses_bf16_on_a_cpu_without_it_before_training(monkeypatch, capsys, tmp_path):
    from search.cli import main

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    code = main(["--target", "50%flops", "--precision", "bf16", "--train-subset", "64", "--out", str(tmp_path / "r"),
                 "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "bfloat16" in err[0]
    assert not (tmp_path / "r" / "checkpoint.pt").exists()
