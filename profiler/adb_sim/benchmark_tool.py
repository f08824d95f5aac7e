"""What `benchmark_model` does on the simulated phone: parse its flags, time the model with the host's LiteRT runtime
the way the tool's Run loop does (at least N runs and at least S seconds, capped by max_secs), and print the result in
one of the formats the tool has printed (see profiler.measure.benchmark_output for the variants)."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

VARIANTS = ("current", "2020", "2019", "2018")
_PAGE_MB = 4096 / 2**20


@dataclass(frozen=True)
class Flags:
    graph: str = ""
    num_threads: int = -1
    num_runs: int = 50
    warmup_runs: int = 1
    min_secs: float = 1.0
    warmup_min_secs: float = 0.5
    max_secs: float = 150.0
    use_xnnpack: bool = True
    help: bool = False


_TYPES: dict[str, Callable[[str], object]] = {
    "graph": str, "num_threads": int, "num_runs": int, "warmup_runs": int, "min_secs": float,
    "warmup_min_secs": float, "max_secs": float,
    "use_xnnpack": lambda v: v.lower() in ("1", "true"), "help": lambda v: v.lower() in ("", "1", "true"),
}


# Flags each era's tool knows: min_secs/warmup_min_secs/max_secs arrived in 2019, use_xnnpack in 2020.
_KNOWN = {"2018": {"graph", "num_threads", "num_runs", "warmup_runs", "help"}}
_KNOWN["2019"] = _KNOWN["2018"] | {"min_secs", "warmup_min_secs", "max_secs"}
_KNOWN["2020"] = _KNOWN["current"] = set(_TYPES)


def parse_flags(argv: list[str], variant: str = "current") -> tuple[Flags, list[str]]:
    """`--name=value` flags as the tool's Flags::Parse reads them; returns the flags and the unconsumed arguments."""
    values: dict[str, object] = {}
    unconsumed = []
    for arg in argv:
        name, _, value = arg.removeprefix("--").partition("=")
        if arg.startswith("--") and name in _KNOWN[variant]:
            values[name] = _TYPES[name](value)
        else:
            unconsumed.append(arg)
    return Flags(**values), unconsumed


@dataclass(frozen=True)
class _Series:
    samples_us: list[int]

    def line(self) -> str:
        """tensorflow::Stat<int64_t>::OutputToStream."""
        s = self.samples_us
        if not s:
            return "count=0"
        if min(s) == max(s):
            return f"count={len(s)} curr={s[-1]}" + ("(all same)" if len(s) > 1 else "")
        avg = sum(s) / len(s)
        std = int(math.sqrt(max(sum(x * x for x in s) / len(s) - avg * avg, 0.0)))
        return f"count={len(s)} first={s[0]} curr={s[-1]} min={min(s)} max={max(s)} avg={avg:g} std={std}"

    @property
    def avg(self) -> float:
        return sum(self.samples_us) / len(self.samples_us) if self.samples_us else 0.0


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE_MB


