"""Benchmark harness: correct latency and throughput measurement on several backends."""
