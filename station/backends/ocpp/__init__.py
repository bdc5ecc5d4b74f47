"""OCPP: the shared backend (both versions), see backend.py."""
