"""``mds export``: the command line of :mod:`mds_core.inference.onnx_export`."""

from __future__ import annotations

import argparse
from typing import Any

from mds_core.config import ConfigError
from mds_core.inference import onnx_export


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 640x192, got {text!r}") from error
    return width, height


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``export`` to the ``mds`` subcommands."""
    parser = subparsers.add_parser(
        "export", help="the networks of a checkpoint as ONNX graphs (checked against PyTorch) for onnxruntime",
        description=onnx_export.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint (.pt) written by mds train or mds demo")
    parser.add_argument("--output", required=True, help="folder for the graphs and metadata.json")
    parser.add_argument("--size", type=_size, metavar="WxH", help="input size (multiples of 32; default: training size)")
    parser.add_argument("--fp16", action="store_true", help="half-precision graphs (for GPU execution providers)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from mds_core.inference.predictor import Predictor

    if args.opset < 18:
        raise ConfigError(f"--opset {args.opset}: the exporter writes opset 18 or newer")
    predictor = Predictor.from_checkpoint(args.checkpoint, device="cpu")
    report = onnx_export.export_onnx(predictor.model, args.output, size=args.size, fp16=args.fp16, opset=args.opset,
                                     checkpoint_step=predictor.checkpoint_step)
    print(report.to_text())
    return 0
