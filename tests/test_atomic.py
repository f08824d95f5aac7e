"""profiler.atomic: whole-or-nothing writes with the mode a plain open() gives."""
import os

import pytest

from profiler.atomic import atomic_write_bytes, atomic_write_text
from profiler.errors import FgnasError


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_file_has_the_umask_mode_not_mkstemps_0600(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = atomic_write_text(tmp_path / "sub" / "t.json", "{}\n")
    finally:
        os.umask(old)
    assert path.read_text() == "{}\n"
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_replaces_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "m.tflite"
    atomic_write_bytes(path, b"old")
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == ["m.tflite"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temp_file(tmp_path):
    path = atomic_write_bytes(tmp_path / "m.bin", b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["m.bin"]


def test_an_unwritable_directory_is_one_fgnas_error_with_the_hint(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(FgnasError, match="cannot write .*; choose a writable --out"):
        atomic_write_text(blocker / "t.json", "{}", "choose a writable --out")
