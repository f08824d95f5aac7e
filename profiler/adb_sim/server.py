"""The device side of the ADB wire protocol over TCP: what adbd on a phone answers, written independently of the
adb-shell client so the client is tested against a second implementation.

Transport messages are 24-byte headers `<command, arg0, arg1, data_length, data_checksum, magic>` (little endian,
magic = command ^ 0xffffffff) followed by the data. Connection: the host sends CNXN; we answer AUTH(TOKEN) with a
random 20-byte token; the host signs it (AUTH SIGNATURE) and we check the signature against the keys this phone has
accepted, or it sends its public key (AUTH RSAPUBLICKEY) and the simulated user taps "Allow"; then we send CNXN with
our banner. Streams: OPEN(local, 0, "service") -> OKAY(remote, local); data flows as WRTE, each acknowledged by OKAY
before the next; CLSE ends it. Services: `shell:COMMAND` (legacy, stdout and stderr merged) and `sync:` (SEND with
DATA/DONE, STAT, RECV, QUIT).
"""
from __future__ import annotations

import base64
import contextlib
import os
import socket
import struct
import threading
from dataclasses import dataclass

from profiler.adb_sim.phone import SimPhone

VERSION = 0x01000001
MAX_DATA = 256 * 1024
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
_HEADER = struct.Struct("<6I")
_ANDROID_PUBKEY = struct.Struct("<LL256s256sL")


def _wire(name: bytes) -> int:
    return int.from_bytes(name, "little")


CNXN, AUTH, OPEN, OKAY, WRTE, CLSE = (_wire(n) for n in (b"CNXN", b"AUTH", b"OPEN", b"OKAY", b"WRTE", b"CLSE"))


class ConnectionDropped(Exception):
    """The host went away, or fault injection cut the connection."""


@dataclass(frozen=True)
class Message:
    command: int
    arg0: int
    arg1: int
    data: bytes


@dataclass(frozen=True)
class Faults:
    """Fault injection. drop_every: cut the connection on every k-th command (after running it, before answering).
    max_drops: stop dropping after this many (None = never stop). die_after: after this many commands the phone is
    gone for good (unplugged; connections refused). reject_keys: the user taps "Deny" on the key prompt."""

    drop_every: int | None = None
    max_drops: int | None = None
    die_after: int | None = None
    reject_keys: bool = False


