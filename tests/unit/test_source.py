"""Release ids from the source content, the deterministic archive, and the module."""

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ansible_collections.fieldservice.deploy.plugins.module_utils import source
from ansible_collections.fieldservice.deploy.plugins.modules import source_digest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, "playbooks", "collections")
BIN_DIR = os.path.dirname(sys.executable)


def _tool(name):
    path = os.path.join(BIN_DIR, name)
    return path if os.path.exists(path) else shutil.which(name)


FS_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Directory and file names come from disjoint alphabets ("d"/"f" first), so no path is
# both a file and a directory, and none matches a default exclude pattern.
_dir = st.from_regex(r"d[a-z0-9]{0,5}", fullmatch=True)
_file = st.from_regex(r"f[a-z0-9_]{0,6}(\.(txt|py|sh|cfg))?", fullmatch=True)
_path = st.builds(lambda dirs, name: "/".join([*dirs, name]), st.lists(_dir, max_size=2), _file)
trees = st.dictionaries(
    _path,
    st.tuples(st.binary(max_size=300), st.booleans()),  # content, executable
    min_size=1,
    max_size=8,
)


def build(root, tree, order=None, modes=None, mtime=None):
    """Create ``tree`` ({relpath: (content, exec)}) under root, files in ``order``."""
    os.makedirs(root, exist_ok=True)
    for rel in order or sorted(tree):
        content, executable = tree[rel]
        path = os.path.join(root, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(content)
        base = (modes or {}).get(rel, 0o755 if executable else 0o644)
        os.chmod(path, base)
        if mtime is not None:
            os.utime(path, (mtime, mtime))
    return root


def archive_bytes(root):
    buf = io.BytesIO()
    source.write_archive(root, source.walk_source(root), buf)
    return buf.getvalue()


# -- properties ------------------------------------------------------------------------------


@FS_SETTINGS
@given(tree=trees, data=st.data())
def test_digest_and_archive_ignore_mtime_order_and_other_mode_bits(tree, data):
    rels = sorted(tree)
    order = data.draw(st.permutations(rels))
    # Modes that keep the owner's executable bit (what counts, as in git) but change
    # every other bit, group/other x included.
    modes = {
        rel: data.draw(
            st.sampled_from([0o700, 0o711, 0o744, 0o755, 0o775] if x else [0o600, 0o640, 0o644, 0o666, 0o611])
        )
        for rel, (_, x) in tree.items()
    }
    mtime = data.draw(st.integers(min_value=1, max_value=2_000_000_000))
    with tempfile.TemporaryDirectory() as tmp:
        a = build(os.path.join(tmp, "a"), tree)
        b = build(os.path.join(tmp, "b", "nested"), tree, order=order, modes=modes, mtime=mtime)
        os.makedirs(os.path.join(b, "dempty", "deeper"))  # empty directories do not count
        assert source.digest_source(a) == source.digest_source(b)
        assert archive_bytes(a) == archive_bytes(b)


@FS_SETTINGS
@given(
    tree=trees,
    junk=st.lists(
        st.sampled_from(
            [
                ".git/HEAD",
                ".git/objects/ab/cdef",
                "__pycache__/mod.cpython-311.pyc",
                "dx/__pycache__/m.pyc",
                "fmod.pyc",
                "dx/fmod.pyo",
                ".venv/bin/python",
                "venv/lib/site.py",
                "node_modules/left-pad/index.js",
                "deployment_logs/deploy_20251010_153015.log",
                ".DS_Store",
                "dx/.DS_Store",
                ".pytest_cache/v/cache",
                ".mypy_cache/x",
                ".ruff_cache/x",
                ".tox/py311/x",
                ".hg/store",
            ]
        ),
        min_size=1,
        unique=True,
    ),
)
def test_excluded_files_do_not_count(tree, junk):
    with tempfile.TemporaryDirectory() as tmp:
        clean = build(os.path.join(tmp, "clean"), tree)
        dirty = build(os.path.join(tmp, "dirty"), tree)
        build(dirty, {rel: (b"junk " + rel.encode(), False) for rel in junk})
        assert [r for r, _ in source.walk_source(dirty)] == sorted(tree)
        assert source.digest_source(clean) == source.digest_source(dirty)
        assert archive_bytes(clean) == archive_bytes(dirty)


@FS_SETTINGS
@given(tree=trees, data=st.data())
def test_any_included_change_changes_the_digest(tree, data):
    rel = data.draw(st.sampled_from(sorted(tree)))
    content, executable = tree[rel]
    kind = data.draw(st.sampled_from(["byte", "append", "truncate", "rename", "xbit", "add"]))
    changed = dict(tree)
    if kind == "byte":
        assume(content)
        i = data.draw(st.integers(0, len(content) - 1))
        flip = data.draw(st.integers(1, 255))
        changed[rel] = (content[:i] + bytes([content[i] ^ flip]) + content[i + 1 :], executable)
    elif kind == "append":
        changed[rel] = (content + data.draw(st.binary(min_size=1, max_size=5)), executable)
    elif kind == "truncate":
        assume(content)
        changed[rel] = (content[:-1], executable)
    elif kind == "rename":
        new = data.draw(_path)
        assume(new not in tree and not any(p.startswith(new + "/") or new.startswith(p + "/") for p in tree))
        changed[new] = changed.pop(rel)
    elif kind == "xbit":
        changed[rel] = (content, not executable)
    else:
        new = data.draw(_path)
        assume(new not in tree and not any(p.startswith(new + "/") or new.startswith(p + "/") for p in tree))
        changed[new] = (b"", False)
    with tempfile.TemporaryDirectory() as tmp:
        a = build(os.path.join(tmp, "a"), tree)
        b = build(os.path.join(tmp, "b"), changed)
        digest_a, digest_b = source.digest_source(a), source.digest_source(b)
        assert digest_a != digest_b
        assert source.release_id(digest_a) == digest_a[:12]
        assert archive_bytes(a) != archive_bytes(b)


@FS_SETTINGS
@given(tree=trees)
def test_archive_holds_exactly_the_included_files(tree):
    with tempfile.TemporaryDirectory() as tmp:
        src = build(os.path.join(tmp, "src"), tree)
        build(src, {"__pycache__/fx.pyc": (b"bytecode", False), "dnode/node_modules/fpkg": (b"x", False)})
        files = source.walk_source(src)
        dest = os.path.join(tmp, "out", "source.tar.gz")
        assert source.write_archive(src, files, dest) == dest
        with open(dest, "rb") as fh:
            raw = fh.read()
        assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\0\0\0\0"  # gzip, mtime 0
        with tarfile.open(dest, "r:gz") as tar:
            members = tar.getmembers()
            assert [m.name for m in members] == sorted(tree)
            for m in members:
                content, executable = tree[m.name]
                assert m.isfile()
                assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
                assert m.mode == (0o755 if executable else 0o644)
                assert tar.extractfile(m).read() == content
        summary = source.digest_files(src, files)
        assert summary["files"] == len(tree)
        assert summary["bytes"] == sum(len(c) for c, _ in tree.values())


# -- examples ------------------------------------------------------------------------------


def test_known_digest_is_stable(tmp_path):
    """The format of the digest is a contract: changing it renames every release."""
    build(str(tmp_path), {"fa.txt": (b"hello\n", False), "d/run.sh": (b"#!/bin/sh\n", True)})
    expected = hashlib.sha256()
    expected.update(b"fs_release digest v1\n")
    for rel, kind, content in (("d/run.sh", b"fx", b"#!/bin/sh\n"), ("fa.txt", b"f-", b"hello\n")):
        expected.update(
            rel.encode() + b"\0" + kind + b"\0" + hashlib.sha256(content).hexdigest().encode() + b"\n"
        )
    assert source.digest_source(str(tmp_path)) == expected.hexdigest()


def test_exclude_matches_components_and_relative_paths(tmp_path):
    root = build(
        str(tmp_path),
        {
            "docs/a.md": (b"a", False),
            "docs/sub/b.md": (b"b", False),
            "docs/c.txt": (b"c", False),
            "app/docs/d.md": (b"d", False),
            "app/secret.env": (b"e", False),
        },
    )
    # "sec*.env" matches the component "secret.env", not the path "app/secret.env".
    kept = [r for r, _ in source.walk_source(root, ["docs/*.md", "sec*.env"])]
    # fnmatch's * also matches "/", so docs/*.md covers docs/sub/b.md too.
    assert kept == ["app/docs/d.md", "docs/c.txt"]
    assert [r for r, _ in source.walk_source(root, ["docs"])] == ["app/secret.env"]
    assert len(source.walk_source(root, [])) == 5
    assert source.is_excluded("a/__pycache__/x.py", source.DEFAULT_EXCLUDE)
    assert not source.is_excluded("a/pycache/x.py", source.DEFAULT_EXCLUDE)


def test_symlinks_inside_are_kept_as_links(tmp_path):
    root = build(str(tmp_path / "src"), {"lib/real.py": (b"x = 1\n", False)})
    os.symlink("lib/real.py", os.path.join(root, "alias.py"))
    os.symlink("lib", os.path.join(root, "libdir"))
    os.symlink("missing-but-inside", os.path.join(root, "dangling"))
    files = source.walk_source(root)
    assert [r for r, _ in files] == ["alias.py", "dangling", "lib/real.py", "libdir"]
    digest = source.digest_files(root, files)
    assert digest["files"] == 4 and digest["bytes"] == 6
    buf = io.BytesIO()
    source.write_archive(root, files, buf)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue()), mode="r:gz") as tar:
        links = {m.name: m.linkname for m in tar.getmembers() if m.issym()}
    assert links == {"alias.py": "lib/real.py", "dangling": "missing-but-inside", "libdir": "lib"}
    # the link target counts
    os.remove(os.path.join(root, "alias.py"))
    os.symlink("./lib/real.py", os.path.join(root, "alias.py"))
    assert source.digest_source(root) != digest["digest"]


