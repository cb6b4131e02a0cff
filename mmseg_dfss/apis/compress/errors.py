"""The one error class of ``tools/compress.py``: bad input, said in one line."""


class CompressError(ValueError):
    """Bad input to the compress command: its message is the one line the user reads."""