def _run_phase(invoke: Callable[[], None], min_runs: int, min_secs: float, max_secs: float) -> _Series:
    samples = []
    now = time.perf_counter()
    min_finish, max_finish = now + min_secs, now + max_secs
    while (len(samples) < min_runs or now < min_finish) and now <= max_finish:
        start = time.perf_counter_ns()
        invoke()
        samples.append((time.perf_counter_ns() - start) // 1000)
        now = time.perf_counter()
    return _Series(samples)


def run_benchmark_model(program: str, argv: list[str], read_file: Callable[[str], bytes | None],
                        variant: str = "current") -> tuple[str, int]:
    """Run the tool's command line; returns (merged stdout+stderr, exit status)."""
    flags, unconsumed = parse_flags(argv, variant)
    info = "INFO: " if variant == "current" else ""
    out: list[str] = []
    if flags.help or (unconsumed and variant != "current"):  # before 2020 an unknown flag failed the parse
        usage = "\n".join(f"\t--{name}=\t{t.__name__ if isinstance(t, type) else 'bool'}\toptional"
                          for name, t in _TYPES.items() if name in _KNOWN[variant])
        return f"ERROR: usage: {program}\nFlags:\n{usage}\n", 1
    out.append(f"{info}STARTING!")
    if unconsumed and variant == "current":
        out.append(f"WARN: Unconsumed cmdline flags: {' '.join(unconsumed)}")
    out += [f"{info}Log parameter values verbosely: [0]", f"{info}Min num runs: [{flags.num_runs}]",
            f"{info}Num threads: [{flags.num_threads}]", f"{info}Min warmup runs: [{flags.warmup_runs}]",
            f"{info}Graph: [{flags.graph}]", f"{info}Use xnnpack: [{int(flags.use_xnnpack)}]"]
    if not flags.graph:
        return "\n".join(out + ["ERROR: Please specify the name of your TF Lite input file with --graph"]) + "\n", 1
    model = read_file(flags.graph)
    if model is None:
        out += [f"ERROR: Could not open '{flags.graph}'.", f"ERROR: Failed to mmap model {flags.graph}",
                "ERROR: Benchmarking failed."]
        return "\n".join(out) + "\n", 1

    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if flags.use_xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    start_mem = _rss_mb()
    start = time.perf_counter_ns()
    try:
        interpreter = Interpreter(model_content=model, num_threads=max(flags.num_threads, 1),
                                  experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        out += [f"ERROR: {exc}", "ERROR: Benchmarking failed."]
        return "\n".join(out) + "\n", 1
    init_us = (time.perf_counter_ns() - start) // 1000
    init_mem = _rss_mb() - start_mem
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], rng.standard_normal(detail["shape"]).astype(detail["dtype"]))
    out += [f"{info}Loaded model {flags.graph}"]
    if flags.use_xnnpack:
        out.append(f"{info}Created TensorFlow Lite XNNPACK delegate for CPU.")
    out += [f"{info}The input model file size (MB): {len(model) / 1e6:g}",
            f"{info}Initialized session in {init_us / 1e3:g}ms."]

    phases = []
    timed_for = (flags.warmup_min_secs, flags.min_secs) if variant != "2018" else (0.0, 0.0)  # 2018: exact counts
    for runs, min_secs in zip((flags.warmup_runs, flags.num_runs), timed_for):
        if variant == "2018":
            out.append(f"{info}Running benchmark for {runs} iterations")
        elif variant == "2019":
            out.append(f"{info}Running benchmark for at least {runs} iterations and at least {min_secs:g} seconds")
        else:
            out.append(f"{info}Running benchmark for at least {runs} iterations and at least {min_secs:g} seconds "
                       f"but terminate if exceeding {flags.max_secs:g} seconds.")
        series = _run_phase(interpreter.invoke, runs, min_secs, flags.max_secs)
        out += [f"{info}{series.line()}", ""]
        phases.append(series)
    warmup, inference = phases
    overall_mem = _rss_mb() - start_mem
    first = warmup.samples_us[0] if warmup.samples_us else 0
    if variant in ("2018", "2019"):
        out.append(f"Average inference timings in us: Warmup: {warmup.avg:g}, Init: {init_us}, "
                   f"no stats: {inference.avg:g}")
    else:
        out.append(f"{info}Inference timings in us: Init: {init_us}, First inference: {first}, "
                   f"Warmup (avg): {warmup.avg:g}, Inference (avg): {inference.avg:g}")
        out.append(f"{info}Note: as the benchmark tool itself affects memory footprint, the following is only "
                   f"APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at "
                   f"your discretion.")
        memory = "Memory footprint delta from the start of the tool (MB)" if variant == "current" else \
            "Peak memory footprint (MB)"
        out.append(f"{info}{memory}: init={init_mem:g} overall={overall_mem:g}")
    return "\n".join(out) + "\n", 0
