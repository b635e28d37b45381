"""Master bot: ``python -m field_service.bots.master_bot.main`` (polling mode by default)."""

from __future__ import annotations

import sys

from field_service.runner import run_bot
from field_service.updates import default_reply


def main() -> int:
    return run_bot("master_bot", "polling", default_reply)


if __name__ == "__main__":
    sys.exit(main())
