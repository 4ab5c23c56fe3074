"""Sans-I/O codecs, one module per wire protocol (no I/O, no sleeps).

Both the drivers and the simulators import these modules, so a protocol is
written exactly once. ``docs/protocols.md`` carries byte-exact example
exchanges that the tests replay against the codecs.
"""
