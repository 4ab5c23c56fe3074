"""What the reduction can check before any frame exists.

A run calls these before its first exposure (``sequencer.preflight``), so
that a master bias that is not one, or QC settings that do not load, are
refused before dark time is spent, with the same messages that
``megara-dark reduce`` gives for them later.
"""

from __future__ import annotations

from pathlib import Path

from reduce.checks import FrameCheckConfig
from reduce.masters import Master, MasterKind, load_master
from reduce.pipeline import Options
from reduce.qc import QCThresholds
from reduce.settings import load_qc_config


def reduction_options(qc_config: Path | None, min_frames: int) -> Options:
    """The reduction's options from a QC file (None: the defaults).

    Raises
    ------
    ConfigError
        The QC file cannot be read, or a key in it is unknown or invalid, or
        ``min_frames`` is below 1.
    """
    thresholds, checks = QCThresholds(), FrameCheckConfig()
    if qc_config is not None:
        thresholds, checks = load_qc_config(qc_config)
    return Options(min_frames=min_frames, thresholds=thresholds, checks=checks)


def check_master_bias(path: Path) -> Master:
    """Read and validate the master bias a dark block names.

    Raises
    ------
    InputError
        It is not a readable, finite master bias of the trimmed shape.
    """
    return load_master(path, MasterKind.BIAS)
