# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``python3 -m fs_backup ...`` (from the folder that holds the package) is ``fs-backup ...``."""

import sys

from .cli import main

sys.exit(main())
