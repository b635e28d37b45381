"""Fake Telegram Bot API server (see fake_telegram.py)."""

from .fake_telegram import ApiError, FakeTelegram, TokenState, main

__all__ = ["ApiError", "FakeTelegram", "TokenState", "main"]
