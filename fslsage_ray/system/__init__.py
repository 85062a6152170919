"""Simulated wall-clock time: devices and links (devices.py), FLOPs per step (flops.py),
what each round sends (events.py) and the clock that replays it (clock.py)."""