@pytest.mark.parametrize(
    "target, where",
    [
        ("../outside.txt", "escape.txt"),
        ("../not-there.txt", "dangling-out.txt"),
        ("/etc/passwd", "abs.txt"),
        ("../../outside.txt", "d/escape.txt"),
        ("out/file.txt", "via-link.txt"),  # "out" is itself a link to outside
    ],
)
def test_symlinks_leading_outside_are_refused(tmp_path, target, where):
    (tmp_path / "outside.txt").write_text("secret")
    os.makedirs(tmp_path / "outdir")
    (tmp_path / "outdir" / "file.txt").write_text("secret")
    root = build(str(tmp_path / "src"), {"d/fok.txt": (b"ok", False)})
    if target.startswith("out/"):
        os.symlink(str(tmp_path / "outdir"), os.path.join(root, "out"))
        excluded = ["out"]  # the absolute dir link itself is excluded, the file link is not
    else:
        excluded = []
    os.symlink(target, os.path.join(root, *where.split("/")))
    with pytest.raises(source.SourceError, match=r"outside the source tree|is absolute") as exc:
        source.walk_source(root, excluded)
    assert where in str(exc.value)
    # excluding the link makes the tree acceptable again
    assert source.walk_source(root, [*excluded, os.path.basename(where)])


