"""The device report a worker gives the scheduler (``training.devices``)."""

import pytest

from training import devices

SMI = """#!/bin/sh
[ "$1" = "--query-gpu=index,name,memory.total" ] || exit 2
echo "0, NVIDIA H100 80GB HBM3, 81559"
echo "1, NVIDIA H100 80GB HBM3, 81559"
echo "2, NVIDIA H100 80GB HBM3, 81559"
"""


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("WORKER_DEVICES", "GPU_DEVICES", "GPU_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi unless a test writes one
    return tmp_path


def test_a_cpu_machine_reports_no_gpu(clean_env):
    assert devices.probe() == []


def test_nvidia_smi_listing_is_parsed_and_limited(clean_env, monkeypatch):
    smi = clean_env / "nvidia-smi"
    smi.write_text(SMI)
    smi.chmod(0o755)
    listed = devices.probe()
    assert [d["index"] for d in listed] == [0, 1, 2]
    assert listed[0] == {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_mb": 81559}
    monkeypatch.setenv("GPU_DEVICES", "0,2")
    assert [d["index"] for d in devices.probe()] == [0, 2]
    monkeypatch.delenv("GPU_DEVICES")
    monkeypatch.setenv("GPU_DEVICE", "1")  # a single-GPU worker pinned to one device
    assert [d["index"] for d in devices.probe()] == [1]


def test_a_declared_report_replaces_the_probe(clean_env, monkeypatch):
    monkeypatch.setenv("WORKER_DEVICES", "4")
    assert [d["index"] for d in devices.probe()] == [0, 1, 2, 3]
    monkeypatch.setenv("WORKER_DEVICES", '[{"index": 5, "name": "A100", "memory_mb": 40960}]')
    assert devices.probe() == [{"index": 5, "name": "A100", "memory_mb": 40960}]
    monkeypatch.setenv("WORKER_DEVICES", '"many"')
    with pytest.raises(ValueError, match="WORKER_DEVICES must be"):
        devices.probe()
