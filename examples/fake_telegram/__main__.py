"""``python -m fake_telegram --host 0.0.0.0 --port 8081``"""

import sys

from .fake_telegram import main

sys.exit(main())
