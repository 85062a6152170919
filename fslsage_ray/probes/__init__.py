"""Probes: what a run reveals, measured while it trains without changing it."""
