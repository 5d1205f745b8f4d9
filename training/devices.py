"""What GPUs this machine offers a worker (pure Python, no torch: a Celery parent process must
never initialise CUDA before it forks its children).

Read from ``nvidia-smi`` (PCI bus order, as ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` numbers them).
``GPU_DEVICES`` (``"0,1,2,3"``, or a single-GPU worker's ``GPU_DEVICE``) limits a worker to some
of them; ``WORKER_DEVICES`` replaces the probe with a given report (a JSON list of ``{index,
name, memory_mb}``, or a count of GPUs), for machines whose devices the probe cannot see, and
tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

Device = dict[str, Any]
QUERY = "--query-gpu=index,name,memory.total"


def probe() -> list[Device]:
    """The GPUs this worker may use, in index order ([] on a CPU machine)."""
    declared = os.environ.get("WORKER_DEVICES", "").strip()
    devices = _declared(declared) if declared else _nvidia_smi()
    allowed = (os.environ.get("GPU_DEVICES") or os.environ.get("GPU_DEVICE") or "").strip()
    if allowed:
        keep = {int(index) for index in allowed.split(",") if index.strip()}
        devices = [device for device in devices if device["index"] in keep]
    return devices


def _declared(value: str) -> list[Device]:
    """``WORKER_DEVICES``: a count (``"4"``) or a JSON list of device objects."""
    parsed = json.loads(value)
    if isinstance(parsed, int) and not isinstance(parsed, bool) and parsed >= 0:
        return [{"index": i, "name": "declared GPU", "memory_mb": 0} for i in range(parsed)]
    if isinstance(parsed, list) and all(isinstance(d, dict) and "index" in d for d in parsed):
        return [
            {
                "index": int(d["index"]),
                "name": str(d.get("name", "")),
                "memory_mb": int(d.get("memory_mb", 0)),
            }
            for d in parsed
        ]
    raise ValueError(
        "WORKER_DEVICES must be a GPU count or a JSON list of {index, name, memory_mb}."
    )


def _nvidia_smi() -> list[Device]:
    """The GPUs ``nvidia-smi`` lists; none without the tool or when it fails."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(
            ["nvidia-smi", QUERY, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    devices = []
    for line in listing.splitlines():
        index, name, memory = (part.strip() for part in line.split(",", 2))
        devices.append({"index": int(index), "name": name, "memory_mb": int(float(memory))})
    return devices
