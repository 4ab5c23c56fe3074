"""The master-dark reduction: raw frames in, master products out."""

__version__ = "0.1.0.dev0"
"""megara-dark's version, written here only (pyproject.toml and the
sequencer read it; the products and task.json record it)."""
