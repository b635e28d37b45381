"""The README's adoption diffs are the patches the integration tests apply
(tests/integration/test_botkit_apps.py), and they stay small."""

from __future__ import annotations

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PATCHES = os.path.join(ROOT, "examples", "botkit-adoption")


def _patch(app: str) -> str:
    with open(os.path.join(PATCHES, f"{app}.patch"), encoding="utf-8") as fh:
        return fh.read()


def changed(patch: str) -> tuple[int, int]:
    lines = patch.splitlines()
    added = sum(1 for line in lines if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in lines if line.startswith("-") and not line.startswith("---"))
    return added, removed


@pytest.mark.parametrize("app,counts", [("ptb-notes", (10, 3)), ("aiogram-notes", (11, 8))])
def test_the_readme_shows_each_patch_and_its_size(app, counts):
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    patch = _patch(app)
    assert f"```diff\n{patch.rstrip()}\n```" in readme
    assert changed(patch) == counts
    assert f"`examples/{app}`,\n+{counts[0]} −{counts[1]} lines" in readme or \
        f"`examples/{app}`, +{counts[0]} −{counts[1]} lines" in readme
    assert counts[0] <= 15, "the issue's bound: about 15 lines to adopt the kit"


@pytest.mark.parametrize("app", ["ptb-notes", "aiogram-notes"])
def test_each_patch_applies_to_its_stock_app(app):
    # every hunk's context and removed lines are in the stock files as they are
    for block in re.split(r"^diff --git ", _patch(app), flags=re.M)[1:]:
        path = block.split()[0][2:]
        with open(os.path.join(ROOT, "examples", app, path), encoding="utf-8") as fh:
            original = fh.read()
        for hunk in re.split(r"^@@[^\n]*\n", block, flags=re.M)[1:]:
            before = "".join(line[1:] + "\n" for line in hunk.splitlines() if line[:1] in (" ", "-"))
            assert before in original, (app, path, before)
