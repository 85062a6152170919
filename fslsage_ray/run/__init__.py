"""The run in pieces, each with one job; `fslsage_ray.simulation.Simulation` puts them together.

- startup.py: the driver's one-time work before any round (data, models, backend, devices);
- folder.py: the run folder (its files, URI mirror, checkpoints, resume checks);
- driver.py: one round, top to bottom (train, aggregate, evaluate, record);
- training.py: the rounds from a checkpoint to the end (recovery, checkpoints, stop rules);
- record.py: a round's built-in columns; stop_rules.py, round_log.py: built-in callbacks.
"""
