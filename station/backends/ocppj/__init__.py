"""OCPP-J: JSON-RPC over one websocket and the official schemas, for any OCPP version (1.6 and 2.0.1 dialects)."""
