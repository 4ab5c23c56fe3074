"""``python -m reduce OB.yaml --datadir RAW --workdir WORK``: the reduction alone.

The same command as ``megara-dark reduce``, for machines where only the
reduction is installed or wanted (archives, batch jobs).
"""

from __future__ import annotations

from reduce.cli import reduce_command

if __name__ == "__main__":
    reduce_command(prog_name="python -m reduce")
