"""Two stock aiogram 3 bots that keep notes in PostgreSQL."""
