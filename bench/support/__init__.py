"""Shared pieces of the benchmarks: harness, load generator, helper processes, figures."""
