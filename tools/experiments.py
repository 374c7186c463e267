"""The experiments behind the notebook's sections 7, 9 and 10, written into bench/ (tools/results.py).

--sweep: the quality and time of DDIM with 10-100 steps against Algorithm 2, on the reference model
(bench/sampler_sweep.png). --objective: section 9 (L_simple against the weighted variational bound, the same
number of steps each), 256 samples of each scored; saves data/ablation.pt, which the notebook shows. --guidance:
section 10's conditional model (data/ddpm_mnist_cond.pt): for each guidance weight, how often the classifier reads
the digit that was asked for. `make experiments` runs all three (about 25 minutes on 2 cores).
"""
import argparse
import json
import time

import torch

from grader import quality, sampling
from grader.cells import MODEL, REFERENCE, ROOT, load
from tools import results as bench_results

@torch.no_grad()
def sampler_sweep(ns, device):
    """Quality and time of DDIM with few steps against Algorithm 2, on the reference model: 256 samples each."""
    model, _ = ns["load_checkpoint"](str(ROOT / MODEL), device)
    classifier, test_features = quality.load_classifier(), quality.load_test_gaussian()
    use_bf16 = ns["bf16_supported"](device)
    rows = []
    for steps in (10, 20, 50, 100, 1000):
        start = time.time()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            if steps == 1000:
                samples = sampling.ancestral_sample(model, 256, torch.Generator().manual_seed(0), device).cpu()
            else:
                samples = sampling.ddim_sample(model, (256, 1, 28, 28), steps, torch.Generator().manual_seed(0),
                                               device).cpu()
        seconds = time.time() - start
        s = quality.statistics(classifier, samples, test_features)
        rows.append({"sampler": "Algorithm 2" if steps == 1000 else "DDIM", "steps": steps, "seconds_256": seconds,
                     "fid_256": s["fid"], "confidence": s["confidence"]})
        print("  " + json.dumps(rows[-1]), flush=True)
    return rows


def objective(ns, device, steps):
    "Section 9 of the notebook with 256 samples per objective, scored; saves what the notebook shows."
    images, _ = ns["load_images"](train=True)
    classifier, test_features = quality.load_classifier(), quality.load_test_gaussian()
    use_bf16 = ns["bf16_supported"](device)
    start = time.time()
    results = ns["compare_objectives"](ns["Diffusion"]().to(device), images, steps, n_samples=256, use_bf16=use_bf16,
                                       progress=False)
    rows, saved = [], {}
    for name, r in results.items():
        s = quality.statistics(classifier, r["samples"], test_features)
        rows.append({"objective": name, "steps": steps, "fid_256": s["fid"], "confidence": s["confidence"],
                     "max_class_fraction": s["max_class_fraction"]})
        saved[name] = {"samples": r["samples"][:64].half(), "losses": r["losses"], "fid": s["fid"]}
        print("  " + json.dumps(rows[-1]), flush=True)
    torch.save(saved, ROOT / "data" / "ablation.pt")
    return {"minutes": (time.time() - start) / 60, "rows": rows}


@torch.no_grad()
def guidance(ns, device, weights=(0.0, 1.0, 2.0, 4.0), per_digit=50):
    "Section 10's conditional model: per guidance weight, the classifier's agreement with the requested digits."
    model, _ = ns["load_checkpoint"](str(ROOT / "data" / "ddpm_mnist_cond.pt"), device)
    classifier, test_features = quality.load_classifier(), quality.load_test_gaussian()
    use_bf16 = ns["bf16_supported"](device)
    diffusion = ns["Diffusion"]().to(device)
    labels = torch.arange(10, device=device).repeat_interleave(per_digit)
    rows = []
    for w in weights:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            x = ns["ddim_sample"](diffusion, ns["Guided"](model, diffusion, labels, w), (len(labels), 1, 28, 28), 50,
                                  torch.Generator().manual_seed(0)).float().cpu()
        feats, probs = quality.embed(classifier, x)
        rows.append({"w": w, "samples": len(labels),
                     "accuracy": (probs.argmax(1) == labels.cpu()).float().mean().item(),
                     "confidence": probs.max(1).values.mean().item(),
                     "fid": quality.frechet_distance(feats, test_features)})
        print("  " + json.dumps(rows[-1]), flush=True)
    return rows


def plot_sweep(rows, path):
    "Frechet distance and seconds against the number of network calls, DDIM and Algorithm 2: bench/sampler_sweep.png."
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key, label in zip(axes, ("fid_256", "seconds_256"), ("Frechet distance (256 samples)", "seconds for 256 samples")):
        for sampler, marker in (("DDIM", "o-"), ("Algorithm 2", "s")):
            mine = [r for r in rows if r["sampler"] == sampler]
            ax.plot([r["steps"] for r in mine], [r[key] for r in mine], marker, label=sampler)
        ax.set(xscale="log", xlabel="network calls (steps)", ylabel=label)
        ax.legend()
    axes[1].set_yscale("log")
    fig.suptitle("Sampling the reference model: quality and cost against the number of steps")
    fig.tight_layout()
    fig.savefig(path, dpi=100)



def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", action="store_true", help="quality and time of DDIM (10-100 steps) and Algorithm 2")
    parser.add_argument("--objective", type=int, nargs="?", const=0, metavar="STEPS",
                        help="L_simple against the weighted bound, STEPS training steps each (default: the notebook's)")
    parser.add_argument("--guidance", action="store_true", help="score the conditional model of `make train-conditional`")
    args = parser.parse_args()
    ns = load(REFERENCE, extra=("helpers", "objective", "guidance"))
    device = ns["get_device"]()
    results = bench_results.load()
    if args.sweep:
        results["sampler_sweep"] = sampler_sweep(ns, device)
        plot_sweep(results["sampler_sweep"], bench_results.OUT / "sampler_sweep.png")
    if args.objective is not None:
        results["objective"] = objective(ns, device, args.objective or ns["ABLATION_STEPS"])
    if args.guidance:
        results["guidance"] = guidance(ns, device)
    bench_results.save(results)


if __name__ == "__main__":
    main()
