"""Hardware simulators: the CCD controller (with its shutter) and the cover halves.

Each simulator is a device model behind the shared codec of
:mod:`drivers.protocol`, served on a pseudo-terminal or a loopback TCP port by
:mod:`simulators.launcher` (``megara-dark simulate``).
"""
