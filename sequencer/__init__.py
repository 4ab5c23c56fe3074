"""The Dark observing mode: observing blocks, the state machine, raw frames, the CLI."""

from reduce import __version__ as __version__  # the one source: reduce/__init__.py