def test_bad_roots_and_special_files(tmp_path):
    with pytest.raises(source.SourceError, match="does not exist"):
        source.walk_source(str(tmp_path / "nope"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(source.SourceError, match="not a directory"):
        source.walk_source(str(tmp_path / "file"))
    root = build(str(tmp_path / "src"), {"fa": (b"a", False)})
    os.mkfifo(os.path.join(root, "fpipe"))
    with pytest.raises(source.SourceError, match="fpipe.*not a regular file"):
        source.walk_source(root)
    assert [r for r, _ in source.walk_source(root, ["fpipe"])] == ["fa"]


def test_release_id():
    assert source.release_id("0123456789abcdef" * 4) == "0123456789ab"
    with pytest.raises(ValueError):
        source.release_id("xyz")


def test_update_archive_is_honest_about_changes(tmp_path):
    root = build(str(tmp_path / "src"), {"fa": (b"a", False), "d/fb.sh": (b"b", True)})
    dest = str(tmp_path / "cache" / "deeper" / "source.tar.gz")
    files = source.walk_source(root)
    assert source.update_archive(root, files, dest, check_mode=True) is True
    assert not os.path.exists(os.path.dirname(dest))  # check mode writes nothing
    assert source.update_archive(root, files, dest) is True
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    inode = os.stat(dest).st_ino
    assert source.update_archive(root, files, dest, check_mode=True) is False
    assert source.update_archive(root, files, dest) is False
    assert os.stat(dest).st_ino == inode  # not rewritten
    assert sorted(os.listdir(os.path.dirname(dest))) == ["source.tar.gz"]  # no temp left
    os.utime(os.path.join(root, "fa"), (1, 1))
    assert source.update_archive(root, source.walk_source(root), dest) is False
    with open(os.path.join(root, "fa"), "wb") as fh:
        fh.write(b"A")
    files = source.walk_source(root)
    assert source.update_archive(root, files, dest, check_mode=True) is True
    assert os.stat(dest).st_ino == inode
    assert source.update_archive(root, files, dest) is True
    with tarfile.open(dest) as tar:
        assert tar.extractfile("fa").read() == b"A"
    with pytest.raises(source.SourceError, match="is a directory"):
        source.update_archive(root, files, str(tmp_path))


# -- the module ------------------------------------------------------------------------------
# (its documentation against its argument spec and ansible-doc are checked by
# ansible-test sanity in scripts/test)


def test_the_documented_exclude_is_the_code_default():
    docs = yaml.safe_load(source_digest.DOCUMENTATION)
    assert docs["options"]["exclude"]["default"] == list(source.DEFAULT_EXCLUDE)


PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  vars:
    out: "{{ playbook_dir }}/out"
  tasks:
    - name: First run writes the archive
      fieldservice.deploy.source_digest:
        path: "{{ src }}"
        archive: "{{ out }}/cache/source.tar.gz"
      register: first
    - name: Second run finds the same content
      fieldservice.deploy.source_digest:
        path: "{{ src }}"
        archive: "{{ out }}/cache/source.tar.gz"
      register: second
    - name: Check mode against a new archive path writes nothing
      fieldservice.deploy.source_digest:
        path: "{{ src }}"
        archive: "{{ out }}/check/source.tar.gz"
      check_mode: true
      register: checked
    - name: Custom exclude, no archive
      fieldservice.deploy.source_digest:
        path: "{{ src }}"
        exclude: [docs, .git]
      register: custom
    - name: A missing directory is a clear error
      fieldservice.deploy.source_digest:
        path: "{{ src }}/missing"
      register: missing
      ignore_errors: true
    - name: Unknown option is refused
      fieldservice.deploy.source_digest:
        path: "{{ src }}"
        bogus: 1
      register: bogus
      ignore_errors: true
    - name: Save the results
      ansible.builtin.copy:
        dest: "{{ out }}/results.json"
        content: "{{ {'first': first, 'second': second, 'checked': checked, 'custom': custom,
                      'missing': missing, 'bogus': bogus} | to_json }}"
        mode: "0600"