def pack(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    return _HEADER.pack(command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, command ^ 0xFFFFFFFF) + data


def rsa_public_key(android_key: bytes):
    """Decode the host's key as adb sends it: base64 of Android's RSAPublicKey struct, then ' user@host'."""
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers

    blob = base64.b64decode(android_key.split(b"\0")[0].split(b" ")[0])
    _, _, modulus, _, exponent = _ANDROID_PUBKEY.unpack(blob)
    return RSAPublicNumbers(exponent, int.from_bytes(modulus, "little")).public_key()


def signature_ok(public_key, token: bytes, signature: bytes) -> bool:
    """adb signs the token as if it were a SHA-1 digest (RSA PKCS#1 v1.5)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, utils

    try:
        public_key.verify(signature, token, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))
        return True
    except (InvalidSignature, ValueError):
        return False


class _Connection:
    def __init__(self, sock: socket.socket, server: AdbServer):
        self.sock = sock
        self.server = server
        self.next_id = 1
        self._pending_send: tuple[str, int, bytearray] = ("", 0, bytearray())

    def read(self) -> Message:
        header = self._read_exact(_HEADER.size)
        command, arg0, arg1, length, _, magic = _HEADER.unpack(header)
        if magic != command ^ 0xFFFFFFFF:
            raise ConnectionDropped("bad magic")
        return Message(command, arg0, arg1, self._read_exact(length) if length else b"")

    def _read_exact(self, n: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            try:
                chunk = self.sock.recv(n - len(chunks))
            except OSError as exc:
                raise ConnectionDropped(str(exc)) from exc
            if not chunk:
                raise ConnectionDropped("host closed the connection")
            chunks += chunk
        return bytes(chunks)

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        try:
            self.sock.sendall(pack(command, arg0, arg1, data))
        except OSError as exc:
            raise ConnectionDropped(str(exc)) from exc

    def expect(self, *commands: int) -> Message:
        message = self.read()
        if message.command not in commands:
            raise ConnectionDropped(f"unexpected {message.command.to_bytes(4, 'little')!r}")
        return message

    # ---- connection set-up ----------------------------------------------------------------------------------------

    def handshake(self) -> None:
        self.expect(CNXN)
        token = os.urandom(20)
        self.send(AUTH, AUTH_TOKEN, 0, token)
        while True:
            message = self.expect(AUTH)
            if message.arg0 == AUTH_SIGNATURE:
                if any(signature_ok(key, token, message.data) for key in self.server.trusted_keys()):
                    break
                token = os.urandom(20)
                self.send(AUTH, AUTH_TOKEN, 0, token)
            elif message.arg0 == AUTH_RSAPUBLICKEY:
                if self.server.faults.reject_keys:
                    raise ConnectionDropped("the user tapped Deny on the USB debugging prompt")
                self.server.trust(rsa_public_key(message.data))
                break
        self.send(CNXN, VERSION, MAX_DATA, self.server.phone.banner().encode() + b"\0")

    # ---- streams ----------------------------------------------------------------------------------------------------

    def serve(self) -> None:
        self.handshake()
        while True:
            message = self.read()
            if message.command != OPEN:
                continue  # stray OKAY/CLSE of a stream we already closed
            local, remote = message.arg0, self.next_id
            self.next_id += 1
            service = message.data.rstrip(b"\0").decode()
            drop = self.server.count_command()
            self.send(OKAY, remote, local)
            if service.startswith("shell:"):
                output = self.server.phone.shell(service[len("shell:"):])
                if drop:
                    raise ConnectionDropped("fault injection: dropped after running the command")
                self._write_stream(remote, local, output)
                self.send(CLSE, remote, local)
            elif service == "sync:":
                self._sync(remote, local, drop)
            else:
                self.send(CLSE, remote, local)

    def _write_stream(self, remote: int, local: int, data: bytes) -> None:
        for start in range(0, len(data), MAX_DATA):
            self.send(WRTE, remote, local, data[start:start + MAX_DATA])
            self.expect(OKAY)

    def _sync(self, remote: int, local: int, drop: bool) -> None:
        buffer = bytearray()
        while True:
            message = self.read()
            if message.command == CLSE:
                self.send(CLSE, remote, local)
                return
            if message.command != WRTE:
                continue
            self.send(OKAY, remote, local)  # acknowledge before answering: the host reads our OKAY first
            buffer += message.data
            while (request := _take_sync_request(buffer)) is not None:
                reply = self._sync_request(*request)
                if reply is None:
                    continue
                if drop:
                    raise ConnectionDropped("fault injection: dropped during a file transfer")
                if reply == b"QUIT":
                    self.send(CLSE, remote, local)
                    return
                self._write_stream(remote, local, reply)

    def _sync_request(self, kind: bytes, payload: bytes) -> bytes | None:
        phone = self.server.phone
        if kind == b"SEND":
            path, _, mode = payload.decode().rpartition(",")
            self._pending_send = (path, int(mode), bytearray())
            return None
        if kind == b"DATA":
            self._pending_send[2].extend(payload)
            return None
        if kind == b"DONE":
            path, mode, content = self._pending_send
            phone.write_file(path, bytes(content), mode)
            return b"OKAY" + struct.pack("<I", 0)
        if kind == b"STAT":
            mode, size, mtime = phone.stat(payload.decode())
            return b"STAT" + struct.pack("<3I", mode, size, mtime)
        if kind == b"RECV":
            content = phone.read_file(payload.decode())
            if content is None:
                message = b"No such file or directory"
                return b"FAIL" + struct.pack("<I", len(message)) + message
            chunks = b"".join(b"DATA" + struct.pack("<I", len(content[i:i + 65536])) + content[i:i + 65536]
                              for i in range(0, len(content), 65536))
            return chunks + b"DONE" + struct.pack("<I", 0)
        if kind == b"QUIT":
            return b"QUIT"
        message = f"unsupported sync request {kind!r}".encode()
        return b"FAIL" + struct.pack("<I", len(message)) + message


def _take_sync_request(buffer: bytearray) -> tuple[bytes, bytes] | None:
    """Cut one complete sync request (id, length/arg, payload) off the buffer. DONE's length field is the mtime."""
    if len(buffer) < 8:
        return None
    kind, length = bytes(buffer[:4]), struct.unpack("<I", buffer[4:8])[0]
    if kind in (b"DONE", b"QUIT"):
        del buffer[:8]
        return kind, b""
    if len(buffer) < 8 + length:
        return None
    payload = bytes(buffer[8:8 + length])
    del buffer[:8 + length]
    return kind, payload


class AdbServer:
    """A simulated phone listening on 127.0.0.1. `start()` returns at once; `stop()` cuts every connection."""

    def __init__(self, phone: SimPhone, port: int = 0, faults: Faults = Faults()):
        self.phone = phone
        self.faults = faults
        self._listener = socket.create_server(("127.0.0.1", port))
        host, port = self._listener.getsockname()[:2]
        self.address = f"{host}:{port}"
        self._lock = threading.Lock()
        self._keys: list = []
        self._commands = 0
        self._drops = 0
        self._connections: set[socket.socket] = set()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def commands(self) -> int:
        return self._commands

    def start(self) -> AdbServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Like pulling the cable: the listener closes and every open connection is cut."""
        self._stopped.set()
        _shutdown(self._listener)  # shutdown() wakes the thread blocked in accept(); close() alone would not
        with self._lock:
            for sock in list(self._connections):
                _shutdown(sock)

    def trusted_keys(self) -> list:
        with self._lock:
            return list(self._keys)

    def trust(self, key) -> None:
        with self._lock:
            self._keys.append(key)

    def count_command(self) -> bool:
        """Count one command; True when fault injection drops the connection on this one."""
        with self._lock:
            self._commands += 1
            if self.faults.die_after is not None and self._commands >= self.faults.die_after:
                threading.Thread(target=self.stop, daemon=True).start()
                return True
            every, limit = self.faults.drop_every, self.faults.max_drops
            if every and self._commands % every == 0 and (limit is None or self._drops < limit):
                self._drops += 1
                return True
            return False

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._connections.add(sock)
            threading.Thread(target=self._handle, args=(sock,), daemon=True).start()

    def _handle(self, sock: socket.socket) -> None:
        try:
            _Connection(sock, self).serve()
        except ConnectionDropped:
            pass
        finally:
            with self._lock:
                self._connections.discard(sock)
            _shutdown(sock)

    def __enter__(self) -> AdbServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the other side
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
