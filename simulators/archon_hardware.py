"""The simulated Archon's hardware as ``SYSTEM`` and ``STATUS`` describe it.

The backplane holds, in this model of MEGARA's controller, five modules
(type codes of sdss-archon's ``ModType``): a clock driver in slot 1, a HeaterX
in slot 2 (the cryostat's temperature sensors and heater, and the shutter's
digital lines), an ADC module in slot 3 (taps ``AD1`` and ``AD2``), an LVXBias
in slot 4 and an HVXBias in slot 5; slots 6..12 are empty. ``SYSTEM`` lists
every slot, empty ones with type 0, and ends with a space like the real reply
quoted in sdss-archon's documentation. ``BACKPLANE_ID`` spells ``SIMULATE``
in hexadecimal ASCII, so that a log shows which controller answered.

``STATUS`` carries ``POWER`` and ``POWERGOOD``, the backplane temperature,
supply readings (the keys of Caltech's emulator) and, per module,
``MODn/TEMP`` (the board). The HeaterX adds (degrees Celsius, as the real
controller reports them):

* ``MOD2/TEMPA``: **the CCD temperature** (sensor A, labelled ``CCD`` in
  ``simulators/megara.acf``; 163.15 K = -110.000 C for MEGARA);
* ``MOD2/TEMPB``: the cold plate, 12 K below the CCD;
* ``MOD2/TEMPC``: sensor C, not fitted (0.000);
* ``MOD2/HEATERAOUTPUT``, ``MOD2/HEATERBOUTPUT``: heater drive, volts;
* ``MOD2/DINPUTS``: the levels of the HeaterX's input lines as a decimal bit
  field, bit 0 for DIO1 .. bit 7 for DIO8. **The shutter** is wired as a real
  Archon camera wires one: the timing script drives it through DIO1 (an
  output, so its bit reads 0 here) and two microswitches come back on DIO3
  (bit 2, value 4: fully closed) and DIO4 (bit 3, value 8: fully open). A
  shut shutter reads ``MOD2/DINPUTS=4``, an open one 8.

All values are integers or decimal numbers: sdss-archon's ``get_device_status``
converts every one with ``int``/``float``.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.protocol.archon import Power

#: Kelvin to degrees Celsius.
ZERO_CELSIUS_K = 273.15
#: The HeaterX slot, whose sensors and digital lines carry CCD and shutter.
HEATERX_SLOT = 2
#: ``MOD2/DINPUTS`` bits of the shutter's switches.
SHUTTER_CLOSED_BIT = 1 << 2
SHUTTER_OPEN_BIT = 1 << 3
#: Slots of the backplane.
SLOTS = 12

_VERSION = "1.0.1104"


@dataclass(frozen=True)
class Module:
    """One installed module, as ``SYSTEM`` describes it."""

    type: int  # sdss-archon ModType: 1 DRIVER, 2 AD, 8 HVXBIAS, 9 LVXBIAS, 11 HEATERX
    rev: int
    board_c: float  # board temperature, degrees Celsius


#: MEGARA's controller, slot by slot.
MODULES: dict[int, Module] = {
    1: Module(1, 3, 33.5),
    HEATERX_SLOT: Module(11, 0, 31.25),
    3: Module(2, 10, 38.0),
    4: Module(9, 0, 34.75),
    5: Module(8, 0, 35.5),
}


def _module_id(slot: int) -> str:
    return f"{0x0153494D00000000 + slot:016X}"


def system_values() -> dict[str, str]:
    """The ``SYSTEM`` reply's keys and values, in the controller's order."""
    present = sum(1 << (slot - 1) for slot in MODULES)
    values = {
        "BACKPLANE_TYPE": "1",
        "BACKPLANE_REV": "5",
        "BACKPLANE_VERSION": _VERSION,
        "BACKPLANE_ID": "53494D554C415445",  # "SIMULATE"
        "POWER_ID": "0000014D45474152",
        "MOD_PRESENT": f"{present:03X}",
    }
    for slot in range(1, SLOTS + 1):
        module = MODULES.get(slot)
        values[f"MOD{slot}_TYPE"] = str(module.type if module else 0)
        values[f"MOD{slot}_REV"] = str(module.rev if module else 0)
        values[f"MOD{slot}_VERSION"] = _VERSION if module else "0.0.0"
        values[f"MOD{slot}_ID"] = _module_id(slot) if module else "0" * 16
    return values


#: Supply readings (volts, amps) with the CCD's bias supplies on.
_SUPPLIES = {
    "P2V5": (2.5, 0.32),
    "P5V": (5.0, 0.85),
    "P6V": (6.0, 0.41),
    "N6V": (-6.0, 0.38),
    "P17V": (17.0, 0.12),
    "N17V": (-17.0, 0.11),
    "P35V": (35.0, 0.02),
    "N35V": (-35.0, 0.02),
    "P100V": (100.0, 0.0),
    "N100V": (-100.0, 0.0),
}


@dataclass(frozen=True)
class Readings:
    """What the sensors read now (the model fills it in)."""

    power: Power
    power_good: bool
    ccd_k: float
    shutter_open: bool
    count: int


def status_values(readings: Readings) -> dict[str, str]:
    """The ``STATUS`` reply's keys and values."""
    on = readings.power is Power.ON
    values = {
        "VALID": "1",
        "COUNT": str(readings.count),
        "LOG": "0",
        "POWER": str(readings.power.value),
        "POWERGOOD": "1" if readings.power_good else "0",
        "OVERHEAT": "0",
        "BACKPLANE_TEMP": "36.500",
    }
    for name, (volts, amps) in _SUPPLIES.items():
        values[f"{name}_V"] = f"{volts:.3f}"
        values[f"{name}_I"] = f"{amps if on else 0.0:.3f}"
    ccd_c = readings.ccd_k - ZERO_CELSIUS_K
    switches = SHUTTER_OPEN_BIT if readings.shutter_open else SHUTTER_CLOSED_BIT
    for slot, module in MODULES.items():
        values[f"MOD{slot}/TEMP"] = f"{module.board_c:.3f}"
        if slot == HEATERX_SLOT:
            values |= {
                f"MOD{slot}/TEMPA": f"{ccd_c:.3f}",
                f"MOD{slot}/TEMPB": f"{ccd_c - 12.0:.3f}",
                f"MOD{slot}/TEMPC": "0.000",
                f"MOD{slot}/HEATERAOUTPUT": "2.150",
                f"MOD{slot}/HEATERBOUTPUT": "0.000",
                f"MOD{slot}/DINPUTS": str(switches),
            }
    return values
