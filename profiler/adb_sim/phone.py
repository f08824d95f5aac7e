"""The simulated phone behind the ADB server: properties, /sys and /proc files from a phone description
(profiler/adb_sim/phones/*.json), pushed files in a temp dir, and the few shell commands fgnas and a user would run
(getprop, cat, grep -H, uname, mkdir, touch, chmod, rm, ls, echo, taskset, and executing a pushed benchmark_model),
parsed by a POSIX shell (profiler/adb_sim/shell.py) so that what the host sends means what it would on a phone."""
from __future__ import annotations

import fnmatch
import json
import posixpath
import shutil
import tempfile
import threading
from pathlib import Path

from profiler.adb_sim.benchmark_tool import VARIANTS, run_benchmark_model
from profiler.adb_sim.shell import Shell

PHONE_DIR = Path(__file__).parent / "phones"
_ELF_MACHINES = {"arm64-v8a": 183, "x86_64": 62}
S_IFREG = 0o100000


def phone_names() -> list[str]:
    return sorted(p.stem for p in PHONE_DIR.glob("*.json"))


def arm64_elf_stub() -> bytes:
    """The header of an arm64 Linux executable: what the simulator accepts as a benchmark_model binary to push."""
    header = bytearray(64)
    header[:7] = b"\x7fELF\x02\x01\x01"  # 64-bit, little endian, version 1
    header[16:18] = (2).to_bytes(2, "little")  # ET_EXEC
    header[18:20] = _ELF_MACHINES["arm64-v8a"].to_bytes(2, "little")
    return bytes(header)


