"""The one error every config check raises."""


class ConfigError(ValueError):
    """A configuration the tool refuses to run, with a message that says how to fix it."""
