"""Device drivers for MEGARA's Dark mode: the CCD controller and the focal-plane cover.

Each wire protocol lives once, as a sans-I/O codec, in :mod:`drivers.protocol`;
the drivers here speak it over a serial line opened by URL with pyserial.
"""
