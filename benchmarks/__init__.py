"""Benchmarks: latency, throughput, cold start, memory, size and accuracy, side by side."""
