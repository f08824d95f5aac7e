"""The latency model (`fgnas-table`): the fits of a raw log's measurements, the latency table they make, a .tflite
priced op by op by it, whether a table is this machine's, and tables imported from published phone measurements."""
