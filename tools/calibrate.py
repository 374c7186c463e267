"""Calibrate the sample-quality thresholds of grader/quality.py; writes grader/calibration.md.

Measures the grader's CPU setting (256 samples, 20-step DDIM, fixed seeds) on: the reference model over several
seeds, real MNIST training digits (the floor a perfect generator reaches), an untrained U-Net, and the reference
model after a short training run (an under-trained submission).
"""
import statistics as st
import sys
import time

import torch

from grader import quality, sampling
from grader.cells import MODEL, REFERENCE, ROOT, load

SEEDS = range(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
torch.set_num_threads(2)
ns = load(REFERENCE)
classifier, reference = quality.load_classifier(), quality.load_test_gaussian()
rows = []


def measure(name, make_samples):
    for seed in SEEDS:
        start = time.time()
        s = quality.statistics(classifier, make_samples(seed), reference)
        rows.append((name, seed, s["confidence"], s["max_class_fraction"], s["fid"], time.time() - start))
        print(rows[-1], flush=True)


real = quality.load_mnist(train=True)[0]
measure("real training digits", lambda seed: real[torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))[:256]])
model = sampling.load_model(ns, ROOT / MODEL, torch.device("cpu"))
measure("reference model", lambda seed: sampling.sample(model, torch.device("cpu"), seed=seed, **quality.SETTINGS["cpu"]))
torch.manual_seed(0)
untrained = ns["UNet"]().eval()
SEEDS = range(2)
measure("untrained U-Net", lambda seed: sampling.sample(untrained, torch.device("cpu"), seed=seed, **quality.SETTINGS["cpu"]))
for steps in (400,):
    torch.manual_seed(0)
    short, _ = ns["train"](ns["UNet"](), ns["Diffusion"](), real, max_steps=steps, use_bf16=True, progress=False)
    measure(f"trained {steps} steps", lambda seed: sampling.sample(short, torch.device("cpu"), seed=seed, **quality.SETTINGS["cpu"]))

lines = ["# Calibration of the sample-quality thresholds", "",
         "Written by `tools/calibrate.py` (CPU setting of the grader: 256 samples, 20-step DDIM, bfloat16 autocast "
         "where supported, seeds as listed). Thresholds in use: " + str(quality.THRESHOLDS) + ".", "",
         "| generator | seed | confidence | max class fraction | Frechet distance | seconds |", "|---|---|---|---|---|---|"]
lines += [f"| {n} | {s} | {c:.3f} | {m:.3f} | {f:.2f} | {t:.0f} |" for n, s, c, m, f, t in rows]


def summary(name):
    conf, largest, fid = zip(*[(c, m, f) for n, _, c, m, f, _ in rows if n == name])
    spread = st.stdev(fid) if len(fid) > 1 else float("nan")
    return (f"* {name}: Frechet distance {min(fid):.1f}-{max(fid):.1f} (mean {st.mean(fid):.1f}, standard deviation "
            f"{spread:.1f}), confidence {min(conf):.3f}-{max(conf):.3f}, largest class {min(largest):.3f}-{max(largest):.3f}.")


th = quality.THRESHOLDS
ref_fid = [f for n, _, _, _, f, _ in rows if n == "reference model"]
lines += ["", "## Reading", ""] + [summary(n) for n in dict.fromkeys(n for n, *_ in rows)] + [
    "", f"The threshold of {th['fid']['cpu']:.0f} lies {(th['fid']['cpu'] - st.mean(ref_fid)) / st.stdev(ref_fid):.1f} "
    "standard deviations above the reference model's mean Frechet distance, so a correct, fully trained submission "
    "does not fail by the luck of its seed, while under-trained and untrained models sit far above it. Confidence "
    "alone does not catch an untrained model (the classifier is confidently wrong about its blobs); the class "
    "histogram and the distance do."]
# The sections after this run's (other measurements, written by hand) are kept.
out = ROOT / "grader" / "calibration.md"
kept = out.read_text().partition("\n## Denoising real digits")
out.write_text("\n".join(lines) + "\n" + (kept[1] + kept[2] if kept[1] else ""))
