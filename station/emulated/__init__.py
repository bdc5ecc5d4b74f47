"""Emulated chips and devices: what the real libraries talk to in simulation (docs/architecture.md)."""
