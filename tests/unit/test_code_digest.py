"""The code_digest lookup: the provisioning stamp's view of this tool's code."""

from __future__ import annotations

import os
import shutil

from ansible_collections.fieldservice.deploy.plugins.lookup import code_digest as lookup

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tree(base, files):
    for rel, text in files.items():
        path = os.path.join(base, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    return str(base)


def test_same_code_same_digest_anywhere_and_any_change_counts(tmp_path):
    files = {"roles/a/tasks/main.yml": "---\n", "plugins/modules/m.py": "x = 1\n",
             "plugins/modules/__pycache__/m.cpython-313.pyc": "junk", "tests/t.py": "not code"}
    one = lookup.code_digest(tree(tmp_path / "one", files))
    two = lookup.code_digest(tree(tmp_path / "two", files))
    assert one == two and len(one) == 64
    # byte code and files outside roles/ and plugins/ do not count
    three = tree(tmp_path / "three", {**files, "tests/t.py": "changed",
                                     "plugins/modules/__pycache__/m.cpython-313.pyc": "other"})
    assert lookup.code_digest(three) == one
    # a changed, added or renamed file does
    for change in ({"plugins/modules/m.py": "x = 2\n"}, {"roles/a/files/new": ""},
                   {"roles/a/tasks/main.yml": None, "roles/a/tasks/other.yml": "---\n"}):
        target = tmp_path / f"c{len(os.listdir(tmp_path))}"
        shutil.copytree(tmp_path / "one", target)
        for rel, text in change.items():
            if text is None:
                os.unlink(target / rel)
            else:
                tree(target, {rel: text})
        assert lookup.code_digest(str(target)) != one, change


def test_the_lookup_digests_the_collection_it_belongs_to():
    (digest,) = lookup.LookupModule().run([])
    assert digest == lookup.code_digest(ROOT)
