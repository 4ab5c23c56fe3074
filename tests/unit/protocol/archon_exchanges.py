"""Literal Archon bytes copied from SDSS-V's sdss-archon (BSD-3-Clause).

Each constant names the file it comes from, in github.com/sdss/archon at
commit ``cb2e48cc7602c4a819020f0450f8059763eea178``. The mock controller of
that suite (``tests/conftest.py``) answers ``reply.format(cid=cid) + "\\n"``
to a text reply and pads a bytes reply with spaces to 1028 bytes; where a test
writes ``{cid}`` we put the id the command was sent with.
"""

from __future__ import annotations

SDSS_ARCHON_COMMIT = "cb2e48cc7602c4a819020f0450f8059763eea178"

#: A real controller's SYSTEM reply (SDSS-V BOSS), quoted with its trailing
#: space in docs/sphinx/controller.rst (the command went out as ``>01SYSTEM``).
SYSTEM_HARDWARE = (
    b">01SYSTEM\n",
    b"<01BACKPLANE_TYPE=1 BACKPLANE_REV=5 BACKPLANE_VERSION=1.0.1104 BACKP"
    b"LANE_ID=00003FFF1A9902F6 POWER_ID=0000014A46C4 MOD_PRESENT=FFF MOD1_"
    b"TYPE=12 MOD1_REV=2 MOD1_VERSION=1.0.1104 MOD1_ID=013C82C81218EAC1 MO"
    b"D2_TYPE=11 MOD2_REV=0 MOD2_VERSION=1.0.1104 MOD2_ID=013ADF5CE983EED1"
    b" MOD3_TYPE=16 MOD3_REV=0 MOD3_VERSION=1.0.1104 MOD3_ID=013F0B0C2B9A0"
    b"98A MOD4_TYPE=9 MOD4_REV=0 MOD4_VERSION=1.0.1104 MOD4_ID=013BDC58A37"
    b"70501 MOD5_TYPE=2 MOD5_REV=10 MOD5_VERSION=1.0.1104 MOD5_ID=013CA1A7"
    b"F8456290 MOD6_TYPE=2 MOD6_REV=10 MOD6_VERSION=1.0.1104 MOD6_ID=0135E"
    b"6C7132CAB69 MOD7_TYPE=2 MOD7_REV=10 MOD7_VERSION=1.0.1104 MOD7_ID=01"
    b"3D20299487C81A MOD8_TYPE=16 MOD8_REV=0 MOD8_VERSION=1.0.1104 MOD8_ID"
    b"=013C005A12A71540 MOD9_TYPE=8 MOD9_REV=0 MOD9_VERSION=1.0.1104 MOD9_"
    b"ID=013FC3304C7B3552 MOD10_TYPE=16 MOD10_REV=0 MOD10_VERSION=1.0.1104"
    b" MOD10_ID=013613E28D6F9CFA MOD11_TYPE=16 MOD11_REV=0 MOD11_VERSION=1"
    b".0.1104 MOD11_ID=013AC627F3458711 MOD12_TYPE=11 MOD12_REV=0 MOD12_VE"
    b"RSION=1.0.1104 MOD12_ID=013F95EDEF775096 \n",
)

#: tests/conftest.py: the mock's default answers (STATUS, and everything else).
STATUS_DEFAULT = (b">07STATUS\n", b"<07POWER=4 POWERGOOD=1\n")
EMPTY_DEFAULT = (b">08HOLDTIMING\n", b"<08\n")

#: tests/controller/test_get_device_status.py: a reply, a power-bad reply and
#: a refusal.
STATUS_VALUES = (b">02STATUS\n", b"<02KEY1=1 KEY2=-2.1 POWERGOOD=1 POWER=4\n")
STATUS_POWER_BAD = (b">03STATUS\n", b"<03POWER=4 POWERGOOD=0\n")
STATUS_REFUSED = (b">04STATUS\n", b"?04\n")

#: tests/controller/test_get_system.py.
SYSTEM_VALUES = (b">05SYSTEM\n", b"<05KEY1=1 KEY2=2\n")
SYSTEM_MODTYPE = (b">06SYSTEM\n", b"<06MOD1_TYPE=1\n")

#: tests/controller/test_frame.py (sdss-archon reads keys with TIME as hex).
FRAME_SMALL = (b">09FRAME\n", b"<09TIME=FF KEY2=2 BUFF2TIMESTAMP=AF\n")

#: tests/controller/test_fetch.py: FRAME (with its trailing space; no TIMER,
#: RBUF or buffer-3 geometry), then the 600-block FETCH of buffer 2 (640 x 480
#: 16-bit pixels at 3221225472 = 0xC0000000), which ``fetch(-1)`` picks as the
#: complete buffer with the latest timestamp.
FRAME_FETCH = (
    b">0AFRAME\n",
    b"<0AWBUF=3 BUF1COMPLETE=1 BUF2COMPLETE=1 BUF3COMPLETE=0 "
    b"BUF1TIMESTAMP=0 BUF2TIMESTAMP=10 BUF3TIMESTAMP=5 "
    b"BUF1WIDTH=640 BUF1HEIGHT=480 BUF1SAMPLE=0 BUF1BASE=0000000000 "
    b"BUF2WIDTH=640 BUF2HEIGHT=480 BUF2SAMPLE=0 BUF2BASE=3221225472 \n",
)
LOCK_BUFFER_2 = (b">0BLOCK2\n", b"<0B\n")
FETCH_BUFFER_2 = (b">0CFETCHC000000000000258\n", (b"<0C:" + b"0" * 1024) * 600)
UNLOCK_ALL = (b">0DLOCK0\n", b"<0D\n")

