"""The command line: one module per verb, wired in `main.py`."""
