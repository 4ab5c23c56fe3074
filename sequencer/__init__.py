"""The Dark observing mode: observing blocks, the state machine, raw frames, the CLI."""

__version__ = "0.1.0.dev0"
