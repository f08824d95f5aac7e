"""This computer as a device: the LiteRT interpreter, pinned to one core, in a worker process.

The runtime runs in a separate process so that a crash (a segfault in a kernel) or a hang cannot take the sweep
down: the parent waits at most `settings.timeout_s`, kills and restarts the worker, retries, and only then raises
DeviceFault. TensorFlow is never imported here; the worker loads only LiteRT and numpy.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from profiler.errors import DeviceFault, FgnasError
from profiler.measure.devices import register_device
from profiler.measure.devices.base import BenchmarkSettings, Device, Measurement

RUNTIME = "ai-edge-litert"
_REPO_ROOT = str(Path(__file__).resolve().parents[3])


def time_model(model_path: str, threads: int, runs: int, warmup: int, use_xnnpack: bool) -> list[float]:
    """Milliseconds of each of `runs` timed invocations after `warmup` untimed ones, in this process."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if use_xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_path=model_path, num_threads=threads, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], rng.standard_normal(detail["shape"]).astype(np.float32))
    for _ in range(warmup):
        interpreter.invoke()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        interpreter.invoke()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


def _die_with_parent(parent_pid: int) -> None:
    """Exit as soon as the sweep process is gone (kill -9 included), so no orphan keeps timing a model on the
    measurement core; a watchdog thread notices within 0.2 s, between two invocations of the model."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.2)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def serve(cpu: int, parent_pid: int) -> None:
    """The worker's loop: one JSON request per stdin line, one JSON answer per line on the original stdout.

    stdout is then pointed at stderr so that nothing the runtime prints can corrupt the answers. Ctrl-C is for the
    parent: the worker ignores it, so the measurement in flight completes and is logged before the sweep stops.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    os.sched_setaffinity(0, {cpu})
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    for line in sys.stdin:
        try:
            answer = {"ok": time_model(**json.loads(line))}
        except Exception as exc:  # reported to the parent, which decides what it means
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