"""


def test_module_through_ansible_playbook(tmp_path):
    tool = _tool("ansible-playbook")
    src = build(
        str(tmp_path / "src"),
        {
            "app/main.py": (b"print('hi')\n", False),
            "bin/run": (b"#!/bin/sh\nexec python app/main.py\n", True),
            "docs/readme.md": (b"# docs\n", False),
        },
    )
    build(src, {".git/HEAD": (b"ref: refs/heads/main\n", False), "app/__pycache__/main.pyc": (b"x", False)})
    play = tmp_path / "play"
    play.mkdir()
    (play / "test.yml").write_text(textwrap.dedent(PLAYBOOK))
    (play / "hosts.ini").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    (play / "ansible.cfg").write_text("[defaults]\nretry_files_enabled = false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_CONFIG=str(play / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
        ANSIBLE_LOCAL_TEMP=str(tmp_path / ".ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
    )
    res = subprocess.run(
        [tool, "-i", str(play / "hosts.ini"), str(play / "test.yml"), "-e", f"src={src}"],
        cwd=str(play),
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    results = json.loads((play / "out" / "results.json").read_text())
    first, second, checked = results["first"], results["second"], results["checked"]

    expected = source.digest_files(src, source.walk_source(src))
    assert first["digest"] == expected["digest"]
    assert first["release_id"] == expected["digest"][:12]
    assert first["files"] == 3
    assert first["bytes"] == expected["bytes"]
    archive = str(play / "out" / "cache" / "source.tar.gz")
    assert first["archive"] == archive and first["changed"] is True
    assert second["changed"] is False and second["digest"] == first["digest"]
    assert checked["changed"] is True and checked["digest"] == first["digest"]
    assert not (play / "out" / "check").exists()
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["app/main.py", "bin/run", "docs/readme.md"]

    custom = results["custom"]
    assert custom["files"] == 3  # docs out, __pycache__ back in
    assert custom["archive"] is None and custom["changed"] is False
    assert custom["digest"] != first["digest"]

    missing = results["missing"]
    assert missing["failed"] is True
    assert "does not exist" in missing["msg"] and "missing" in missing["msg"]
    assert results["bogus"]["failed"] is True and "bogus" in results["bogus"]["msg"]


def test_follow_keeps_a_link_to_a_file_elsewhere_as_that_file(tmp_path):
    (tmp_path / "shared.py").write_text("shared = True\n")
    root = build(str(tmp_path / "src"), {"pkg/own.py": (b"own = 1\n", False)})
    os.symlink("../../shared.py", os.path.join(root, "pkg", "shared.py"))
    with pytest.raises(source.SourceError, match="outside"):
        source.walk_source(root)
    files = source.walk_source(root, follow=True)
    assert [r for r, _ in files] == ["pkg/own.py", "pkg/shared.py"]
    buf = io.BytesIO()
    source.write_archive(root, files, buf)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue()), mode="r:gz") as tar:
        member = tar.getmember("pkg/shared.py")
        assert member.isfile() and tar.extractfile(member).read() == b"shared = True\n"
    # the file's content counts, as a regular file's does
    before = source.digest_files(root, files)["digest"]
    (tmp_path / "shared.py").write_text("shared = False\n")
    assert source.digest_files(root, source.walk_source(root, follow=True))["digest"] != before
    # a link to a directory is not followed
    os.symlink(str(tmp_path), os.path.join(root, "up"))
    with pytest.raises(source.SourceError, match="regular file"):
        source.walk_source(root, follow=True)
