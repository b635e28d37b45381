# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Encryption with age (https://age-encryption.org).

The server holds only public keys (recipients) and can never read a backup
back; the private key (identity) comes from Vault, on stdin, only to verify
or restore, and is handed to ``age -d`` through a pipe (``/dev/fd/N``),
never written to disk. Everything fails closed: asked to encrypt without a
usable recipient or without the tool, no backup is written.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence

from .errors import BackupError, one_line
from .execute import Stage
from .files import write_all

AGE_HEADER = b"age-encryption.org/v1\n"
PRIVATE_KEY_MARK = "AGE-SECRET-KEY"
RECIPIENT_RE = re.compile(r"^(age1[0-9a-z]{20,}|ssh-(ed25519|rsa) [A-Za-z0-9+/=]+( .*)?)$")
_PROBE_TIMEOUT_SECONDS = 20.0


def is_private_key(text: str) -> bool:
    """Anything that looks like an age private key (``AGE-SECRET-KEY-1...``)."""
    return PRIVATE_KEY_MARK in text.upper()


def is_public_key(text: str) -> bool:
    """An age public key (``age1...``) or an SSH public key (ssh-ed25519, ssh-rsa)."""
    return bool(RECIPIENT_RE.match(text)) and not is_private_key(text)


def load_recipients(recipients: Sequence[str], files: Sequence[str]) -> list[str]:
    """The age recipients (public keys) from the command line and files.

    Fails closed: no recipient, an unreadable file, or anything that is not
    a public key (a private key above all) is an error before any dump.
    """
    found = [r.strip() for r in recipients if r and r.strip()]
    for path in files:
        try:
            with open(path, encoding="utf-8") as handle:
                found += [line.strip() for line in handle
                          if line.strip() and not line.lstrip().startswith("#")]
        except OSError as exc:
            raise BackupError(f"encryption is on but the recipients file {path} cannot be "
                              f"read ({exc.strerror}): no backup written") from exc
    if not found:
        raise BackupError("encryption is on but no recipient (age public key) is configured: "
                          "no backup written")
    for recipient in found:
        if is_private_key(recipient):
            raise BackupError("an age PRIVATE key was given as recipient: the server must hold "
                              "only the public key (age1...); no backup written")
        if not is_public_key(recipient):
            raise BackupError(f"encryption recipient {recipient[:24]!r}... is not an age public "
                              "key (age1...) or an SSH public key: no backup written")
    return found


def age_binary() -> str:
    age = shutil.which("age")
    if not age:
        raise BackupError("encryption is on (age) but the age tool is not installed on this "
                          "server: no backup written")
    return age


def encryption_stage(args) -> Stage | None:
    """``age -r <recipient>...`` after the compressor, or None without encryption.

    The recipients are tried on an empty input first, so a key that age
    rejects stops the run before pg_dump starts.
    """
    if getattr(args, "encrypt", "none") == "none":
        return None
    recipients = load_recipients(args.recipient or [], args.recipients_file or [])
    argv = [age_binary()]
    for recipient in recipients:
        argv += ["-r", recipient]
    probe = subprocess.run(argv, input=b"", capture_output=True, timeout=_PROBE_TIMEOUT_SECONDS,
                           check=False)
    if probe.returncode != 0:
        raise BackupError(f"age refuses the recipients: "
                          f"{one_line(probe.stderr.decode('utf-8', 'replace'))}; no backup written")
    return Stage("age", argv)


def read_secret_file(path: str, what: str, remove: bool = False) -> bytes:
    """The bytes of a file that holds a secret; deleted once read when ``remove``."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise BackupError(f"cannot read {what} {path}: {exc.strerror}") from exc
    finally:
        if remove:
            try:
                os.unlink(path)
            except OSError:
                pass  # gone already, or the caller's cleanup deletes it
    return data


def read_identity(args) -> bytes | None:
    """The age identity (private key) from stdin or a file, if one was given."""
    data = None
    if getattr(args, "identity_stdin", False):
        data = sys.stdin.buffer.read()
    elif getattr(args, "identity_file", None):
        data = read_secret_file(args.identity_file, "the identity file",
                                getattr(args, "remove_secret_files", False))
    if data is None:
        return None
    if b"AGE-SECRET-KEY-1" not in data.upper():
        raise BackupError("the identity given is not an age private key (AGE-SECRET-KEY-1...)")
    return data


class KeyPipes:
    """Pipes that hold a key for a child to read as /dev/fd/N; closed on exit."""

    def __init__(self):
        self.fds: list[int] = []

    def make(self, data: bytes) -> int:
        if len(data) > 60000:
            raise BackupError("the identity is too large")
        read_fd, write_fd = os.pipe()
        try:
            write_all(write_fd, data if data.endswith(b"\n") else data + b"\n", "key pipe")
        finally:
            os.close(write_fd)
        self.fds.append(read_fd)
        return read_fd

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []
        return False
