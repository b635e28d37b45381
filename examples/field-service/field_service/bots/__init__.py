"""The bots: each one is run as ``python -m field_service.bots.<name>.main``."""