class SimPhone:
    """One phone's state. `hot_reads`: the first N thermal reads report `hot_c` in every zone."""

    def __init__(self, name: str, output_variant: str = "current", hot_reads: int = 0, hot_c: float = 55.0):
        if name not in phone_names():
            raise ValueError(f"no simulated phone {name!r}: choose one of {', '.join(phone_names())}")
        if output_variant not in VARIANTS:
            raise ValueError(f"output variant must be one of {VARIANTS}")
        self.name = name
        self.spec = json.loads((PHONE_DIR / f"{name}.json").read_text())
        self.props: dict[str, str] = dict(self.spec["props"])
        self.output_variant = output_variant
        self.hot_reads = hot_reads
        self.hot_c = hot_c
        self.benchmark_runs = 0
        self._storage = tempfile.TemporaryDirectory(prefix=f"fgnas-sim-{name}-")
        self._modes: dict[str, int] = {}
        self._lock = threading.Lock()

    # ---- files ------------------------------------------------------------------------------------------------------

    def _system_files(self) -> dict[str, str]:
        files = {"/proc/version": f"Linux version {self.spec['kernel']} (android-build@google.com) #1 SMP PREEMPT",
                 "/proc/cpuinfo": f"processor\t: 0\nHardware\t: {self.spec['cpuinfo_hardware']}"}
        for i, cpu in enumerate(self.spec["cpus"]):
            base = f"/sys/devices/system/cpu/cpu{i}/cpufreq"
            files[f"{base}/cpuinfo_max_freq"] = str(cpu["max_khz"])
            files[f"{base}/scaling_governor"] = cpu["governor"]
        for i, zone in enumerate(self.spec["thermal_zones"]):
            files[f"/sys/class/thermal/thermal_zone{i}/type"] = zone["type"]
            files[f"/sys/class/thermal/thermal_zone{i}/temp"] = str(int(zone["temp_c"] * 1000))
        return files

    @property
    def sandbox(self) -> Path:
        """The local folder holding the phone's writable files (what pushes and shell commands create)."""
        return Path(self._storage.name)

    def _local(self, path: str) -> Path:
        """Inside the sandbox whatever the path: an injected command really runs here, and `..` must not climb out
        (relative paths are from /, adb shell's working directory)."""
        return Path(self._storage.name) / posixpath.normpath("/" + path).lstrip("/")

    def write_file(self, path: str, content: bytes, mode: int = 0o100644) -> None:
        local = self._local(path)
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(content)
        with self._lock:
            self._modes[path] = mode

    def read_file(self, path: str) -> bytes | None:
        system = self._system_files()
        if path in system:
            return (system[path] + "\n").encode()
        local = self._local(path)
        return local.read_bytes() if local.is_file() else None

    def stat(self, path: str) -> tuple[int, int, int]:
        local = self._local(path)
        if not local.is_file():
            return 0, 0, 0
        return self._modes.get(path, 0o100644), local.stat().st_size, int(local.stat().st_mtime)

    def _all_paths(self) -> list[str]:
        root = Path(self._storage.name)
        pushed = ["/" + str(p.relative_to(root)) for p in root.rglob("*")]
        return sorted(set(self._system_files()) | set(pushed))

    def _glob(self, pattern: str) -> list[str]:
        return [p for p in self._all_paths() if fnmatch.fnmatchcase(p, pattern)]

    def _redirect(self, path: str, data: bytes, append: bool) -> None:
        local = self._local(path)
        local.parent.mkdir(parents=True, exist_ok=True)
        with open(local, "ab" if append else "wb") as f:
            f.write(data)

    # ---- shell ------------------------------------------------------------------------------------------------------

    def banner(self) -> str:
        p = self.props
        return (f"device::ro.product.name={p['ro.product.name']};ro.product.model={p['ro.product.model']};"
                f"ro.product.device={p['ro.product.device']};features=cmd")

    def shell(self, command: str) -> bytes:
        """A fresh shell per command, as `adb shell` starts one: its cwd is / (the top of the sandbox)."""
        text, _ = Shell(self._run, self._glob, self._redirect).execute(command)
        return text.encode()

    def _run(self, argv: list[str]) -> tuple[str, int]:
        program, args = argv[0], argv[1:]
        handler = getattr(self, f"_cmd_{program}", None)
        if handler is not None:
            return handler(args)
        return self._exec(program, args)

    def _cmd_echo(self, args: list[str]) -> tuple[str, int]:
        return " ".join(args) + "\n", 0

    def _cmd_getprop(self, args: list[str]) -> tuple[str, int]:
        if args:
            return self.props.get(args[0], "") + "\n", 0
        return "".join(f"[{k}]: [{v}]\n" for k, v in sorted(self.props.items())), 0

    def _cmd_uname(self, args: list[str]) -> tuple[str, int]:
        return (self.spec["kernel"] if "-r" in args else f"Linux localhost {self.spec['kernel']} aarch64") + "\n", 0

    def _thermal_file_hot(self, path: str) -> bool:
        return path.startswith("/sys/class/thermal/") and path.endswith("/temp") and self.hot_reads > 0

    def _cmd_cat(self, args: list[str]) -> tuple[str, int]:
        out, status = [], 0
        for path in args:
            content = self.read_file(path)
            if content is None:
                out.append(f"cat: {path}: No such file or directory\n")
                status = 1
            else:
                out.append(content.decode(errors="replace"))
        return "".join(out), status

    def _cmd_grep(self, args: list[str]) -> tuple[str, int]:
        """Only `grep -H . FILES` (print every non-empty line of each file, prefixed by its path)."""
        if args[:2] != ["-H", "."]:
            return "grep: this simulated phone only supports 'grep -H . FILE...'\n", 2
        out, status, hot = [], 1, False
        for path in args[2:]:
            content = self.read_file(path)
            if content is None:
                out.append(f"grep: {path}: No such file or directory\n")
                continue
            value = content.decode(errors="replace")
            if self._thermal_file_hot(path):
                value, hot = f"{int(self.hot_c * 1000)}\n", True
            out += [f"{path}:{line}\n" for line in value.splitlines() if line]
            status = 0
        if hot:
            self.hot_reads -= 1
        return "".join(out), status

    def _cmd_mkdir(self, args: list[str]) -> tuple[str, int]:
        for path in (a for a in args if not a.startswith("-")):
            self._local(path).mkdir(parents=True, exist_ok=True)
        return "", 0

    def _cmd_touch(self, args: list[str]) -> tuple[str, int]:
        for path in (a for a in args if not a.startswith("-")):
            local = self._local(path)
            local.parent.mkdir(parents=True, exist_ok=True)
            local.touch()
        return "", 0

    def _cmd_chmod(self, args: list[str]) -> tuple[str, int]:
        mode, paths = args[0], args[1:]
        for path in paths:
            if not self._local(path).is_file():
                return f"chmod: {path}: No such file or directory\n", 1
            executable = mode.isdigit() and int(mode, 8) & 0o111 or "+x" in mode
            with self._lock:
                self._modes[path] = S_IFREG | (0o755 if executable else 0o644)
        return "", 0

    def _cmd_rm(self, args: list[str]) -> tuple[str, int]:
        for path in (a for a in args if not a.startswith("-")):
            local = self._local(path)
            if local.is_dir():
                shutil.rmtree(local)
            elif local.exists():
                local.unlink()
        return "", 0

    def _cmd_ls(self, args: list[str]) -> tuple[str, int]:
        paths = [a for a in args if not a.startswith("-")]
        out = []
        for path in paths:
            local = self._local(path)
            if not local.exists():
                return f"ls: {path}: No such file or directory\n", 1
            out += sorted(p.name for p in local.iterdir()) if local.is_dir() else [path]
        return "".join(f"{n}\n" for n in out), 0

    def _cmd_taskset(self, args: list[str]) -> tuple[str, int]:
        try:
            mask = int(args[0], 16)
        except (IndexError, ValueError):
            return "usage: taskset [-ap] [mask] [PID | cmd [args...]]\n", 1
        if mask & ((1 << self.spec["nr_cpus"]) - 1) == 0:
            return "taskset: sched_setaffinity: Invalid argument\n", 1
        return self._run(args[1:])

    def _exec(self, program: str, args: list[str]) -> tuple[str, int]:
        content = self.read_file(program) if program.startswith("/") else None
        if content is None:
            return f"/system/bin/sh: {program}: inaccessible or not found\n", 127
        if not self._modes.get(program, 0) & 0o111:
            return f"/system/bin/sh: {program}: can't execute: Permission denied\n", 126
        machine = _ELF_MACHINES.get(self.props.get("ro.product.cpu.abi", ""))
        if content[:4] != b"\x7fELF" or int.from_bytes(content[18:20], "little") != machine:
            kind = "64-bit ELF file" if content[:4] == b"\x7fELF" else f"magic {content[:4].hex().upper()}"
            return f"/system/bin/sh: {program}: not executable: {kind}\n", 126
        with self._lock:
            self.benchmark_runs += 1
        return run_benchmark_model(program, args, self.read_file, self.output_variant)

    def close(self) -> None:
        self._storage.cleanup()
