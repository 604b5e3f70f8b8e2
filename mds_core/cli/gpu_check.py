"""``mds gpu-check``: the command line of :mod:`mds_core.tools.gpu_check`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mds_core.tools import gpu_check


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``gpu-check`` to the ``mds`` subcommands."""
    parser = subparsers.add_parser(
        "gpu-check", help="training throughput, AMP agreement, predictor latency and NCCL on a CUDA GPU",
        description=gpu_check.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="outputs/gpu_check", help="folder for gpu_report.json and gpu_report.md")
    parser.add_argument("--dry-run", action="store_true", help="every part on the CPU at tiny sizes (no speed figures)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    output = Path(args.output)
    settings = gpu_check.GpuCheckSettings.dry(output) if args.dry_run else gpu_check.GpuCheckSettings(output=output)
    report = gpu_check.run_gpu_check(settings)
    print(report.to_markdown())
    print(f"wrote {output / 'gpu_report.json'} and {output / 'gpu_report.md'}")
    return 0
