"""One ADB connection to a phone (adb-shell, TCP or USB) that reconnects with backoff when the phone goes away.

`--serial HOST:PORT` is TCP (an emulator's adbd, or a phone after `adb tcpip 5555`); any other serial is USB (needs
the `usb` extra, libusb1). Keys: ~/.android/adbkey (what the `adb` tool uses), created when missing.
"""
from __future__ import annotations

import io
import logging
import math
import os
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from profiler.errors import DeviceFault, FgnasError

log = logging.getLogger("fgnas.adb")
T = TypeVar("T")

DEFAULT_KEY = Path("~/.android/adbkey")
TRANSPORT_TIMEOUT_S = 10.0
AUTH_TIMEOUT_S = 60.0  # long enough to unlock the phone and tap "Allow"


def key_path() -> Path:
    """FGNAS_ADB_KEY, else ~/.android/adbkey (the adb tool's key, so a phone that trusts `adb` trusts us)."""
    return Path(os.environ.get("FGNAS_ADB_KEY") or DEFAULT_KEY).expanduser()


def load_signer(path: Path):
    """The RSA signer for `path`; creates the key pair (path, path.pub) when it does not exist yet."""
    from adb_shell.auth.keygen import keygen, write_public_keyfile
    from adb_shell.auth.sign_cryptography import CryptographySigner

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        keygen(str(path))
        log.warning("created an ADB key at %s: unlock the phone and accept the 'Allow USB debugging?' prompt", path)
    elif not Path(f"{path}.pub").exists():
        write_public_keyfile(str(path), f"{path}.pub")
    return CryptographySigner(str(path))


def _transient_errors() -> tuple[type[BaseException], ...]:
    from adb_shell import exceptions as e

    return (OSError, struct.error, e.AdbConnectionError, e.AdbTimeoutError, e.TcpTimeoutException,
            e.InvalidChecksumError, e.InvalidCommandError, e.InvalidResponseError, e.DeviceAuthError,
            e.PushFailedError, e.UsbDeviceNotFoundError, e.UsbReadFailedError, e.UsbWriteFailedError)


def _tcp_device(host: str, port: int):
    from adb_shell.adb_device import AdbDevice
    from adb_shell.transport.tcp_transport import TcpTransport

    class ClosingTcpTransport(TcpTransport):
        """adb-shell treats an empty read as 'no data yet' and spins until its read timeout; a closed socket should
        fail at once so we reconnect instead of waiting out a long benchmark timeout. adb-shell writes a message's
        header and data separately, which Nagle's algorithm and delayed ACKs turn into a ~40 ms stall per message:
        TCP_NODELAY, as adb itself sets."""

        def connect(self, transport_timeout_s):
            super().connect(transport_timeout_s)
            self._connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def bulk_read(self, numbytes, transport_timeout_s):
            data = super().bulk_read(numbytes, transport_timeout_s)
            if not data:
                raise ConnectionResetError(f"{host}:{port} closed the connection")
            return data

    return AdbDevice(ClosingTcpTransport(host, port), default_transport_timeout_s=TRANSPORT_TIMEOUT_S)


def _usb_device(serial: str):
    from adb_shell.adb_device import AdbDeviceUsb
    from adb_shell.exceptions import InvalidTransportError

    try:
        return AdbDeviceUsb(serial=serial, default_transport_timeout_s=TRANSPORT_TIMEOUT_S)
    except InvalidTransportError as exc:  # adb-shell without its usb extra (libusb1)
        raise FgnasError(f"USB serial {serial!r} needs libusb: pip install 'fgnas[usb]' (or connect over TCP: "
                         f"`adb tcpip 5555`, then --serial PHONE_IP:5555)") from exc


def open_adb_device(serial: str):
    host, sep, port = serial.rpartition(":")
    if sep and port.isdigit():
        return _tcp_device(host, int(port))
    return _usb_device(serial)


def _env_retries() -> int:
    """FGNAS_ADB_RETRIES (default 5): reconnects before a failing call is a device fault; 0 gives up at once."""
    text = os.environ.get("FGNAS_ADB_RETRIES", "5")
    try:
        retries = int(text)
    except ValueError:
        retries = -1
    if retries < 0:
        raise FgnasError(f"FGNAS_ADB_RETRIES={text!r}: give a whole number of reconnects, 0 or more (default 5)")
    return retries


