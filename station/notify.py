"""systemd's notify protocol: one datagram per message to $NOTIFY_SOCKET.

READY=1 once hardware and backend are up, WATCHDOG=1 from the event loop
(so a blocked loop is noticed and the service restarted), STATUS=... for
`systemctl status`. Without $NOTIFY_SOCKET (not under systemd) it is silent.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # Never block the event loop on a reader that is slow or gone: a full queue
            # (net.unix.max_dgram_qlen, 10 by default) drops the message instead.
            self._sock.setblocking(False)

    @property
    def watchdog_interval(self) -> float | None:
        """Half of WATCHDOG_USEC in seconds (systemd's advice), or None without a watchdog."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 2e6

    def send(self, *lines: str) -> bool:
        if self._sock is None or not self.address:
            return False
        addr = self.address
        if addr.startswith("@"):
            addr = "\0" + addr[1:]
        try:
            self._sock.sendto("\n".join(lines).encode(), addr)
            return True
        except OSError:
            return False

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")
