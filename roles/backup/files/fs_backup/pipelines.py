# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The two pipelines: a dump (pg_dump | compressor | age) and a read-back
([age -d] | decompressor), which check, verify and restore feed onwards."""

from __future__ import annotations

import os

from .compression import backup_kind, compressor_stage, decompressor_argv
from .encryption import KeyPipes, age_binary, encryption_stage
from .errors import BackupError
from .execute import Stage
from .postgresql import pg_dump_stage, sql_complete


def build_stages(args) -> list[Stage]:
    """The dump pipeline, in order: pg_dump | compressor | age."""
    encryption = encryption_stage(args)  # first: fail closed before pg_dump runs
    stages = [pg_dump_stage(args)]
    compressor = compressor_stage(args.compress, args.level, args.threads)
    if compressor is not None:
        stages.append(compressor)
    if encryption is not None:
        stages.append(encryption)
    return stages


def source_stages(path: str, identity: bytes | None, keys: KeyPipes) -> list[Stage]:
    """Stages that turn a backup file back into SQL: [age -d] | decompressor.

    The last one checks that the SQL ends with pg_dump's trailer.
    """
    name = os.path.basename(path)
    kind, encrypted = backup_kind(name)
    stages: list[Stage] = []
    if encrypted:
        if identity is None:
            raise BackupError(f"{name} is encrypted: the age private key is needed to read it "
                              "(from Vault: give it on stdin with --identity-stdin)")
        fd = keys.make(identity)
        stages.append(Stage("age", [age_binary(), "-d", "-i", f"/dev/fd/{fd}", path],
                            pass_fds=(fd,)))
    decompress = decompressor_argv(kind, None if encrypted else path)
    if decompress is not None:
        stages.append(Stage(decompress[0], decompress[1]))
    elif not encrypted:
        stages.append(Stage("cat", ["cat", path]))
    stages[-1].check_output = sql_complete
    return stages
