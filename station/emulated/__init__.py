"""Emulated chips below the drivers: the real libraries (RPi.GPIO's API, mfrc522, RPLCD, pymodbus) run
unchanged on top of them. Nothing here imports the station's application; station/sim builds on them."""
