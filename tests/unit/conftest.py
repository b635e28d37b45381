"""Unit tests import the plain-Python logic of the modules directly: the
module_utils by their file names, the backup program as the package
``fs_backup`` (roles/backup/files/fs_backup); helpers shared with the
integration tests from tests/."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for sub in ("plugins/module_utils", "roles/backup/files", "tests"):
    path = os.path.join(ROOT, sub)
    if path not in sys.path:
        sys.path.insert(0, path)
