"""`python -m profiler.adb_sim --profile pixel1 --port 0`: serve one simulated phone until Ctrl-C; prints HOST:PORT."""
from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from profiler.adb_sim.benchmark_tool import VARIANTS
from profiler.adb_sim.phone import SimPhone, arm64_elf_stub, phone_names
from profiler.adb_sim.server import AdbServer, Faults
from profiler.cli_parser import OneLineParser


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m profiler.adb_sim", description=__doc__)
    parser.add_argument("--profile", default="pixel1", choices=phone_names(), help="which phone to simulate")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--drop-every", type=int, metavar="K", help="cut the connection on every K-th command")
    parser.add_argument("--max-drops", type=int, metavar="N", help="stop cutting after N drops")
    parser.add_argument("--die-after", type=int, metavar="N", help="after N commands, go away for good (unplugged)")
    parser.add_argument("--hot-reads", type=int, default=0, metavar="N",
                        help="the first N thermal reads report every zone hot")
    parser.add_argument("--output-variant", choices=VARIANTS, default="current",
                        help="which benchmark_model output format to print")
    parser.add_argument("--reject-keys", action="store_true", help="the user taps Deny on the key prompt")
    parser.add_argument("--write-benchmark-binary", type=Path, metavar="PATH",
                        help="write an arm64 ELF stub this simulator runs as benchmark_model, then exit")
    args = parser.parse_args(argv)
    if args.write_benchmark_binary:
        args.write_benchmark_binary.write_bytes(arm64_elf_stub())
        args.write_benchmark_binary.chmod(0o755)
        print(args.write_benchmark_binary)
        return 0
    # SIGTERM (how tests and service managers stop it) ends the wait like Ctrl-C, so `finally` removes the phone's
    # temp folder instead of leaving a /tmp/fgnas-sim-* behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    phone = SimPhone(args.profile, args.output_variant, args.hot_reads)
    faults = Faults(args.drop_every, args.max_drops, args.die_after, args.reject_keys)
    server = AdbServer(phone, args.port, faults).start()
    print(server.address, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        return 130
    finally:
        server.stop()
        phone.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
