"""Shared kernel: settings, database, audit log, clock and error types.

Nothing here imports any other package of ours; everything else may import it.
"""
