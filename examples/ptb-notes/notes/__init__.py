"""Two stock python-telegram-bot 22 bots that keep notes in PostgreSQL."""
