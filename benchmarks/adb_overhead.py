"""What the ADB path itself costs per measurement, against the simulated phone on 127.0.0.1: connect (key + AUTH +
fingerprint + pushing and checking benchmark_model), a shell round trip, a thermal read, pushing a model, and the
time one `benchmark()` call spends outside the tool's own timed runs. A real phone over USB or Wi-Fi adds its link's
latency to each of these; the simulator measures our protocol work, not the phone.

    taskset -c 1 .venv/bin/python benchmarks/adb_overhead.py
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()

    from profiler.adb_sim import AdbServer, SimPhone, arm64_elf_stub
    from profiler.measure.devices import BenchmarkSettings, create_device
    from profiler.measure.model_builder import build_model
    from profiler.spec import ConvSpec

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["FGNAS_ADB_KEY"] = str(tmp / "adbkey")
        binary = tmp / "benchmark_model"
        binary.write_bytes(arm64_elf_stub())
        models = [build_model(ConvSpec(16, 16, 32, c, 3, activation="relu"), tmp / "models") for c in (16, 32, 48)]
        size_kb = models[0].stat().st_size / 1024
        phone = SimPhone("pixel1")
        with AdbServer(phone) as server:
            start = time.perf_counter()
            device = create_device("pixel1", serial=server.address, benchmark_binary=binary)
            connect_s = time.perf_counter() - start

            def timed(fn) -> float:
                samples = []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    fn()
                    samples.append(time.perf_counter() - t)
                return statistics.median(samples) * 1e3

            echo_ms = timed(lambda: device.link.shell("echo ok"))
            thermal_ms = timed(device.thermal)
            push_ms = timed(lambda: device.link.push(models[0], "/data/local/tmp/fgnas/push-test.tflite"))
            settings = BenchmarkSettings(runs=10, warmup=2)
            overhead = []
            for i in range(args.repeats):
                t = time.perf_counter()
                m = device.benchmark(models[i % len(models)], settings)
                wall_ms = (time.perf_counter() - t) * 1e3
                tool_ms = m.extra["init_ms"] + m.extra["warmup_avg_ms"] * m.warmup + m.mean_ms * m.count
                overhead.append(wall_ms - tool_ms)
            device.close()
        phone.close()
    print(f"connect (new key, AUTH, fingerprint, push+check benchmark_model): {connect_s * 1e3:.0f} ms")
    print(f"shell round trip (echo): median {echo_ms:.2f} ms over {args.repeats}")
    print(f"thermal read (grep -H . thermal_zone*/type,temp): median {thermal_ms:.2f} ms")
    print(f"push a {size_kb:.0f} KiB model: median {push_ms:.2f} ms")
    print(f"benchmark() time outside the tool's init+warm-up+timed runs: median {statistics.median(overhead):.1f} ms")


if __name__ == "__main__":
    main()
