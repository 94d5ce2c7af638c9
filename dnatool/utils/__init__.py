"""Shared infrastructure: atomic I/O, run directories, units, plots."""
