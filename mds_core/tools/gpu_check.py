"""``mds gpu-check`` (``scripts/gpu_check.sh``): what a CUDA GPU does for this project, in one run.

Written for the few minutes a GPU is at hand: on one CUDA GPU it finishes within about 8 minutes
and writes ``gpu_report.json`` and ``gpu_report.md`` with

1. training throughput (samples/s) and peak memory at 640x192, K=5, for ResNet18 and ResNet50, in
   fp32 and with AMP (bf16, or fp16 with loss scaling where bf16 is unsupported);
2. AMP against fp32 over 50 steps on the same batches from the same initial weights: the loss of
   every step, its largest and mean relative difference;
3. predictor latency p50/p99 at 640x192 (one frame with its previous frame, as the node runs it)
   for torch fp32, torch fp16 (autocast) and onnxruntime with each of the CUDA and TensorRT
   execution providers that the installed onnxruntime offers;
4. with two or more GPUs, a two-process NCCL all-reduce (DDP's collective).

``--dry-run`` runs every part on the CPU at tiny sizes and few steps (CI runs it): the same code
paths, with bf16 autocast for AMP, the onnxruntime CPU provider, and the NCCL part reported as
skipped. The figures of a dry run say nothing about speed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

LOG = logging.getLogger(__name__)


@dataclass
class GpuCheckSettings:
    output: Path = Path("outputs/gpu_check")
    dry_run: bool = False
    width: int = 640
    height: int = 192
    batch_size: int = 12
    train_steps: int = 10  # timed steps per throughput configuration (after 3 warm-up steps)
    agreement_steps: int = 50
    latency_runs: int = 50
    encoders: tuple[str, ...] = ("resnet18", "resnet50")

    @classmethod
    def dry(cls, output: Path) -> GpuCheckSettings:
        return cls(output=output, dry_run=True, width=96, height=64, batch_size=2, train_steps=2, agreement_steps=3,
                   latency_runs=3, encoders=("resnet18",))


@dataclass
class GpuReport:
    settings: dict[str, Any]
    machine: dict[str, Any]
    training: list[dict[str, Any]] = field(default_factory=list)
    agreement: dict[str, Any] = field(default_factory=dict)
    latency: list[dict[str, Any]] = field(default_factory=list)
    nccl: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_markdown(self) -> str:
        m, s = self.machine, self.settings
        lines = [f"# mds GPU check{' (dry run on the CPU: no speed figures)' if s['dry_run'] else ''}", "",
                 f"- **device**: {m['device']}; torch {m['torch']}, CUDA {m['cuda']}, onnxruntime {m['onnxruntime']} "
                 f"(providers: {', '.join(m['onnxruntime_providers']) or 'none'})",
                 f"- **size**: {s['width']}x{s['height']}, batch {s['batch_size']}, K=5; wall time {self.seconds:.0f} s",
                 "", "## Training step", "",
                 "| encoder | precision | samples/s | step median ms | peak memory MB |", "|---|---|---|---|---|"]
        lines += [f"| {t['encoder']} | {t['precision']} | {t['samples_per_s']:.2f} | {t['step_ms']:.0f} | "
                  f"{t['peak_memory_mb']:.0f} |" for t in self.training]
        a = self.agreement
        lines += ["", f"## AMP ({a['precision']}) against fp32, {a['steps']} steps, same batches and initial weights",
                  "", f"largest relative loss difference {a['max_relative_difference']:.4f}, mean "
                  f"{a['mean_relative_difference']:.4f}; final loss fp32 {a['fp32'][-1]:.4f}, AMP {a['amp'][-1]:.4f}",
                  "", "## Predictor latency (current + previous frame)", "",
                  "| backend | p50 ms | p99 ms |", "|---|---|---|"]
        lines += [f"| {r['backend']} | {_ms(r.get('p50_ms'))} | {_ms(r.get('p99_ms'))} |" if "p50_ms" in r
                  else f"| {r['backend']} | skipped: {r['skipped']} | |" for r in self.latency]
        n = self.nccl
        lines += ["", "## NCCL", "", (f"two-process all-reduce: {'ok' if n.get('ok') else 'FAILED'} "
                                     f"({n.get('seconds', 0):.1f} s)") if "ok" in n else f"skipped: {n['skipped']}"]
        return "\n".join(lines) + "\n"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _machine(device: torch.device) -> dict[str, Any]:
    try:
        import onnxruntime as ort

        ort_version, providers = ort.__version__, list(ort.get_available_providers())
    except ImportError:
        ort_version, providers = "not installed", []
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "CPU")
    return {"device": f"{device} ({name})", "gpus": torch.cuda.device_count(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "onnxruntime": ort_version, "onnxruntime_providers": providers,
            "cpu_threads": torch.get_num_threads()}


def amp_dtype(device: torch.device) -> torch.dtype:
    """The autocast dtype training uses on ``device`` (bf16 where supported, else fp16)."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _training_config(settings: GpuCheckSettings, encoder: str, device: torch.device, amp: bool):
    from mds_core.config import ModelConfig, TrainConfig

    config = TrainConfig(model=ModelConfig(height=settings.height, width=settings.width, depth_encoder=encoder,
                                           pose_mask_encoder=encoder, num_components=5),
                         device=str(device), amp=amp)
    config.optim.batch_size = settings.batch_size
    config.validate()
    return config


