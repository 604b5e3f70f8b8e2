"""scripts/gpu_check.sh: its CPU dry run (tiny sizes) runs every part of the GPU check and writes the
report; the GPU figures themselves need a CUDA machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_dry_run_writes_every_part_of_the_report(tmp_path):
    env = {**os.environ, "VENV": str(Path(sys.prefix))}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--output", str(tmp_path)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_report.json").read_text())
    assert report["settings"]["dry_run"] and report["machine"]["device"].startswith("cpu")
    assert [(t["encoder"], t["precision"]) for t in report["training"]] == [("resnet18", "fp32"),
                                                                             ("resnet18", "bfloat16")]
    assert all(t["samples_per_s"] > 0 and t["peak_memory_mb"] > 0 for t in report["training"])
    agreement = report["agreement"]
    assert len(agreement["fp32"]) == len(agreement["amp"]) == 3 and agreement["max_relative_difference"] < 0.05
    backends = {row["backend"]: row for row in report["latency"]}
    assert backends["torch fp32"]["p50_ms"] > 0 and "skipped" in backends["torch fp16 (autocast)"]
    assert backends["onnxruntime CPU"]["p50_ms"] > 0
    assert report["nccl"] == {"skipped": "no CUDA device"}
    markdown = (tmp_path / "gpu_report.md").read_text()
    assert "dry run" in markdown and "| resnet18 | bfloat16 |" in markdown
