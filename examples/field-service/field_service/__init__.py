"""Field Service: the sample app deployed by the tool (two Telegram bots)."""

from pathlib import Path

# The version lives in a data file so the deploy tool can read/bump it.
__version__ = (Path(__file__).with_name("VERSION").read_text(encoding="utf-8").strip())
