"""OCPP 2.0.1: the version the `ocpp` backend runs for a central system that speaks ocpp2.0.1 (engine.py)."""
