# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``check FILE``: read a backup back whole, touching no database.

Checksum, then decryption (the identity on stdin or in a file) and
decompression of the whole file, and pg_dump's end-of-dump trailer at the
end of the SQL. What restore does before it changes anything.
"""

from __future__ import annotations

import logging
import os
import time

from ..checksum import verify_checksum
from ..encryption import KeyPipes, read_identity
from ..execute import run_stream
from ..names import ENCRYPTED_SUFFIX
from ..pipelines import source_stages

log = logging.getLogger(__name__)


def run(args) -> dict:
    """Checksum, then decrypt and decompress the whole file (nothing is loaded)."""
    path = os.path.abspath(args.file)
    digest, _sidecar = verify_checksum(path)
    identity = read_identity(args)
    started = time.monotonic()
    with KeyPipes() as keys:
        stages = source_stages(path, identity, keys)
        sql_bytes, _tail, _counts = run_stream(stages)
    log.info("%s: checksum OK, %s, %d bytes of SQL read back in %.1fs", path,
             "decrypted" if path.endswith(ENCRYPTED_SUFFIX) else "not encrypted",
             sql_bytes, time.monotonic() - started)
    return {"file": path, "name": os.path.basename(path), "sha256": digest,
            "encrypted": path.endswith(ENCRYPTED_SUFFIX), "sql_bytes": sql_bytes}
