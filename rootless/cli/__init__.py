"""The `rl` command line: a thin layer over the Python API."""
import gc

# Importing the command line is starting rl: its imports allocate a few hundred thousand objects
# (code, classes, dicts) and next to no garbage cycles, and the collector's default pass after
# every 700 of them cost each start ~1.5 ms. Cycles are still collected, ~140 times less often.
gc.set_threshold(100_000, 50, 50)
