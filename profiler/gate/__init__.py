"""The CI latency gate (`fgnas-check`): a model timed on a device against a budget, or interleaved with a reference
model against a baseline's ratio, with the statistics that decide and the reports CI reads."""
