"""Fixtures of the engineering tests: a real headless Chromium, shared campaigns.

Pages are checked as a browser sees them: a copy of the page gets a small
script that writes, for every ``<img>``, whether it decoded and its natural
size into the DOM; ``chromium --headless --dump-dom`` returns the DOM after
the page's load event, and the tests read those attributes back. Chromium is
a requirement of these tests (CI installs Debian's package): its absence is
a failure, not a skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from sequencer.simlaunch import megara_dark

# Runs after load (so every data: image has been decoded or has failed).
_PROBE = """
<script>
window.addEventListener("load", () => {
  for (const img of document.images) {
    img.setAttribute("data-natural-width", String(img.naturalWidth));
    img.setAttribute("data-natural-height", String(img.naturalHeight));
    img.setAttribute("data-complete", String(img.complete));
  }
  document.body.setAttribute("data-probed", "yes");
});
</script>
"""


def chromium_binary() -> str:
    """Path of the system Chromium (fails the test if it is not installed)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("chromium is not installed: apt-get install -y chromium")


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, {k: v or "" for k, v in attrs}))


@dataclass
class Rendered:
    """The DOM of a page after Chromium loaded it."""

    dom: str
    elements: list[Element]

    def find(self, tag: str, **attrs: str) -> list[Element]:
        return [
            e
            for e in self.elements
            if e.tag == tag and all(e.attrs.get(k) == v for k, v in attrs.items())
        ]

    @property
    def images(self) -> list[Element]:
        return self.find("img")

    def text(self) -> str:
        return re.sub(r"<[^>]+>", " ", self.dom)


def render(page: Path, tmp_path: Path) -> Rendered:
    """Load ``page`` from file:// in headless Chromium; return the probed DOM."""
    html = page.read_text(encoding="utf-8")
    assert "</body>" in html
    probed = page.with_name(f"probed-{page.name}")
    probed.write_text(html.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    profile = tmp_path / f"chromium-profile-{page.stem}"
    argv = [
        chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
        f"--user-data-dir={profile}", "--virtual-time-budget=10000",
        "--dump-dom", probed.resolve().as_uri(),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    collector = _Collector()
    collector.feed(done.stdout)
    rendered = Rendered(done.stdout, collector.elements)
    assert rendered.find("body", **{"data-probed": "yes"}), "the load probe never ran"
    return rendered


def assert_images_decoded(rendered: Rendered, expected: set[str]) -> None:
    """Every image decoded (natural size > 0); the ``data-plot`` keys expected."""
    images = rendered.images
    assert {i.attrs.get("data-plot") for i in images} == expected
    for img in images:
        assert img.attrs["src"].startswith("data:image/png;base64,")
        assert int(img.attrs["data-natural-width"]) > 100, img.attrs.get("data-plot")
        assert int(img.attrs["data-natural-height"]) > 100, img.attrs.get("data-plot")


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``megara-dark ARGS`` as a user would."""
    return subprocess.run(
        [*megara_dark(), *args], capture_output=True, text=True, cwd=cwd, check=False
    )


SWEEP_TEMPERATURES = (158.0, 163.15, 173.0)

SWEEP = """\
campaign: sweep
defaults:
  blocks:
    - {id: bias_3, instrument: MEGARA, mode: MegaraBiasImage, exptime: 0.0, nframes: 3}
    - {id: dark_3, instrument: MEGARA, mode: MegaraDarkImage, exptime: 3600.0, nframes: 3}
  simulator: {seed: 11, time_scale: 4000.0}
runs:
  - name: t158
    simulator: {ccd_temperature_k: 158.0}
    expect: {outcome: done, qa: GOOD, retakes: 0, valid_frames: 6, verify: pass}
  - name: t163
    simulator: {ccd_temperature_k: 163.15}
    expect: {outcome: done, qa: GOOD, retakes: 0, valid_frames: 6, verify: pass}
  - name: t173
    simulator: {ccd_temperature_k: 173.0}
    expect: {outcome: done, qa: PARTIAL, valid_frames: 6, verify: fail}
  - name: leak
    simulator: {ccd_temperature_k: 163.15, seed: 12}
    blocks:
      - {id: bias_3, instrument: MEGARA, mode: MegaraBiasImage, exptime: 0.0, nframes: 3}
      - {id: dark_4, instrument: MEGARA, mode: MegaraDarkImage, exptime: 3600.0, nframes: 4}
    faults:
      - {device: ccd, kind: light_leak, on_readout: 6, params: {flux: 3.0}}
      - {device: cover_left, kind: cover_slow, params: {factor: 5}}
    expect: {outcome: done, qa: PARTIAL, valid_frames: 7, verify: fail}
  - name: stuck
    faults:
      - {device: ccd, kind: shutter_stuck_open}
    expect: {outcome: fault, valid_frames: 0, message: "shutter reads OPEN"}
"""


@dataclass
class CampaignRun:
    folder: Path
    done: subprocess.CompletedProcess[str]


@pytest.fixture(scope="session")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> CampaignRun:
    """One campaign for the session: three temperatures, a light leak with a slow
    cover, a stuck shutter."""
    base = tmp_path_factory.mktemp("sweep")
    spec = base / "sweep.yaml"
    spec.write_text(SWEEP, encoding="utf-8")
    out = base / "out"
    done = cli("campaign", str(spec), "--out", str(out), "--no-run-reports")
    return CampaignRun(out, done)