def _state(config, device: torch.device, amp: bool):
    """A training state; with ``amp`` on the CPU (dry run) bf16 autocast, as AMP does on a GPU."""
    from mds_core.training.distributed import DistributedContext
    from mds_core.training.loop import Precision, build_training_state

    state = build_training_state(config, device, DistributedContext())
    if amp and device.type == "cpu":
        state.precision = Precision(torch.bfloat16, "cpu")
    return state


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_throughput(settings: GpuCheckSettings, device: torch.device) -> list[dict[str, Any]]:
    """``mds benchmark``'s measurement for each encoder, in fp32 and with AMP."""
    from mds_core.tools.benchmark import TrainStepBenchmark, run_train_step_benchmark

    rows = []
    for encoder in settings.encoders:
        for amp in (False, True):
            result = run_train_step_benchmark(TrainStepBenchmark(
                width=settings.width, height=settings.height, encoder=encoder, num_components=5,
                batch_size=settings.batch_size, steps=settings.train_steps, warmup=3, device=str(device), amp=amp,
                cpu_autocast=amp))
            median = statistics.median(result.step_times)
            precision = result.precision.replace("torch.", "") if amp else "fp32"
            rows.append({"encoder": encoder, "precision": precision, "samples_per_s": settings.batch_size / median,
                         "step_ms": 1000 * median, "peak_memory_mb": result.peak_memory_mb})
            LOG.info("training %s %s: %.2f samples/s", encoder, precision, settings.batch_size / median)
    return rows


def amp_agreement(settings: GpuCheckSettings, device: torch.device) -> dict[str, Any]:
    """fp32 and AMP from the same initial weights on the same batches: the loss of every step."""
    from mds_core.method.losses import SelfSupervisedObjective
    from mds_core.tools.benchmark import random_batch, steady_state_step
    from mds_core.training.loop import train_step

    batches = [random_batch(settings.batch_size, settings.height, settings.width, device, seed) for seed in range(4)]
    curves, precision = {}, "fp32"
    for amp in (False, True):
        torch.manual_seed(0)
        config = _training_config(settings, settings.encoders[0], device, amp)
        state = _state(config, device, amp)
        state.step = steady_state_step(config)
        objective = SelfSupervisedObjective(config.loss, config.model)
        losses = []
        for step in range(settings.agreement_steps):
            loss, _ = train_step(state, objective, batches[step % len(batches)])
            losses.append(float(loss.total.detach()))
        curves["amp" if amp else "fp32"] = losses
        if amp:
            precision = str(state.precision.dtype or torch.float32).replace("torch.", "")
    relative = [abs(a - b) / max(abs(a), 1e-12) for a, b in zip(curves["fp32"], curves["amp"])]
    return {"precision": precision, "steps": settings.agreement_steps, "fp32": curves["fp32"], "amp": curves["amp"],
            "max_relative_difference": max(relative), "mean_relative_difference": float(np.mean(relative))}


def _latency(predict, runs: int, device: torch.device) -> dict[str, float]:
    for _ in range(3):
        predict()
    times = []
    for _ in range(runs):
        _synchronise(device)
        started = time.perf_counter()
        predict()
        _synchronise(device)
        times.append(1000 * (time.perf_counter() - started))
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)), "runs": runs}