#: tests/controller/test_controller.py: a one-block binary reply (padded with
#: spaces by the mock), a reply and a refusal. PING is the mock's command, not
#: one of the controller's that we know of.
BINARY_ONE_BLOCK = (b">0EPING\n", b"<0E:12345".ljust(1028, b" "))
PING_PONG = (b">0FPING\n", b"<0FPONG\n")
PING_REFUSED = (b">10PING\n", b"?10\n")

#: tests/controller/test_config.py: RCONFIG answers of its mock (which sends
#: every command with id 0 and answers with the line number as id), one with
#: '=' inside the value, and an empty line.
RCONFIG_REPLIES = (
    (b">00RCONFIG0000\n", b"<00LINE0=0\n", ("LINE0", "0")),
    (b">00RCONFIG0003\n", b"<03LINE3=3=3\n", ("LINE3", "3=3")),
    (b">00RCONFIG0005\n", b"<05\n", None),
)

#: tests/controller/test_config.py: the ACF of its ``config_file`` fixture (a
#: raw string there, so one backslash) and the WCONFIG texts that
#: ``write_config`` sends for it (the test asserts the first one).
CONFIG_FIXTURE_ACF = r"""[CONFIG]
CONFIG\1=1
CONFIG\2="2,2"
LINECOUNT=100
PIXELCOUNT=100
PARAMETER1="Lines=100"
PARAMETER2="Pixels=100"
PARAMETER3="HORIZONTALBINNING=1"
PARAMETER4="VERTICALBINNING=1"
PARAMETER5="INTCS=0"
PARAMETER6="PRESKIPPIXELS=0"
PARAMETER7="POSTSKIPPIXELS=0"
PARAMETER8="PRESKIPLINES=0"
PARAMETER9="POSTSKIPLINES=0"
PARAMETER10="ABORTEXPOSURE=0"
PARAMETER11="AUTOFLUSH=1"
PARAMETER12="EXPOSURES=0"
PARAMETER13="READOUT=0"
PARAMETER14="DOFLUSH=1"
"""
CONFIG_FIXTURE_WCONFIG = (
    "WCONFIG0000CONFIG/1=1",
    "WCONFIG0001CONFIG/2=2,2",
    "WCONFIG0002LINECOUNT=100",
    "WCONFIG0003PIXELCOUNT=100",
    "WCONFIG0004PARAMETER1=Lines=100",
)

#: tests/data/BOSS_extra.acf, an ArchonGUI file: its first lines, module keys
#: with one backslash, quoted and empty values, a '#' value and the start of
#: its [SYSTEM] section (lines 1-8, 164-165, 184, 758-765 and 1246-1249).
BOSS_EXTRA_ACF = r"""[CONFIG]
ADXCDS=0
ADXRAW=0
APPLYALL=0
BIGBUF=0
CONSTANT0="AD_CLAMP_E2V=1.0"
CONSTANT1="AD_CLAMP_LBNL=-2.0"
CONSTANT2=
MOD1\XVN_ENABLE1=1
MOD1\XVN_ENABLE2=1
MOD1\XVP_LABEL1=
PARAMETER0="ContinuousExposures=0"
PARAMETER1="Exposures=0"
PARAMETER10="PreSkipPixels=0"
PARAMETER11="PostSkipPixels=0"
PARAMETER12="OverscanPixels=0"
PARAMETER13=
PARAMETER14=# Switches
PARAMETER15="AbortExposure=0"

[SYSTEM]
BACKPLANE_ID=00003FFF1A98CCCF
BACKPLANE_REV=5
"""
BOSS_EXTRA_CONFIG = [
    ("ADXCDS", "0"),
    ("ADXRAW", "0"),
    ("APPLYALL", "0"),
    ("BIGBUF", "0"),
    ("CONSTANT0", "AD_CLAMP_E2V=1.0"),
    ("CONSTANT1", "AD_CLAMP_LBNL=-2.0"),
    ("CONSTANT2", ""),
    ("MOD1/XVN_ENABLE1", "1"),
    ("MOD1/XVN_ENABLE2", "1"),
    ("MOD1/XVP_LABEL1", ""),
    ("PARAMETER0", "ContinuousExposures=0"),
    ("PARAMETER1", "Exposures=0"),
    ("PARAMETER10", "PreSkipPixels=0"),
    ("PARAMETER11", "PostSkipPixels=0"),
    ("PARAMETER12", "OverscanPixels=0"),
    ("PARAMETER13", ""),
    ("PARAMETER14", "# Switches"),
    ("PARAMETER15", "AbortExposure=0"),
]

#: archon/controller/controller.py: what ``expose(1.0)`` sends (``reset()``
#: first, then the exposure), with an ACF that defines every parameter it sets
#: and ``archon.int_param: IntCS`` (the default of archon/etc/archon.yml).
#: ``set_param`` upper-cases the parameter names.
EXPOSE_ONE_SECOND = (
    "HOLDTIMING",
    "FASTLOADPARAM AUTOFLUSH 0",
    "FASTLOADPARAM EXPOSURES 0",
    "FASTLOADPARAM READOUT 0",
    "FASTLOADPARAM ABORTEXPOSURE 0",
    "FASTLOADPARAM DOFLUSH 0",
    "FASTLOADPARAM WAITCOUNT 0",
    "STATUS",
    "FASTLOADPARAM READOUT 1",
    "FASTLOADPARAM INTCS 100",
    "FASTLOADPARAM EXPOSURES 1",
    "RELEASETIMING",
)