def _env_backoff_s() -> float:
    """FGNAS_ADB_BACKOFF_S (default 1.0): the first reconnect's wait in seconds, doubled at each further one."""
    text = os.environ.get("FGNAS_ADB_BACKOFF_S", "1.0")
    try:
        backoff = float(text)
    except ValueError:
        backoff = float("nan")
    if not math.isfinite(backoff) or backoff < 0:
        raise FgnasError(f"FGNAS_ADB_BACKOFF_S={text!r}: give a number of seconds, 0 or more (default 1.0)")
    return backoff


class AdbLink:
    """Shell and push over one phone connection. A failing call reconnects with exponential backoff and is repeated
    (every call we make is idempotent); after `retries` failed reconnects it raises DeviceFault."""

    def __init__(self, serial: str, retries: int | None = None, backoff_s: float | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.serial = serial
        self.retries = retries if retries is not None else _env_retries()
        self.backoff_s = backoff_s if backoff_s is not None else _env_backoff_s()
        self.reconnects = 0
        self._sleep = sleep
        self._device = None
        self._signer = None
        self._prompted = False

    def connect(self) -> None:
        """First connection: failures are the user's to fix (wrong serial, adbd off, key refused), exit code 2."""
        from adb_shell.exceptions import DeviceAuthError

        self._signer = load_signer(key_path())
        try:
            self._open()
        except _transient_errors() as exc:
            if self._prompted or isinstance(exc, DeviceAuthError):
                raise FgnasError(f"phone {self.serial} did not accept our ADB key {key_path()}.pub: unlock it, tap "
                                 f"'Allow' on the USB debugging prompt, and run again") from exc
            raise FgnasError(f"cannot reach phone {self.serial} ({exc}): check `adb devices`, USB debugging, and for "
                             f"TCP that `adb tcpip 5555` was run and HOST:PORT is right") from exc

    def _open(self) -> None:
        device = open_adb_device(self.serial)
        device.connect(rsa_keys=[self._signer], auth_timeout_s=AUTH_TIMEOUT_S, read_timeout_s=TRANSPORT_TIMEOUT_S,
                       auth_callback=self._on_prompt)
        self._device = device

    def _on_prompt(self, _device) -> None:
        """adb-shell calls this when the phone does not know our key and is about to show its prompt."""
        self._prompted = True
        log.warning("phone %s: unlock it and accept the 'Allow USB debugging?' prompt for key %s.pub",
                    self.serial, key_path())

    def _drop(self) -> None:
        if self._device is not None:
            try:
                self._device.close()
            except _transient_errors():
                pass
        self._device = None

    def call(self, what: str, fn: Callable[[object], T]) -> T:
        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            try:
                if self._device is None:
                    self._open()
                return fn(self._device)
            except _transient_errors() as exc:
                last = exc
                self._drop()
                if attempt == self.retries:
                    break
                delay = min(self.backoff_s * 2 ** attempt, 30.0)
                log.warning("phone %s: %s failed (%s); reconnecting in %.1f s", self.serial, what, exc, delay)
                self._sleep(delay)
                self.reconnects += 1
        raise DeviceFault(f"phone {self.serial} stopped answering ({what}: {last}) after {self.retries} reconnects: "
                          f"check the cable/network and that the phone is awake")

    def shell(self, command: str, timeout_s: float = TRANSPORT_TIMEOUT_S) -> str:
        return self.call(command.split()[0], lambda d: d.shell(command, transport_timeout_s=timeout_s,
                                                                read_timeout_s=timeout_s, timeout_s=timeout_s))

    def push(self, local: Path, remote: str, mode: int = 0o100755) -> None:
        self.call(f"push {local.name}", lambda d: d.push(str(local), remote, st_mode=mode,
                                                       read_timeout_s=TRANSPORT_TIMEOUT_S))

    def push_bytes(self, content: bytes, remote: str, label: str, mode: int = 0o100644) -> None:
        """Push `content` itself rather than a file that could change between being hashed and being pushed."""
        self.call(f"push {label}", lambda d: d.push(io.BytesIO(content), remote, st_mode=mode,
                                                    read_timeout_s=TRANSPORT_TIMEOUT_S))

    def close(self) -> None:
        self._drop()
