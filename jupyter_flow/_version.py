"""The package's version, in a module of its own so that any module can name it without
importing the ``jupyter_flow`` facade (which imports the server extension lazily: a cycle)."""

__version__ = "0.1.0"
