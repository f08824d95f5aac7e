"""fgnas profiler: conv specs, devices, sweeps, fits and latency tables."""
