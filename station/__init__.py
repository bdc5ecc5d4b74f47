"""station: firmware for a Raspberry Pi EV charging station."""

__version__ = "0.1.0"
