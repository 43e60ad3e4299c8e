"""`report`: one self-contained HTML page of a batch, its data checked and its rendering looked at.

The data test reads the journal of `test_status` (known times, exact numbers);
the rendering test draws a real batch's report in headless Chromium (Debian's
`chromium`; skipped where it is missing) and checks the screenshot is a chart.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from test_batch import jobs_for, run
from test_status import REFUSAL, known_journal

from happyrobot_async import cli
from happyrobot_async.testing.pytest_plugin import SimulatorFactory

CHROMIUM = Path("/usr/bin/chromium")
TRAINING_BLUE, PENDING_AMBER = bytes.fromhex("3b82f6"), bytes.fromhex("f2b134")


def report_data(page: str) -> Any:
    """The JSON embedded in the page's `report-data` script tag."""
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page)
    assert found is not None
    return json.loads(found.group(1))


def table_rows(page: str, name: str) -> list[list[str]]:
    """The body rows of the page's table `name`, as cell texts."""
    found = re.search(rf'<table id="{name}">.*?<tbody>(.*?)</tbody>', page)
    assert found is not None
    rows = re.findall(r"<tr>(.*?)</tr>", found.group(1))
    return [re.findall(r"<td>(.*?)</td>", row) for row in rows]


def test_report_embeds_the_data_and_the_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The page holds every job's phases, the summary, running and failures tables, and plotly."""
    journal = known_journal(tmp_path / "run.journal")
    assert cli.main(["report", str(journal)]) == 0
    written = tmp_path / "run-report.html"  # the default: beside the journal
    assert capsys.readouterr().out == f"{written}\n"
    page = written.read_text(encoding="utf-8")
    data = report_data(page)
    assert data["summary"]["counts"]["watching"] == 2 and data["summary"]["total"] == 6
    jobs = {job["job"]: job for job in data["jobs"]}
    assert [(p["phase"], p["seconds"], p["open"]) for p in jobs["a"]["phases"]] == [
        ("waiting", 1.0, False),
        ("sending", 1.0, False),
        ("pending", 3.0, False),
        ("training", 10.0, False),
    ]
    assert jobs["d"]["phases"][-1] == {
        "phase": "training",
        "start": "2025-03-04T05:06:15+00:00",
        "seconds": 7.0,  # still training at the journal's last record (at 15 s)
        "open": True,
    }
    assert table_rows(page, "summary") == [
        ["active", "1", "17 %"],
        ["failed", "1", "17 %"],
        ["refused", "1", "17 %"],
        ["watching", "2", "33 %"],
        ["sent", "1", "17 %"],
        ["total", "6", ""],
    ]
    assert [row[0] for row in table_rows(page, "running")] == ["d", "e", "f"]
    failures = table_rows(page, "failures")
    assert [(row[0], row[3], row[5]) for row in failures] == [
        ("uc1/Beta", "failed", "training failed"),
        ("c", "refused", REFUSAL),
    ]
    assert "Plotly.newPlot" in page and not re.search(r"<script[^>]*\bsrc=", page)


def test_report_without_plotly_says_what_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without plotly, report exits 2 with one line naming the extra, and writes nothing."""
    for name in ("plotly", "plotly.graph_objects", "plotly.subplots"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import plotly...` fail
    journal = known_journal(tmp_path / "j")
    assert cli.main(["report", str(journal), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err == (
        "happyrobot-async: error: the report needs plotly: pip install 'happyrobot-async[report]'\n"
    )
    assert not (tmp_path / "r.html").exists()


async def test_the_demo_ends_with_its_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """demo writes the report of its batch to --report and prints the path last."""
    monkeypatch.delenv("HAPPYROBOT_API_KEY", raising=False)
    path = tmp_path / "demo.html"
    argv = ["demo", "--speed", "50", "--view", "plain", "--report", str(path)]
    assert await asyncio.to_thread(cli.main, argv) == 0
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].endswith(f": {path}")
    summary = report_data(path.read_text(encoding="utf-8"))["summary"]
    assert (
        summary["total"] == 20 and summary["counts"]["active"] + summary["counts"]["failed"] == 20
    )


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
async def test_a_real_batch_report_renders_in_chromium(
    simulator_factory: SimulatorFactory, tmp_path: Path
) -> None:
    """Headless Chromium draws the report: many colours, the phase bars, not a blank page."""
    sim = await simulator_factory(seed=4, speed=100.0, failure_rate=0.3)
    await run(sim, jobs_for(sim, 12), journal=tmp_path / "j")
    page, png = tmp_path / "report.html", tmp_path / "report.png"
    assert await asyncio.to_thread(cli.main, ["report", str(tmp_path / "j"), "-o", str(page)]) == 0
    assert sim.api_key not in page.read_text(encoding="utf-8")
    chromium = await asyncio.create_subprocess_exec(
        *(str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic"),
        *("--no-first-run", "--disable-background-networking", "--disable-component-update"),
        *("--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"),
        *("--virtual-time-budget=10000", f"--screenshot={png}", "--window-size=1280,2000"),
        page.as_uri(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(chromium.communicate(), timeout=120)
    assert chromium.returncode == 0 and png.exists(), err.decode(errors="replace")[-2000:]
    width, height, pixels = read_png(png.read_bytes())
    colours = set(pixels)
    painted = sum(1 for pixel in pixels if pixel != b"\xff\xff\xff")
    assert (width, height) == (1280, 2000)
    assert len(colours) > 200 and painted > 0.05 * len(pixels)
    assert TRAINING_BLUE in colours and PENDING_AMBER in colours  # the timeline's bars


def read_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB pixels of an 8-bit RGB or RGBA, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, []
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, interlace) == (8, 0) and colour in (2, 6)
        elif kind == b"IDAT":
            chunks.append(body)
        position += 12 + length
    size = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(b"".join(chunks)), width * size
    previous, pixels = bytearray(stride), []
    for y in range(height):
        kind, start = raw[y * (stride + 1)], y * (stride + 1) + 1
        row = bytearray(raw[start : start + stride])
        if kind == 2:  # Up: the most common, so added in one go, byte-wise without carries
            row = _add_bytes(row, previous)
        elif kind:
            _unfilter(kind, row, previous, size)
        pixels += [bytes(row[x : x + 3]) for x in range(0, stride, size)]
        previous = row
    return width, height, pixels


def _add_bytes(a: bytearray, b: bytearray) -> bytearray:
    """`a[i] + b[i]` modulo 256 for every i, on whole rows as integers."""
    x, y = int.from_bytes(a), int.from_bytes(b)
    low = int.from_bytes(b"\x7f" * len(a))
    total = ((x & low) + (y & low)) ^ ((x ^ y) & ~low & ((1 << 8 * len(a)) - 1))
    return bytearray(total.to_bytes(len(a)))


def _unfilter(kind: int, row: bytearray, up: bytearray, size: int) -> None:
    """Undo PNG filter Sub (1), Average (3) or Paeth (4) in place."""
    for i in range(len(row)):
        left = row[i - size] if i >= size else 0
        if kind == 1:
            guess = left
        elif kind == 3:
            guess = (left + up[i]) >> 1
        else:
            corner = up[i - size] if i >= size else 0
            estimate = left + up[i] - corner
            far_left, far_up = abs(estimate - left), abs(estimate - up[i])
            far_corner = abs(estimate - corner)
            if far_left <= far_up and far_left <= far_corner:
                guess = left
            else:
                guess = up[i] if far_up <= far_corner else corner
        row[i] = (row[i] + guess) & 0xFF
