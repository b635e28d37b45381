"""Master bot (polling mode by default)."""
