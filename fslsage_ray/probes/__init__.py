"""Leakage probes: what each method reveals, measured during training next to accuracy,
bytes and time (docs/probes.md).

A probe reads a run's state on probe rounds (config `probes`) and never changes it: the
learning columns, bytes and simulated time of a run are bit-identical with and without
probes. Probes that need models run on the server host through one round verb
(Backend.inspect), the same code in one process and in a Ray actor; probes that need only
the messages run on the driver from the round's ledger. This package sits between memory and
the coordinator: only the coordinator imports it, and importing it loads no torch (the
settings are read while a config is validated).
"""
