"""`station controller setup`: put the charge controller's own settings right, once, for the installer.

Theory of operation
-------------------
A control-pilot board keeps some settings in non-volatile memory (EEPROM, or
"retentive" registers): what it does after a restart of its own, whether
Modbus controls it. Left at the factory values, an EVSE-DIN board restarted
without the station (a power cut the Pi does not survive, a watchdog reset)
offers 32 A to whatever car is plugged in; a Phoenix controller may enable
charging from its own input. The model's `setup` steps (station/hardware/
controllers/models.py) say what each register must hold; this module reads
each one, writes it only when it holds something else, and reads it back.

It never rewrites a value the board already holds (each write wears the cell
and gains nothing), and a register whose documents disagree about non-zero
values (EVSE-DIN 2001: "Modbus on" in one, the Modbus address in another) is
written only when it holds the one value wrong under every reading, 0.

This is the only code in the station that writes a board's EEPROM, and only
this command runs it: the daemon's adapter (station/hardware/controller.py)
refuses every non-volatile register.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from station.errors import ControllerError
from station.hardware import rtu
from station.hardware.controllers.models import ControllerModel, Register, SetupStep, get_model


class SetupFailed(ControllerError):
    """The board did not keep a value written by setup."""


async def _read(bus: rtu.RtuBus, address: int, reg: Register, what: str) -> int:
    async def op(client: Any) -> Any:
        if reg.table == "input":
            return await client.read_input_registers(reg.address, count=1, device_id=address)
        return await client.read_holding_registers(reg.address, count=1, device_id=address)

    rr = await bus.call(op, device_id=address, function_code=4 if reg.table == "input" else 3, count=1, what=what,
                        request=f"a read of register {reg.address}", error=ControllerError, device="charge controller",
                        silence_hint="check the wiring, the controller's address and baud rate")
    if rr.isError():
        raise ControllerError(f"{what}: exception code {rr.exception_code} to a read of register {reg.address}",
                              kind="exception", code=rr.exception_code)
    return int(rr.registers[0])


async def _write_nonvolatile(bus: rtu.RtuBus, model: ControllerModel, address: int, reg: Register, value: int,
                             what: str) -> None:
    fc = model.register_write_fc

    async def op(client: Any) -> Any:
        if fc == 16:
            return await client.write_registers(reg.address, [value], device_id=address)
        return await client.write_register(reg.address, value, device_id=address)

    rr = await bus.call(op, device_id=address, function_code=fc, count=1, what=what,
                        request=f"a write (FC{fc}) of register {reg.address} = {value}", error=ControllerError,
                        device="charge controller")
    if rr.isError():
        raise ControllerError(f"{what}: exception code {rr.exception_code} to a write of register {reg.address}",
                              kind="exception", code=rr.exception_code)


def _wanted(step: SetupStep, value: int) -> bool:
    return value == step.value or (step.unless_nonzero and value != 0)


async def setup(model: str | ControllerModel, port: str, address: int, *, baudrate: int = 9600, parity: str = "N",
                stopbits: int = 1, timeout_s: float = 1.0, out: TextIO | None = None) -> list[str]:
    """Apply the model's setup steps; returns the registers written (names). Raises ControllerError."""
    out = out or sys.stdout
    m = get_model(model) if isinstance(model, str) else model
    what = f"charge controller {m.name} at address {address} on {port}"
    bus = rtu.RtuBus(port, baudrate=baudrate, parity=parity, stopbits=stopbits, timeout_s=timeout_s)
    written: list[str] = []
    try:
        for step in m.setup:
            reg = m.register(step.register)
            before = await _read(bus, address, reg, what)
            if _wanted(step, before):
                print(f"register {reg.address} ({reg.name}) = {before}: already as wanted, not written", file=out)
                continue
            await _write_nonvolatile(bus, m, address, reg, step.value, what)
            after = await _read(bus, address, reg, what)
            if after != step.value:
                raise SetupFailed(f"{what}: register {reg.address} ({reg.name}) holds {after} after writing "
                                  f"{step.value}", kind="other",
                                  hint="the board does not keep this setting: check its firmware and documents")
            written.append(reg.name)
            print(f"register {reg.address} ({reg.name}): {before} -> {step.value} ({step.why})", file=out)
    finally:
        await bus.close()
    return written


async def cli_setup(model: str, port: str, address: int, *, baudrate: int = 9600, parity: str = "N",
                    stopbits: int = 1, timeout_s: float = 1.0, out: TextIO | None = None,
                    err: TextIO | None = None) -> int:
    """`station controller setup`; returns the exit code (0 done or nothing to do, 1 error)."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        m = get_model(model)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=err)
        return 1
    try:
        written = await setup(m, port, address, baudrate=baudrate, parity=parity, stopbits=stopbits,
                              timeout_s=timeout_s, out=out)
    except ControllerError as exc:
        print(f"error: {exc}" + (f"\n  {exc.hint}" if exc.hint else ""), file=err)
        return 1
    print(f"{m.name} at address {address}: " + (f"{len(written)} setting(s) written" if written
                                                 else "already set up, nothing written"), file=out)
    return 0
