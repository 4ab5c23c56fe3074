"""``python -m reduce OB.yaml --datadir RAW --workdir WORK``: the reduction alone.

The same command as ``megara-dark reduce``, for machines where only the
reduction is installed or wanted (archives, batch jobs).
"""

from __future__ import annotations

from reduce.runtime import configure_process

if __name__ == "__main__":
    configure_process()  # before anything imports numpy
    from reduce.cli import reduce_command

    reduce_command(prog_name="python -m reduce")
