import json
from pathlib import Path

import pytest

from profiler.errors import FgnasError
from profiler.measure.rawlog import RawLog, raw_log_path, read_records


def _record(i: int) -> dict:
    return {"v": 1, "kind": "conv", "id": f"id{i}", "spec": {"h": i}, "m": {"median_ms": 0.1 * i},
            "device": "host", "serial": None, "t": 1.0 + i}


def test_raw_log_sits_beside_the_table(tmp_path):
    assert raw_log_path(tmp_path / "device_tables" / "host.json") == tmp_path / "device_tables" / "host.raw.jsonl"


def test_appended_records_read_back_in_order(tmp_path):
    path = tmp_path / "t.raw.jsonl"
    with RawLog(path) as log:
        for i in range(3):
            log.append(_record(i))
    assert read_records(path) == [_record(i) for i in range(3)]
    assert path.read_bytes().count(b"\n") == 3


def test_missing_log_reads_as_empty(tmp_path):
    assert read_records(tmp_path / "absent.raw.jsonl") == []


def test_torn_last_line_is_dropped_on_read(tmp_path):
    path = tmp_path / "t.raw.jsonl"
    full = json.dumps(_record(2))
    path.write_text(json.dumps(_record(0)) + "\n" + json.dumps(_record(1)) + "\n" + full[: len(full) // 2])
    assert [r["id"] for r in read_records(path)] == ["id0", "id1"]


def test_reopening_cuts_the_torn_tail_so_the_next_record_stays_whole(tmp_path):
    path = tmp_path / "t.raw.jsonl"
    path.write_text(json.dumps(_record(0)) + "\n" + '{"v": 1, "kind": "co')
    with RawLog(path) as log:
        log.append(_record(1))
    assert [r["id"] for r in read_records(path)] == ["id0", "id1"]


def test_reopening_a_log_that_is_only_a_fragment_empties_it(tmp_path):
    path = tmp_path / "t.raw.jsonl"
    path.write_text('{"v": 1, "ki')
    with RawLog(path) as log:
        log.append(_record(5))
    assert [r["id"] for r in read_records(path)] == ["id5"]


def test_corrupted_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / "t.raw.jsonl"
    path.write_text(json.dumps(_record(0)) + "\n" + "garbage{\n" + json.dumps(_record(1)) + "\n")
    with pytest.raises(FgnasError, match=r"t\.raw\.jsonl:2: corrupted"):
        read_records(path)


def test_record_without_required_fields_is_refused(tmp_path):
    path = tmp_path / "t.raw.jsonl"
    path.write_text('{"v": 1, "kind": "conv"}\n')
    with pytest.raises(FgnasError, match=":1: not a raw-log record"):
        read_records(path)


def test_unwritable_log_location_is_an_fgnas_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FgnasError, match="cannot write the raw log"):
        RawLog(blocker / "sub" / "t.raw.jsonl")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux /dev/full")
def test_a_full_disk_is_an_fgnas_error_saying_how_to_resume():
    with RawLog(Path("/dev/full")) as log, pytest.raises(FgnasError, match="cannot append.*resume"):
        log.append(_record(0))


def test_a_whole_last_record_without_its_newline_is_kept_and_completed_on_reopen(tmp_path):
    path = tmp_path / "t.raw.jsonl"
    path.write_text(json.dumps(_record(0)) + "\n" + json.dumps(_record(1)))  # killed between record and newline
    assert [r["id"] for r in read_records(path)] == ["id0", "id1"]
    with RawLog(path) as log:
        log.append(_record(2))
    assert [r["id"] for r in read_records(path)] == ["id0", "id1", "id2"]
    assert path.read_bytes().count(b"\n") == 3


def test_a_last_line_that_parses_but_is_no_record_is_still_cut_as_torn(tmp_path):
    path = tmp_path / "t.raw.jsonl"
    path.write_text(json.dumps(_record(0)) + "\n" + "12")
    with RawLog(path) as log:
        log.append(_record(1))
    assert [r["id"] for r in read_records(path)] == ["id0", "id1"]


def test_a_second_writer_on_the_same_log_is_refused_and_the_lock_goes_with_the_first(tmp_path):
    path = tmp_path / "t.raw.jsonl"
    with RawLog(path) as first:
        first.append(_record(0))
        with pytest.raises(FgnasError, match="another sweep is writing"):
            RawLog(path)
    with RawLog(path) as again:
        again.append(_record(1))
    assert [r["id"] for r in read_records(path)] == ["id0", "id1"]
