"""Every configuration key the station knows, declared once: type, default, meaning, unit, bounds.

station/config.py loads and validates a file against this table; `config/station.toml` is generated
from it (`python -m station.config`), so the documentation and the loader cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from station.hardware.controllers.models import MODEL_NAMES as CONTROLLER_NAMES
from station.hardware.meters.models import MODEL_NAMES


@dataclass(frozen=True)
class Key:
    type: type | tuple[type, ...]
    default: Any
    doc: str
    unit: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    optional: bool = False  # default None allowed: the feature is absent unless set
    hex: bool = False  # shown in hexadecimal (I2C addresses: datasheets and i2cdetect write 0x27)


_BOOL = bool
_INT = int
_NUM = (int, float)
_STR = str
_TABLE = dict
_LIST = list  # a list of strings, each one of `choices`, none twice, at least one

SCHEMA: dict[str, Key] = {
    # --- station -----------------------------------------------------------------
    "station.name": Key(_STR, "station-1", "Name of this station, sent to backends (MCSP Name)."),
    "station.state_dir": Key(_STR, "/var/lib/station", "Directory for the journal (SQLite) and state."),
    "station.language": Key(_STR, "en", "Language of the LCD texts.", choices=("en", "de")),
    "station.connector_id": Key(_INT, 1, "Connector number reported to backends.", min=1, max=99),
    "station.log_tags": Key(_BOOL, False,
        "Log id tags in full (installers pairing cards). Default: masked to their last characters, as they are personal data."),
    "station.system_clock": Key(_STR, "ntp",
        "When the system clock tells the time: 'ntp' once systemd-timesyncd or chrony has synchronized it (timedatectl: "
        "System clock synchronized), 'trusted' always (a battery-backed RTC module), 'untrusted' never (only a backend's "
        "time counts). Until then the backend's time counts, else times are estimates, marked in `station sessions`.",
        choices=("ntp", "trusted", "untrusted")),
    # --- charging rules ----------------------------------------------------------
    "charging.power_threshold_w": Key(_NUM, 50.0, "Above this power the car is charging; below it SuspendedEV.", "W", 0, 100000),
    "charging.no_power_timeout_s": Key(_NUM, 600.0,
        "A session whose car never drew power ends after this time (reason Other). 0 = never.", "s", 0, 86400),
    "charging.connection_timeout_s": Key(_NUM, 60.0,
        "Preparing without a tap (plugged first) or without a plug (tapped first) falls back to Available after this.",
        "s", 1, 3600),
    "charging.finishing_s": Key(_NUM, 5.0,
        "Without an EV-connected input, how long Finishing is shown before Available.", "s", 0, 600),
    "charging.message_s": Key(_NUM, 4.0, "How long a refusal or notice stays on the LCD.", "s", 0.5, 60),
    "charging.meter_interval_s": Key(_NUM, 1.0, "Meter sampling interval.", "s", 0.2, 60),
    "charging.journal_interval_s": Key(_NUM, 60.0,
        "The last meter reading is written to the journal at most this often (and at every state change); bounds SD-card "
        "writes.", "s", 1, 3600),
    "charging.contactor_settle_s": Key(_NUM, 0.5,
        "Time the contactor feedback may take to follow the command; a longer disagreement is a fault.", "s", 0.05, 10),
    "charging.contactor_recover_s": Key(_NUM, 10.0,
        "A contactor fault clears once the auxiliary contact has agreed with the command this long.", "s", 0.5, 600),
    "charging.phases": Key(_INT, 3, (
        "Phases the station supplies: a limit in watts (OCPP) is taken as amps at 230 V on each until the meter has "
        "seen on how many phases the car draws (a meter without per-phase currents never tells)."), min=1, max=3),
    # --- hardware ----------------------------------------------------------------
    "hardware.mode": Key(_STR, "pi",
        "'pi' drives the real hardware; 'sim' runs the same drivers against emulated chips.", choices=("pi", "sim")),
    "hardware.gpio_chip": Key(_STR, "RPi.GPIO",
        "GPIO module (RPi.GPIO API; rpi-lgpio provides it on a Pi 5).", choices=("RPi.GPIO",)),
    "hardware.emulate_bus": Key(_BOOL, True, (
        "With hardware.mode = 'sim': emulate the RS-485 devices (meter, charge controller). false talks to the real "
        "ones on meter.port (and controller.port) while the reader, GPIO and LCD stay emulated: checking the RS-485 "
        "wiring from a laptop with a USB adapter. No effect with hardware.mode = 'pi'.")),
    # --- RFID --------------------------------------------------------------------
    "rfid.enabled": Key(_BOOL, True, "Whether an MFRC522 reader is fitted."),
    "rfid.spi_bus": Key(_INT, 0, "SPI bus of the MFRC522.", min=0, max=6),
    "rfid.spi_device": Key(_INT, 0, "SPI chip select of the MFRC522.", min=0, max=3),
    "rfid.reset_pin": Key(_INT, 25,
        "BCM pin wired to the MFRC522 RST (always explicit: the library would take BCM 15, the UART RX).", min=0, max=27),
    "rfid.poll_interval_s": Key(_NUM, 0.1, "Reader poll interval.", "s", 0.02, 2),
    "rfid.absent_s": Key(_NUM, 0.6,
        "A card unseen for this long has left the reader; its next presence is a new tap.", "s", 0.1, 10),
    "rfid.uid_case": Key(_STR, "upper", "Hex digit case of the id tag.", choices=("upper", "lower")),
    "rfid.uid_separator": Key(_STR, "", "Separator between UID bytes in the id tag (e.g. '' or ' ' or ':').", max=3),
    "rfid.uid_byte_order": Key(_STR, "forward",
        "'forward' = byte 0 first (OCPP's recommendation), 'reverse' = last byte first.", choices=("forward", "reverse")),
    "rfid.antenna_gain_db": Key(_INT, 33, (
        "Receiver gain of the MFRC522 (RFCfgReg RxGain): 33 is the chip's default; clone modules with a weak "
        "antenna often need 43 or 48. `station rfid read --scan-gain` shows which gains read your cards."),
        "dB", choices=(18, 23, 33, 38, 43, 48)),
    "rfid.spi_speed_hz": Key(_INT, 1_000_000, (
        "SPI clock to the MFRC522. The chip allows up to 10 MHz; lower it (e.g. 500000) for long or noisy wires "
        "between the Pi and the reader."), "Hz", 50_000, 10_000_000),
    # --- contactor ---------------------------------------------------------------
    "contactor.enabled": Key(_BOOL, True, (
        "A contactor relay driven by the station on contactor.pin. false: none on GPIO, only with a charge controller "
        "(controller.model), whose relay output switches the contactor.")),
    "contactor.pin": Key(_INT, 17, "BCM pin driving the contactor relay.", min=0, max=27),
    "contactor.active_low": Key(_BOOL, False, "The relay closes when the pin is low."),
    "contactor.feedback_pin": Key(_INT, None, "BCM pin of the auxiliary contact (optional).", min=0, max=27, optional=True),
    "contactor.feedback_active_low": Key(_BOOL, True, "The auxiliary contact pulls the pin low when closed."),
    # --- inputs ------------------------------------------------------------------
    "inputs.ev_connected_pin": Key(_INT, None, "BCM pin that reads 'EV connected' (optional).", min=0, max=27, optional=True),
    "inputs.ev_connected_active_low": Key(_BOOL, True, "The EV-connected input is active when low."),
    "inputs.stop_button_pin": Key(_INT, None, "BCM pin of a stop push button (optional).", min=0, max=27, optional=True),
    "inputs.stop_button_active_low": Key(_BOOL, True, "The stop button pulls the pin low when pressed."),
    # --- LEDs --------------------------------------------------------------------
    "leds.kind": Key(_STR, "gyr",
        "'gyr' three LEDs green/yellow/red, 'rgb' one RGB LED on the same three pins, 'none'.", choices=("gyr", "rgb", "none")),
    "leds.green_pin": Key(_INT, 5, "BCM pin of the green LED (or RGB green).", min=0, max=27),
    "leds.yellow_pin": Key(_INT, 6, "BCM pin of the yellow LED (RGB: blue, unused for yellow).", min=0, max=27),
    "leds.red_pin": Key(_INT, 13, "BCM pin of the red LED (or RGB red).", min=0, max=27),
    "leds.active_low": Key(_BOOL, False, "LEDs light when the pin is low (common-anode RGB)."),
    # --- LCD ---------------------------------------------------------------------
    "lcd.enabled": Key(_BOOL, True, "Whether an HD44780 LCD with a PCF8574 I2C backpack is fitted."),
    "lcd.i2c_bus": Key(_INT, 1, "I2C bus number.", min=0, max=10),
    "lcd.address": Key(_INT, 0x27,
        "I2C address of the PCF8574 (0x27 or 0x3F usually; `i2cdetect -y 1` lists it).", min=0x03, max=0x77, hex=True),
    "lcd.cols": Key(_INT, 16, "Columns.", choices=(16, 20)),
    "lcd.rows": Key(_INT, 2, "Rows.", choices=(2, 4)),
    "lcd.refresh_s": Key(_NUM, 60.0, (
        "Every this often the LCD controller is resynchronised and the whole screen rewritten, so that "
        "garbage from interference (no I2C error) is gone within this time; also 1 s after each switch of "
        "the contactor. 0 = never."), "s", 0, 3600),
    # --- meter -------------------------------------------------------------------
    "meter.model": Key(_STR, "SDM630", (
        "Meter model (register map); docs/hardware.md describes each. EM24 is the current Carlo Gavazzi map "
        "(kWh total at 0x34), EM24-OLD the 'PFA, PFB & X models' map (0x3E); the station warns at start when "
        "the total is far from the sum of the phases. SDM72D-M-V1 is the version 1 meter (energy and total power "
        "only), SDM72D-M-V2 the SDM72D-M-2; SDM72D-M (earlier releases) means SDM72D-M-V2; `station meter read` "
        "names the other when one fails."), choices=MODEL_NAMES),
    "meter.port": Key(_STR, "/dev/ttyAMA0",
        "Serial device, pyserial URL (socket://HOST:PORT for RTU over TCP) or tcp://HOST:PORT (Modbus TCP)."),
    "meter.address": Key(_INT, 1, "Modbus device address.", min=1, max=247),
    "meter.baudrate": Key(_INT, 9600, "Baud rate.", "baud", choices=(1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)),
    "meter.parity": Key(_STR, "N", "Parity.", choices=("N", "E", "O")),
    "meter.stopbits": Key(_INT, 1, "Stop bits.", choices=(1, 2)),
    "meter.timeout_s": Key(_NUM, 0.5, "Reply timeout per request.", "s", 0.05, 10),
    "meter.turnaround_s": Key(_NUM, 0.0, (
        "Silence kept after each reply before the next request, for meters that need time between requests. "
        "The Modbus RTU minimum (3.5 characters, 1.75 ms above 19200 baud) is always kept; this only makes it "
        "longer."), "s", 0, 1),
    "meter.rs485_rts": Key(_BOOL, False, (
        "Switch the RS-485 driver with RTS (kernel RS-485 mode through pyserial), for adapters and UART boards "
        "without automatic direction control.")),
    "meter.rs485_rts_level_for_tx": Key(_BOOL, True, (
        "With meter.rs485_rts: the RTS level while transmitting (true = high); the other level while receiving.")),
    "meter.max_failures": Key(_INT, 3, "Consecutive failed reads before the meter is reported faulted.", min=1, max=100),
    "meter.max_power_w": Key(_NUM, None,
        "Largest plausible power; energy jumps beyond it are rejected (default: the model's rating).",
        "W", 100, 1e6, optional=True),
    # --- charge controller (control pilot) ----------------------------------------
    "controller.model": Key(_STR, "none", (
        "Charge controller (IEC 61851 control pilot board) on Modbus: 'none' is a station without one (the plug "
        "switch and the meter tell what the car does); docs/hardware.md describes each model."),
        choices=("none", *CONTROLLER_NAMES)),
    "controller.address": Key(_INT, 2,
        "Modbus address of the controller; on the meter's line it must differ from meter.address.", min=1, max=247),
    "controller.max_current_a": Key(_NUM, 16.0,
        "The installation's rating per phase (cable, breaker, contactor): never offered more.", "A", 6, 80),
    "controller.min_current_a": Key(_NUM, 6.0,
        "The least current offered (IEC 61851: 6 A); a limit below it pauses charging.", "A", 6, 80),
    "controller.poll_interval_s": Key(_NUM, 1.0, "How often the controller is read.", "s", 0.2, 10),
    "controller.max_failures": Key(_INT, 3, "Consecutive failed polls (reads, writes) before the controller is faulted.",
        min=1, max=100),
    "controller.port": Key(_STR, None, (
        "The controller's own serial port, when it has a line of its own. Default: the meter's line (meter.port and "
        "its settings): one bus, one request at a time."), optional=True),
    "controller.baudrate": Key(_INT, 9600, "Baud rate, with controller.port only (the meter's line has meter.baudrate).",
        "baud", choices=(1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)),
    "controller.parity": Key(_STR, "N", "Parity, with controller.port only.", choices=("N", "E", "O")),
    "controller.stopbits": Key(_INT, 1, "Stop bits, with controller.port only.", choices=(1, 2)),
    "controller.timeout_s": Key(_NUM, 0.5, "Reply timeout per request, with controller.port only.", "s", 0.05, 10),
    # --- backend -----------------------------------------------------------------
    "backend.kind": Key(_STR, "local",
        "Which backend authorizes and receives sessions.", choices=("local", "mcsp", "evcs-serial", "ocpp")),
    "backend.offline_policy": Key(_STR, "cached",
        "When the backend is unreachable: 'refuse' every tap, allow 'cached' (previously accepted) tags, or 'cached+local' "
        "also the tags of backend.local.", choices=("refuse", "cached", "cached+local")),
    "backend.auth_cache_ttl_s": Key(_NUM, 7 * 86400.0,
        "How long an accepted tag stays in the authorization cache.", "s", 0, 365 * 86400),
    "backend.local.tags": Key(_TABLE, {},
        "Table of allowed tags: tag = \"apartment or name\". Tags compare case-insensitively, ignoring separators."),
    "backend.mcsp.url": Key(_STR, "tcp://127.0.0.1:4711", "tcp://HOST:PORT, tls://HOST:PORT, or a serial device path."),
    "backend.mcsp.baudrate": Key(_INT, 19200,
        "Baud rate when url is a serial device.", "baud", choices=(1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)),
    "backend.mcsp.timeout_s": Key(_NUM, 5.0, "Reply timeout.", "s", 0.2, 120),
    "backend.mcsp.heartbeat_s": Key(_NUM, 60.0, "Heartbeat interval.", "s", 5, 86400),
    "backend.mcsp.ca_file": Key(_STR, None, "CA certificate that signs the server's certificate (tls://).", optional=True),
    "backend.mcsp.secret": Key(_STR, None, "Per-station secret sent as the Auth header.", optional=True),
    "backend.mcsp.extensions": Key(_BOOL, True,
        "Send the MCSP/1.0 extension headers (Session-Key, meter readings, times) and HEARTBEAT; false sends only the "
        "picture's headers, for a server that cannot take them (no idempotent retry then)."),
    "backend.evcs-serial.port": Key(_STR, "/dev/ttyUSB0", "Serial device of the link to the mmetering server."),
    "backend.evcs-serial.baudrate": Key(_INT, 19200,
        "Baud rate.", "baud", choices=(1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)),
    "backend.evcs-serial.station_number": Key(_INT, 1, "N in 'LADER N lebt' and 'OK_LaderN!'.", min=1, max=99),
    "backend.evcs-serial.reply_timeout_s": Key(_NUM, 3.0,
        "How long to wait for OK/ERROR after 'Abrechnung auf'; at most 2.5 s is used whatever this says (the 2018 "
        "server waits 3 s for the station's next line and stops answering for good when it does not come).",
        "s", 0.5, 60),
    "backend.evcs-serial.meter_read_s": Key(_NUM, 1.5,
        "How long to listen for ERROR20 after 'Verstanden' (and for ERROR21/30 after 'total FERTIG') while the server "
        "reads its meter (a failed read takes it about 0.5 s); the contactor closes after it. At most 2.5 s is used.",
        "s", 0.1, 2.5),
    "backend.evcs-serial.heartbeat_s": Key(_NUM, 90.0, "Heartbeat ('LADER N lebt') interval.", "s", 5, 86400),
    "backend.evcs-serial.tag_separator": Key(_STR, " ", "Separator between the tag's bytes on the 'Tag ID' line."),
    "backend.evcs-serial.tag_prefix": Key(_STR, "Tag ID = ",
        "Text before the tag ('Tag ID = ' per the server; the 2018 device wrote 'Tag ID= ')."),
    "backend.ocpp.url": Key(_STR, "ws://127.0.0.1:9000/",
        "Central system URL (ws:// or wss://); the charge point id is appended."),
    "backend.ocpp.versions": Key(_LIST, ["1.6"], (
        "OCPP versions offered to the central system as websocket subprotocols, in order of preference (on the "
        "wire ocpp2.0.1, ocpp1.6); the central system's choice decides the version of each connection."),
        choices=("2.0.1", "1.6")),
    "backend.ocpp.tls_url": Key(_STR, None,
        "wss:// URL of the central system for security profiles 2 and 3, when it is not `url` with ws:// turned into wss:// "
        "(the central system may raise the profile).", optional=True),
    "backend.ocpp.charge_point_id": Key(_STR, None, "Charge point identity (default: station.name).", optional=True),
    "backend.ocpp.vendor": Key(_STR, "station", "chargePointVendor in BootNotification."),
    "backend.ocpp.model": Key(_STR, "station-pi", "chargePointModel in BootNotification."),
    "backend.ocpp.security_profile": Key(_INT, 0, "OCPP security profile 0-3.", min=0, max=3),
    "backend.ocpp.authorization_key": Key(_STR, None,
        "Basic auth password (profile 1 and 2), at least 16 characters.", optional=True),
    "backend.ocpp.ca_file": Key(_STR, None, "CA file to verify the central system (wss://).", optional=True),
    "backend.ocpp.cert_file": Key(_STR, None, "Station certificate (profile 3).", optional=True),
    "backend.ocpp.key_file": Key(_STR, None, "Station private key (profile 3).", optional=True),
    "backend.ocpp.connector_type": Key(_STR, "cType2", (
        "OCPP 2.0.1 only: the connector's type in the device model (Connector.ConnectorType) and for ReserveNow "
        "connectorType: cType2 for a fixed Type 2 cable, sType2 for a Type 2 socket, and the other values of "
        "ConnectorEnumType."), choices=("cCCS1", "cCCS2", "cG105", "cTesla", "cType1", "cType2", "s309-1P-16A",
                                        "s309-1P-32A", "s309-3P-16A", "s309-3P-32A", "sBS1361", "sCEE-7-7",
                                        "sType2", "sType3", "Other1PhMax16A", "Other1PhOver16A", "Other3Ph",
                                        "Pan", "wInductive", "wResonant", "Undetermined", "Unknown")),
    # --- firmware updates (OCPP SignedUpdateFirmware / UpdateFirmware) -------------
    "firmware.signing_ca_file": Key(_STR, None, (
        "PEM file of the root certificate(s) that sign firmware releases (the manufacturer's); a release is installed "
        "only with a signature that chains to one of them. Unset: every firmware update is refused. Roots a central "
        "system installs over OCPP (ManufacturerRootCertificate) are never trusted for firmware."), optional=True),
    "firmware.allow_unsigned": Key(_BOOL, False, (
        "DANGEROUS: install unsigned releases from UpdateFirmware (security profile 0 only). Whoever runs the central "
        "system, or poses as it on the network, can then run any code as the station. Only on a closed test bench.")),
    # --- status page -------------------------------------------------------------
    "status_page.enabled": Key(_BOOL, False,
        "Serve a read-only status page (state, LCD text, meter, backend link and queue, last sessions, recent faults) over "
        "HTTP at status_page.listen."),
    "status_page.listen": Key(_STR, "127.0.0.1:8080",
        "HOST:PORT the page listens on: 127.0.0.1 for this machine only, the station's LAN address (or 0.0.0.0) to reach it "
        "from a phone."),
    "status_page.user": Key(_STR, "station", "User name for HTTP Basic when a password is set."),
    "status_page.password_file": Key(_STR, None,
        "File whose first line is the page's password (HTTP Basic); keep it mode 600 or 640 root:station. Without a password "
        "the page is open to everyone who can reach it and shows id tags masked.", optional=True),
    "status_page.password": Key(_STR, None,
        "The password itself, when not in password_file (this file must then be mode 600 or 640).", optional=True),
    # --- simulation ----------------------------------------------------------------
    "sim.load_w": Key(_NUM, 7400.0,
        "Power the emulated car draws while the contactor is closed (without a charge controller; with one, the car "
        "draws what the pilot offers, see sim.car_*).", "W", 0, 50000),
    "sim.ev_connected_input": Key(_BOOL, False, "Emulate an EV-connected input (on inputs.ev_connected_pin, default BCM 22)."),
    "sim.stop_button_input": Key(_BOOL, False, "Emulate a stop button (on inputs.stop_button_pin, default BCM 27)."),
    "sim.contactor_feedback": Key(_BOOL, True,
        "Emulate the contactor's auxiliary contact (on contactor.feedback_pin, default BCM 23)."),
    "sim.gpio_edge_detection": Key(_BOOL, True, (
        "Emulate a kernel on which RPi.GPIO edge detection works; false makes add_event_detect fail "
        "(\"Failed to add edge detection\"), so the stop button is read by polling alone.")),
    "sim.gpio_library": Key(_STR, "rpi-lgpio", (
        "Which RPi.GPIO provider the emulated GPIO behaves as where they differ (errors, debounce): "
        "'rpi-lgpio' (what scripts/install-pi installs on every Pi; its failures raise lgpio.error) "
        "or 'RPi.GPIO' (the original)."), choices=("rpi-lgpio", "RPi.GPIO")),
    "sim.car_phases": Key(_INT, 3, "With a charge controller: phases the emulated car charges on.", choices=(1, 3)),
    "sim.car_max_current_a": Key(_NUM, 16.0,
        "With a charge controller: the most the emulated car's on-board charger draws per phase.", "A", 0, 80),
    "sim.cable_a": Key(_INT, 32, "With a charge controller: the emulated cable's rating (proximity pilot).", "A",
        choices=(13, 20, 32, 63)),
    "sim.meter_link": Key(_STR, "socket",
        "How the emulated meter is reached: 'socket' (RTU over TCP on loopback) or 'pty' (a pseudo-terminal pair).",
        choices=("socket", "pty")),
}
