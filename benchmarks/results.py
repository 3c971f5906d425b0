"""Records benchmark results as rows of markdown tables in ``benchmarks/RESULTS.md``."""

import datetime
import os
import platform
from pathlib import Path

import jax

RESULTS = Path(__file__).with_name("RESULTS.md")


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


def record(section: str, header: list[str], row: list[str]) -> None:
  """Appends ``row`` to the table under ``## section``, creating the section if needed."""
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


def today() -> str:
  return datetime.date.today().isoformat()
