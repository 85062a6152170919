"""The one error type the models layer raises, so callers can report bad settings cleanly."""


class ModelError(ValueError):
    """An unknown model or auxiliary-model name, or a shape the chosen model cannot take."""
