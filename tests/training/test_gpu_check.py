"""``benchmarks/gpu_check.py --dry-run``: the GPU check's every path on a tiny model on the CPU,
so the script a CUDA machine runs is known to work before one is lent."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.trainers import KINDS

pytestmark = pytest.mark.training
ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_dry_run_passes_every_cpu_path(tmp_path):
    out = tmp_path / "outcomes.json"
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/gpu_check.py",
            "--dry-run",
            "--steps",
            "2",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    outcomes = {o["path"]: o for o in json.loads(out.read_text())}
    expected = [
        *KINDS,
        *(f"{kind}+lora" for kind in KINDS),
        "dpo ddp x2",
        *(f"{job} bare TRL" for job in ("sft", "sft+lora", "dpo", "dpo+lora")),
    ]
    for path in expected:
        assert outcomes[path]["status"] == "pass", (path, outcomes[path], done.stdout[-3000:])
        assert outcomes[path]["tokens_per_s"] > 0
    assert {"kto", "orpo"} <= set(KINDS)
    assert "ratio dpo: platform" in done.stdout and "cpu reference" in done.stdout
