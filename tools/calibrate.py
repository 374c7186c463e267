"""Calibrate the sample-quality thresholds of tests/test_sample_quality.py; writes tests/calibration.md.

Measures the grader's CPU setting (256 samples, 100-step DDIM, fixed seeds) on: the reference model over several
seeds, real MNIST training digits (the floor a perfect generator reaches), an untrained U-Net, and the reference
model after a short training run (an under-trained submission).
"""
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import quality  # noqa: E402
import test_sample_quality as tsq  # noqa: E402
from grader import REFERENCE, load  # noqa: E402

SEEDS = range(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
torch.set_num_threads(2)
ns = load(REFERENCE)
classifier, reference = quality.load_classifier(), tsq.mnist_test_features()
rows = []


def measure(name, make_samples):
    for seed in SEEDS:
        start = time.time()
        s = quality.statistics(classifier, make_samples(seed), reference)
        rows.append((name, seed, s["confidence"], s["max_class_fraction"], s["fid"], time.time() - start))
        print(rows[-1], flush=True)


real = quality.load_mnist(train=True)[0]
measure("real training digits", lambda seed: real[torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))[:256]])
model = tsq.load_model(ns, ROOT / "data" / "ddpm_mnist.pt", torch.device("cpu"))
measure("reference model", lambda seed: tsq.sample(model, torch.device("cpu"), seed=seed, **tsq.CPU))
torch.manual_seed(0)
untrained = ns["UNet"]().eval()
SEEDS = range(2)
measure("untrained U-Net", lambda seed: tsq.sample(untrained, torch.device("cpu"), seed=seed, **tsq.CPU))
for steps in (400,):
    torch.manual_seed(0)
    short, _ = ns["train"](ns["UNet"](), ns["Diffusion"](), real, max_steps=steps, use_bf16=True, progress=False)
    measure(f"trained {steps} steps", lambda seed: tsq.sample(short, torch.device("cpu"), seed=seed, **tsq.CPU))

lines = ["# Calibration of the sample-quality thresholds", "",
         "Written by `tools/calibrate.py` (CPU setting of the grader: 256 samples, 100-step DDIM, bfloat16 autocast "
         "where supported, seeds as listed). Thresholds in use: " + str(tsq.THRESHOLDS) + ".", "",
         "| generator | seed | confidence | max class fraction | Frechet distance | seconds |", "|---|---|---|---|---|---|"]
lines += [f"| {n} | {s} | {c:.3f} | {m:.3f} | {f:.2f} | {t:.0f} |" for n, s, c, m, f, t in rows]
(ROOT / "tests" / "calibration.md").write_text("\n".join(lines) + "\n")
