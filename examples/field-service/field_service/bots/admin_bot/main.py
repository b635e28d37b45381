"""Admin bot: ``python -m field_service.bots.admin_bot.main`` (webhook mode by default)."""

from __future__ import annotations

import sys

from field_service.config import Config
from field_service.runner import run_bot
from field_service.updates import default_reply


def reply(cfg: Config, text: str) -> str:
    # "/release" tells an operator which deployment answered.
    if text.strip() == "/release":
        return f"{cfg.service_name} {cfg.version} (release {cfg.app_release})"
    return default_reply(cfg, text)


def main() -> int:
    return run_bot("admin_bot", "webhook", reply)


if __name__ == "__main__":
    sys.exit(main())