class HostDevice(Device):
    name = "host"

    def __init__(self, cpu: int = 0, retries: int = 2) -> None:
        if not 0 <= cpu < (os.cpu_count() or 1):
            raise FgnasError(f"cpu {cpu} does not exist here: choose one of 0..{(os.cpu_count() or 1) - 1}")
        self.cpu = cpu
        self.retries = retries
        self._process: subprocess.Popen | None = None
        # A sweep measures from a device thread while Ctrl-C makes the main thread close the device: the lock lets the
        # measurement in flight finish (and be logged) before the worker is stopped, never both at once.
        self._lock = threading.RLock()

    def info(self) -> dict:
        return {
            "name": self.name,
            "hostname": platform.node(),
            "cpu_model": _cpu_model(),
            "logical_cpus": os.cpu_count(),
            "os": platform.platform(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "runtime": RUNTIME,
            "runtime_version": importlib.metadata.version(RUNTIME),
            "threads": 1,
            "affinity": [self.cpu],
            "cpu": cpu_identity(),
        }

    def benchmark(self, model_path: Path, settings: BenchmarkSettings) -> Measurement:
        request = {"model_path": str(model_path), "threads": settings.threads, "runs": settings.runs,
                   "warmup": settings.warmup, "use_xnnpack": settings.use_xnnpack}
        failures = []
        for _ in range(self.retries + 1):
            with self._lock:
                self._start_worker()
                started = time.time()
                answer = self._ask(json.dumps(request), settings.timeout_s)
                if answer is None:
                    failures.append(f"no answer within {settings.timeout_s:g} s")
                elif not answer.endswith("\n"):
                    failures.append(f"worker died (exit code {self._process.poll()})")
                else:
                    result = json.loads(answer)
                    if "error" in result:
                        raise FgnasError(f"LiteRT cannot run {model_path}: {result['error']}; "
                                         f"{_advice(model_path)}")
                    return Measurement.from_samples(result["ok"], settings.warmup, started, time.time(),
                                                    {"cpu": self.cpu, "threads": settings.threads})
                self._stop_worker()
        raise DeviceFault(f"host runtime failed {len(failures)} times on {model_path}: {'; '.join(failures)}")

    def close(self) -> None:
        with self._lock:
            self._stop_worker()

    @property
    def worker_pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def _ask(self, request: str, timeout_s: float) -> str | None:
        """Send one request line; the answer line ('' or a fragment if the worker died), None on timeout."""
        try:
            self._process.stdin.write(request + "\n")
            self._process.stdin.flush()
        except OSError:
            return ""
        ready, _, _ = select.select([self._process.stdout], [], [], timeout_s)
        return self._process.stdout.readline() if ready else None

    def _start_worker(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        self._stop_worker()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [_REPO_ROOT, os.environ.get("PYTHONPATH")])),
                   TF_CPP_MIN_LOG_LEVEL="2")
        self._process = subprocess.Popen([sys.executable, "-m", "profiler.measure.devices.host", str(self.cpu),
                                          str(os.getpid())],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                         text=True, env=env)

    def _stop_worker(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            self._process.stdin.close()
            self._process.stdout.close()
            self._process = None


# The name profiler.measure.model_builder.model_path gives the models this tool converts into its cache:
# <16 hex config hash>.b<builder version>-tf<TF version>.tflite. Only such a file may be deleted to be rebuilt; any
# other file is the user's model (fgnas-check's argument, an export), which deleting would lose.
_BUILT_MODEL = re.compile(r"[0-9a-f]{16}\.b\d+-tf[\w.+-]*\.tflite")


def _advice(model_path: Path) -> str:
    if _BUILT_MODEL.fullmatch(Path(model_path).name):
        return "delete the file so that it is rebuilt"
    return "it is not a TFLite model this runtime can load: give a .tflite converted by TensorFlow Lite"


# /proc/cpuinfo flags that select XNNPACK's kernels (its hardware config: SSE..AVX2, FMA3, F16C, AVX-512 and its
# VNNI/BF16/FP16/VBMI extensions, AVX-VNNI, AMX); a VM's hypervisor may hide some, which changes the kernels picked.
ISA_FLAG_PREFIXES = ("sse", "ssse", "avx", "amx", "fma", "f16c", "xop", "gfni", "vaes", "vpclmulqdq")
# aarch64 hosts: /proc/cpuinfo says "CPU implementer/architecture/part/revision" and "Features" instead
_ARM_KEYS = {"vendor": "CPU implementer", "family": "CPU architecture", "model": "CPU part", "stepping": "CPU revision"}
_X86_KEYS = {"vendor": "vendor_id", "family": "cpu family", "model": "model", "stepping": "stepping"}


def _number(text: str | None) -> int | str | None:
    """'26' -> 26, '0xd0c' -> 3340; anything else as given."""
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        return text


def parse_cpuinfo(text: str) -> dict:
    """The identity of the first processor in /proc/cpuinfo text: vendor, family, model, stepping (numbers where the
    kernel writes numbers), model name, and the sorted ISA flags the runtime's kernels dispatch on (x86: those of
    ISA_FLAG_PREFIXES; aarch64: every Feature). Fields the text lacks are left out."""
    first: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if first:
                break
            continue
        key, sep, value = line.partition(":")
        if sep:
            first.setdefault(key.strip(), value.strip())
    keys = _X86_KEYS if "vendor_id" in first else _ARM_KEYS
    out: dict = {name: _number(first[key]) if name != "vendor" else first[key]
                 for name, key in keys.items() if key in first}
    if "model name" in first:
        out["model_name"] = first["model name"]
    if "flags" in first:
        out["isa"] = sorted(f for f in first["flags"].split() if f.startswith(ISA_FLAG_PREFIXES))
    elif "Features" in first:
        out["isa"] = sorted(first["Features"].split())
    return out


def parse_cache_sizes(entries: list[tuple[str, str, str]]) -> dict[str, int]:
    """KiB per cache ({"l1d": 48, "l1i": 32, "l2": 1024, "l3": 32768}) from sysfs's (level, type, size) of one CPU's
    cache/index* directories, e.g. ("1", "Data", "48K"), ("3", "Unified", "32768K")."""
    scale = {"K": 1, "M": 1024, "G": 1024 * 1024}
    out = {}
    for level, kind, size in entries:
        size = size.strip()
        if not size or size[-1] not in scale or not size[:-1].isdigit():
            continue
        suffix = {"Data": "d", "Instruction": "i"}.get(kind.strip(), "")
        out[f"l{level.strip()}{suffix}"] = int(size[:-1]) * scale[size[-1]]
    return dict(sorted(out.items()))


def cpu_identity(cpu: int = 0) -> dict:
    """This machine's CPU as a table records it: parse_cpuinfo of /proc/cpuinfo and `cache_kib`, parse_cache_sizes of
    CPU `cpu`'s sysfs caches; {} where neither can be read (not Linux)."""
    try:
        out = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        out = {}
    out.pop("model_name", None)  # already the device's cpu_model
    entries = []
    for index in sorted(Path(f"/sys/devices/system/cpu/cpu{cpu}/cache").glob("index*")):
        try:
            entries.append(tuple((index / name).read_text() for name in ("level", "type", "size")))
        except OSError:
            continue
    caches = parse_cache_sizes(entries)
    if caches:
        out["cache_kib"] = caches
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@register_device("host")
def create_host(cpu: int = 0, serial: str | None = None, benchmark_binary: str | None = None,
                force: bool = False) -> HostDevice:
    """`force` (skip a phone's readiness checks) has nothing to skip on the host and is accepted as a no-op."""
    if serial is not None:
        raise FgnasError("--serial is for phones; the host device is this computer: drop --serial")
    if benchmark_binary is not None:
        raise FgnasError("--benchmark-binary is for phones; the host device times models with LiteRT in Python: "
                         "drop --benchmark-binary")
    return HostDevice(cpu=cpu)


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
