"""fgnas profiler: what every stage shares at the top (conv specs and their costs, ops, errors, atomic writes, the
lowering rules search and export agree on); measure/ (fgnas-profile), latency/ (fgnas-table), gate/ (fgnas-check) and
adb_sim/ (a simulated phone) below."""
