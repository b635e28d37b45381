"""Admin bot (webhook mode by default)."""
