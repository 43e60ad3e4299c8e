"""Shared plumbing: the simulator in a subprocess, CPU/RSS probes, summaries, machine facts."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


# -- the simulator, in its own process ------------------------------------------------------


@dataclass
class SimProcess:
    """A standalone `python -m happyrobot_async simulate` and what it printed."""

    process: subprocess.Popen[str]
    command: list[str]
    base_url: str
    api_key: str
    use_case_ids: list[str]
    base_model_ids: list[str]
    stats_url: str
    headers: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.headers = {
            "authorization": f"Bearer {self.api_key}",
            "accept": "application/json",
            "content-type": "application/json",
        }

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    @property
    def origin(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return self.stats_url.removesuffix("/_simulator/stats")

    def base_model_of(self, use_case_id: str) -> str:
        """A base model of `use_case_id` (the simulator seeds two per use case, in order)."""
        index = self.use_case_ids.index(use_case_id)
        per_use_case = len(self.base_model_ids) // len(self.use_case_ids)
        return self.base_model_ids[index * per_use_case]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far."""
        return process_cpu_seconds(self.pid)

    async def stats(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        """`GET /_simulator/stats`."""
        async with session.get(self.stats_url) as response:
            response.raise_for_status()
            data: dict[str, Any] = await response.json()
            return data

    async def reset(self, session: aiohttp.ClientSession) -> None:
        """`POST /_simulator/reset`: zero the counters (models are kept)."""
        async with session.post(f"{self.origin}/_simulator/reset") as response:
            response.raise_for_status()


def simulate_command(*args: str, seed: int = 0) -> list[str]:
    """The command line that starts a standalone simulator on a free port."""
    return [
        sys.executable,
        "-m",
        "happyrobot_async",
        "simulate",
        "--port",
        "0",
        "--seed",
        str(seed),
        *args,
    ]


@contextmanager
def simulator(*args: str, seed: int = 0) -> Iterator[SimProcess]:
    """Start `python -m happyrobot_async simulate --port 0 ARGS`; stop it (SIGTERM) after."""
    command = simulate_command(*args, seed=seed)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines: dict[str, str] = {}
        while len(lines) < 6:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"the simulator exited early: {command}")
            key, _, value = line.strip().partition(": ")
            lines[key] = value
        yield SimProcess(
            process=process,
            command=command,
            base_url=lines["base_url"],
            api_key=lines["api_key"],
            use_case_ids=lines["use_case_ids"].split(","),
            base_model_ids=lines["base_model_ids"].split(","),
            stats_url=lines["stats_url"],
        )
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()


def display_command(command: Sequence[str]) -> str:
    """A command line as a reader would type it (`python` for this interpreter)."""
    parts = ["python" if part == sys.executable else part for part in command]
    return " ".join(parts)


# -- process probes -------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (Linux /proc; psutil elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except OSError:  # pragma: no cover - not Linux
        import psutil  # type: ignore[import-untyped]

        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)


def rss_bytes() -> int:
    """This process's resident set size now (Linux /proc; psutil elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except OSError:  # pragma: no cover - not Linux
        import psutil

        return int(psutil.Process().memory_info().rss)


# -- numbers ----------------------------------------------------------------------------------


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def fmt(stat: dict[str, float], digits: int = 0, suffix: str = "") -> str:
    """`median (min\u2013max)` with `digits` decimals; the range only when there are repeats."""
    median = f"{stat['median']:,.{digits}f}{suffix}"
    if stat["n"] <= 1:
        return median
    return f"{median} ({stat['min']:,.{digits}f}\u2013{stat['max']:,.{digits}f})"


def rotated(items: Sequence[Any], by: int) -> list[Any]:
    """`items` rotated left by `by`: interleave variants in a different order each repetition."""
    if not items:
        return []
    shift = by % len(items)
    return list(items[shift:]) + list(items[:shift])


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -- machine facts ----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Cores, CPU model, OS, Python and the versions of the packages that matter."""
    versions = {}
    for name in ("happyrobot-async", "aiohttp", "attrs", "cattrs", "httpx", "pydantic", "yarl"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                cpu,
            )
    except OSError:  # pragma: no cover - not Linux
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "packages": versions,
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--", "happyrobot_async")),
    }


def sdk_commit() -> str:
    """The checkout's commit, marked when the SDK's package has uncommitted changes."""
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", "happyrobot_async")
    return _git("rev-parse", "--short", "HEAD") + (" (with uncommitted changes)" if dirty else "")


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "?"
    return done.stdout.strip()


# -- command lines ----------------------------------------------------------------------------


def main_for(
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], dict[str, Any]],
    render: Callable[[dict[str, Any]], str],
    argv: Sequence[str] | None = None,
) -> int:
    """A benchmark's `main`: parse, run, print the Markdown, optionally save the JSON."""
    parser = argparse.ArgumentParser(description=description)
    add_arguments(parser)
    parser.add_argument("--smoke", action="store_true", help="one tiny run, for the smoke test")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)
    commit = sdk_commit()  # before the run: the code measured
    started = time.perf_counter()
    result = run(args)
    result["wall_seconds"] = time.perf_counter() - started
    result["commit"] = commit
    result["argv"] = list(sys.argv[1:] if argv is None else argv)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    print(render(result))
    return 0