def predictor_latency(settings: GpuCheckSettings, device: torch.device) -> list[dict[str, Any]]:
    from mds_core.checkpoint import write_untrained_checkpoint
    from mds_core.config import ModelConfig
    from mds_core.inference.predictor import Predictor

    checkpoint = write_untrained_checkpoint(settings.output / "untrained.pt", ModelConfig(
        width=settings.width, height=settings.height, depth_encoder="resnet18", pose_mask_encoder="resnet18",
        num_components=5))
    rng = np.random.default_rng(0)
    current, previous = (rng.integers(0, 255, (settings.height, settings.width, 3), dtype=np.uint8) for _ in range(2))
    k = np.array([[0.58 * settings.width, 0, 0.5 * settings.width], [0, 1.92 * settings.height, 0.5 * settings.height],
                  [0, 0, 1.0]])
    rows = []
    predictor = Predictor.from_checkpoint(checkpoint, device=str(device))
    rows.append({"backend": "torch fp32", **_latency(lambda: predictor.predict(current, k, previous),
                                                        settings.latency_runs, device)})
    if device.type == "cuda":
        def half() -> None:
            with torch.autocast("cuda", dtype=torch.float16):
                predictor.predict(current, k, previous)
        rows.append({"backend": "torch fp16 (autocast)", **_latency(half, settings.latency_runs, device)})
    else:
        rows.append({"backend": "torch fp16 (autocast)", "skipped": "no CUDA device"})
    rows += _onnxruntime_latency(settings, device, checkpoint, current, previous, k)
    return rows


def _onnxruntime_latency(settings, device, checkpoint, current, previous, k) -> list[dict[str, Any]]:
    try:
        import onnxruntime as ort
    except ImportError:
        return [{"backend": "onnxruntime",
                 "skipped": "onnxruntime is not installed (pip install 'mds[onnx]' or 'mds[openvino]')"}]
    from mds_core.inference.onnx_backend import PROVIDER_PREFERENCE, load_onnx_model
    from mds_core.inference.onnx_export import export_onnx
    from mds_core.inference.predictor import Predictor

    source = Predictor.from_checkpoint(checkpoint, device="cpu")
    folder = settings.output / "onnx_fp32"
    export_onnx(source.model, folder, checkpoint_step=0)
    wanted = ["CPUExecutionProvider"] if device.type == "cpu" else \
        ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    rows = []
    available = ort.get_available_providers()
    for provider in wanted:
        label = f"onnxruntime {provider.replace('ExecutionProvider', '')}"
        if provider not in available:
            rows.append({"backend": label, "skipped": f"not offered by this onnxruntime ({', '.join(available)})"})
            continue
        try:
            providers = list(dict.fromkeys([provider, PROVIDER_PREFERENCE[-1]]))  # CPU as the fallback
            model, _ = load_onnx_model(folder, providers=providers)
            predictor = Predictor(model, device if provider != "CPUExecutionProvider" else torch.device("cpu"))
            rows.append({"backend": label, **_latency(lambda p=predictor: p.predict(current, k, previous),
                                                      settings.latency_runs, device)})
        except Exception as error:  # a provider that fails to build its engine is a finding, not a crash
            rows.append({"backend": label, "skipped": f"{type(error).__name__}: {error}"[:300]})
    return rows


def _nccl_worker(rank: int, world: int, port: int, results) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl", rank=rank, world_size=world)
    torch.cuda.set_device(rank)
    value = torch.full((1024,), float(rank + 1), device=f"cuda:{rank}")
    dist.all_reduce(value)
    results[rank] = float(value[0])
    dist.destroy_process_group()


def nccl_check(device: torch.device) -> dict[str, Any]:
    if device.type != "cuda":
        return {"skipped": "no CUDA device"}
    if torch.cuda.device_count() < 2:
        return {"skipped": f"{torch.cuda.device_count()} GPU (the NCCL check needs two)"}
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager = mp.Manager()
    results = manager.dict()
    started = time.perf_counter()
    mp.spawn(_nccl_worker, args=(2, port, results), nprocs=2, join=True)
    ok = all(math.isclose(results.get(r, 0.0), 3.0) for r in range(2))
    return {"ok": ok, "values": dict(results), "seconds": time.perf_counter() - started}


def run_gpu_check(settings: GpuCheckSettings) -> GpuReport:
    """Run every part and write ``gpu_report.json`` and ``gpu_report.md`` into ``settings.output``."""
    from mds_core.device import resolve_device

    started = time.perf_counter()
    device = torch.device("cpu") if settings.dry_run else resolve_device("cuda")
    if not settings.dry_run and device.type != "cuda":
        raise RuntimeError("no CUDA GPU is available: run with --dry-run for the CPU dry run")
    settings.output.mkdir(parents=True, exist_ok=True)
    report = GpuReport({k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
                        for k, v in asdict(settings).items()}, _machine(device))
    report.training = training_throughput(settings, device)
    report.agreement = amp_agreement(settings, device)
    report.latency = predictor_latency(settings, device)
    report.nccl = nccl_check(device)
    report.seconds = time.perf_counter() - started
    (settings.output / "gpu_report.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    (settings.output / "gpu_report.md").write_text(report.to_markdown())
    return report
