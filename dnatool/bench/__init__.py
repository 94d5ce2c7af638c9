"""Benchmarks that span several stages: `ranking` (do a method's ratings predict the accuracy of
architectures trained from scratch?), its truth, its pluggable methods and its statistics."""
