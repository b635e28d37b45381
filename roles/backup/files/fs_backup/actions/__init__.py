# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One module per command of the program.

Each has ``run(args) -> dict``: ``args`` is the command line's namespace
(``cli.parse_args``), the dict the result that ``--json`` prints. A failure
is a ``BackupError`` (``errors``), which ``cli.main`` reports as one
``fs_backup: ERROR: <message>`` line and an exit code.
"""
