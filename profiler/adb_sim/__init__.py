"""A simulated Android phone speaking the real ADB wire protocol on 127.0.0.1 (for tests and for trying the phone
workflow without a phone): `python -m profiler.adb_sim --profile pixel1 --port 0`."""
from profiler.adb_sim.phone import SimPhone, arm64_elf_stub, phone_names
from profiler.adb_sim.server import AdbServer, Faults

__all__ = ["AdbServer", "Faults", "SimPhone", "arm64_elf_stub", "phone_names"]
