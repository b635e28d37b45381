"""The restore drill's comparison of a loaded backup with the live database."""

from __future__ import annotations

import pytest
from fs_backup.actions.verify import _differences_text, compare_counts, parse_counts


def test_counts_are_read_from_psql_output():
    assert parse_counts("public.a|10\npublic.\"odd|name\"|3\n\n") == {"public.a": 10, 'public."odd|name"': 3}


@pytest.mark.parametrize(("backup", "live", "tolerance", "differ"), [
    ({"t": 100}, {"t": 110}, 10, []),                       # within 10 %
    ({"t": 100}, {"t": 111}, 10, ["t"]),                    # beyond
    ({"t": 100}, {"t": 89}, 10, ["t"]),                     # fewer rows live
    ({"t": 0}, {"t": 0}, 10, []),
    ({"t": 0}, {"t": 1}, 10, ["t"]),                        # an empty table is compared exactly
    ({"t": 5, "gone": 1}, {"t": 5}, 10, ["gone"]),          # a table missing live
    ({"t": 5}, {"t": 5, "new": 7}, 10, ["new"]),            # a table the backup lacks
    ({"t": 100}, {"t": 150}, 50, []),
])
def test_tables_differ_beyond_the_tolerance(backup, live, tolerance, differ):
    assert [d["table"] for d in compare_counts(backup, live, tolerance)] == differ


def test_what_differs_is_said_table_by_table():
    differ = compare_counts({"a": 1, "b": 10, "c": 4000}, {"b": 10, "c": 8000, "d": 3}, 10)
    assert _differences_text(differ, 10) == (
        "the copy differs from the live database beyond 10 %: a is not in the live database (1 rows in the "
        "backup); c: 4000 rows in the backup, 8000 live; d is not in the backup (3 rows live)")
    many = compare_counts({f"t{i}": 1 for i in range(8)}, {}, 10)
    assert _differences_text(many, 10).endswith("; and 3 more")
