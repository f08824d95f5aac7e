"""Helpers shared by test modules (functions, not fixtures: those are in tests/conftest.py).

- running a CLI's main(argv) on hostile input and checking it refuses in one line, changing no file;
- running a console script as a shell would;
- a finished search run directory without training.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent  # the console scripts of the environment running the tests


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative path) and the sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refuses_in_one_line(main: Callable[[list[str]], int], argv: list[str], folder: Path, capsys, code: int,
                        message: str, created: tuple[str, ...] = (), changed: tuple[str, ...] = ()) -> str:
    """Run `main(argv)` in `folder` and check: exit `code`, exactly one line on stderr containing `message`, no
    traceback, and no file in the folder changed or appeared except those named in `created` / `changed`. Returns
    stderr."""
    before = snapshot(folder)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        got = main(argv)
    except SystemExit as exc:  # argparse's own usage errors (profiler.cli_parser: one line, exit 2)
        got = exc.code
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert got == code, err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err and "Traceback" not in err, err
    after = snapshot(folder)

    def kept(files: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in files.items() if k not in changed}

    assert kept(after) == kept(before) | {k: after[k] for k in created if k in after}
    return err


def console(script: str, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run one of the project's console scripts as a shell would (its own sys.argv, a fresh process)."""
    return subprocess.run([str(BIN / script), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def set_at(path: list, value) -> Callable[[dict], None]:
    """An edit of a JSON document: set the value at `path` (keys and list indices)."""
    def edit(doc: dict) -> None:
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def searched_run(path: Path, seed: int = 0, extra: dict | None = None):
    """A finished fgnas-search run directory at `path` (arch.json + model.pt of a randomly gated digits network,
    `extra` merged into arch.json), made without training. Returns its search.rundir.RunDir."""
    from export.sampling import random_searched
    from search.rundir import RunDir

    net = random_searched("digits", seed, max_ops=2, search_space="kernels")
    rd = RunDir(path)
    path.mkdir(parents=True, exist_ok=True)
    rd.write_arch(net.to_arch({"search": {"data": "digits"}, **(extra or {})}))
    rd.save_weights(net.state_dict())
    return rd


def synthetic_table_file(path: Path) -> Path:
    """tests/synthetic_table.py's records fitted and saved as a latency table at `path` (its raw log beside it)."""
    import synthetic_table as syn
    from profiler.latency.table import LatencyTable

    recs = syn.records()
    raw = syn.write_raw_log(path.with_suffix(".raw.jsonl"), recs)
    return LatencyTable.build(recs, syn.DEVICE, syn.SETTINGS, raw).save(path)
