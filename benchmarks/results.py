"""Times jitted calls side by side and records results as rows of markdown tables.

Rows go to ``benchmarks/RESULTS.md``, or to the file named by the environment variable
``BENCHMARK_RESULTS`` (e.g. ``BENCHMARK_RESULTS=/tmp/smoke.md`` for a trial run that must not
touch the recorded results).
"""

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax

RESULTS = Path(os.environ.get("BENCHMARK_RESULTS") or Path(__file__).with_name("RESULTS.md"))


def machine() -> str:
  """The CPU model, core count and JAX backend this process runs on."""
  cpu = platform.processor() or platform.machine()
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  device = jax.devices()[0]
  return f"{cpu}, {os.cpu_count()} cores, jax {jax.__version__} on {device.platform} ({device.device_kind})"


def _call_repeatedly(fn: Callable, state: Any, steps: int, feed_back: bool) -> Any:
  """Calls ``fn`` ``steps`` times from ``state``, waits for every result and returns the next
  input: the last output if ``feed_back``, else ``state``."""
  pending = []
  for _ in range(steps):
    output = fn(state)
    if feed_back:
      state, pending = output, [output]  # The last output depends on all the others.
    else:
      pending.append(output)
  jax.block_until_ready(pending)
  return state


def time_calls(calls: Mapping[str, tuple[Callable, Any]], steps: int, rounds: int,
               feed_back: bool = True) -> dict[str, float]:
  """``{label: seconds per call}`` of each ``fn(state)`` in ``calls = {label: (fn, state)}``.

  Every ``fn`` is called once first, untimed (this compiles it). Then each of ``rounds`` rounds
  calls every ``fn`` in turn ``steps`` times and waits for the results; a call's time in a round is
  the round's time over ``steps``, and the result is the median over rounds. The rounds interleave
  the calls so that load on a shared machine hits all of them alike. With ``feed_back`` each call's
  output is the next call's input (a step fed its own state, so the output must have the input's
  structure); without it every call gets the first ``state``. Fixed inputs (a batch, the
  gradients) are bound with ``functools.partial`` so that they reach a jitted ``fn`` as arguments.
  """
  inputs = {}
  for label, (fn, state) in calls.items():
    inputs[label] = _call_repeatedly(fn, state, 1, feed_back)
  times = {label: [] for label in calls}
  for _ in range(rounds):
    for label, (fn, _) in calls.items():
      start = time.perf_counter()
      inputs[label] = _call_repeatedly(fn, inputs[label], steps, feed_back)
      times[label].append((time.perf_counter() - start) / steps)
  return {label: statistics.median(t) for label, t in times.items()}


def time_call(fn: Callable, state: Any, steps: int, rounds: int, feed_back: bool = True) -> float:
  """Seconds per call of ``fn(state)``: ``time_calls`` for one function."""
  return time_calls({"": (fn, state)}, steps, rounds, feed_back)[""]


def record(section: str, header: list[str], row: list[str]) -> None:
  """Appends ``row`` to the table under ``## section`` of ``RESULTS``, creating the section if
  needed."""
  text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
  title = f"## {section}"
  line = "| " + " | ".join(row) + " |"
  if title not in text:
    table = "| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|\n"
    text = text.rstrip("\n") + f"\n\n{title}\n\n{table}{line}\n"
  else:
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    end = len(text) if end == -1 else end
    body = text[start:end].rstrip("\n") + "\n" + line + "\n"
    text = text[:start] + body + ("\n" + text[end:].lstrip("\n") if end < len(text) else "")
  RESULTS.write_text(text)


def milliseconds(seconds: float) -> str:
  """A time as recorded, in milliseconds to three significant digits (a fast call never reads 0)."""
  return f"{seconds * 1e3:.3g}"


def ratio(value: float) -> str:
  """A ratio as recorded, e.g. ``13.1x`` or ``0.0423x``: three significant digits, so that a small
  ratio never rounds to zero."""
  return f"{value:.3g}x"


def today() -> str:
  """Today's date, ISO 8601."""
  return datetime.date.today().isoformat()
