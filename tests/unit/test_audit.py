"""The audit trail (plugins/module_utils/audit.py)."""

from __future__ import annotations

import json
import multiprocessing
import os

from audit import append, entry, line_text, tail


def _writer(path: str, n: int, who: str) -> None:
    for i in range(n):
        append(path, entry("deploy", "success", who=who, release=f"r{i}", detail="x" * 500))


def test_lines_are_appended_and_read_back_last_first_in_order(tmp_path):
    path = str(tmp_path / "audit.log")
    assert tail(path) == []
    for i in range(30):
        assert append(path, entry("deploy", "success", who="ada@laptop", release=f"r{i}", seconds=1.234,
                                  now=i))
    assert os.stat(path).st_mode & 0o777 == 0o640
    last = tail(path, 3)
    assert [e["release"] for e in last] == ["r27", "r28", "r29"]
    assert last[0] == {"time": "1970-01-01T00:00:27Z", "who": "ada@laptop", "action": "deploy",
                       "release": "r27",
                       "outcome": "success", "seconds": 1.2, "detail": ""}
    assert line_text(last[0]) == "1970-01-01T00:00:27Z ada@laptop deploy r27 success 1.2 s"


def test_nothing_is_written_where_the_app_has_no_folder(tmp_path):
    path = str(tmp_path / "missing" / "audit.log")
    assert append(path, entry("deploy", "failure")) is False
    assert not os.path.exists(tmp_path / "missing")


def test_runs_at_once_never_mix_their_lines(tmp_path):
    path = str(tmp_path / "audit.log")
    procs = [multiprocessing.Process(target=_writer, args=(path, 200, f"w{k}")) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    assert len(lines) == 800
    records = [json.loads(line) for line in lines]  # every line whole
    assert {r["who"] for r in records} == {"w0", "w1", "w2", "w3"}
    # each writer's lines in its own order
    for k in range(4):
        assert [r["release"] for r in records if r["who"] == f"w{k}"] == [f"r{i}" for i in range(200)]


def test_a_detail_is_one_line_of_bounded_length_and_a_foreign_line_is_shown_as_such(tmp_path):
    e = entry("restore", "failure", detail="line one\nline two\t" + "y" * 5000)
    assert "\n" not in e["detail"] and len(e["detail"]) == 2000
    assert e["detail"].startswith("line one line two")
    path = str(tmp_path / "audit.log")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("written by hand\n")
    append(path, e)
    first, second = tail(path, 10)
    assert first == {"unreadable": "written by hand"} and second["action"] == "restore"
    assert line_text(first) == "(not an audit line) written by hand"


def test_tail_reads_across_blocks(tmp_path):
    path = str(tmp_path / "audit.log")
    for i in range(50):
        append(path, entry("backup", "success", release=str(i), detail="z" * 300))
    assert [e["release"] for e in tail(path, 40, block=512)] == [str(i) for i in range(10, 50)]
