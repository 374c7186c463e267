"""`make bench`: the notebook's U-Net against Hugging Face diffusers' UNet2DModel, trained by the same loop.

Prints a table and writes bench/results.json and bench/results.md. Per model: parameters, forward FLOPs per image,
training images/s (forward, loss, backward, optimizer step and EMA update of the notebook's train(), batch 128) in
float32 and in bfloat16 autocast, the achieved GFLOP/s against a measured matmul ceiling, and the seconds to draw
64 images with the 1000-step sampler. Medians over --repeats runs, with the range.

--epoch times one epoch of the notebook's train() with its defaults (the GPU check: `make gpu-check`).
--sweep adds the quality and time of DDIM with 10-100 steps against Algorithm 2 on the reference model.
--objective runs the notebook's section 9 (L_simple against the weighted variational bound, the same number of
steps each), scores 256 samples of each and saves data/ablation.pt, which the notebook shows.
--guidance scores section 10's conditional model (data/ddpm_mnist_cond.pt): for each guidance weight, how often
the classifier reads the digit that was asked for.

--quality adds the time to quality (about two hours on 2 cores): each model is trained for --minutes in its faster
precision, its averaged weights are saved every few minutes of training, and each snapshot is sampled with the
grader's CPU sampler (100-step DDIM). "pass" is the grader's sample-quality check on 256 samples
(tests/test_sample_quality.py); "good" is a Frechet distance on 1,024 samples of at most twice that of 1,024 real
training digits, both against the 10,000 MNIST test digits.
"""
import argparse
import json
import statistics as st
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))
import quality  # noqa: E402
import test_sample_quality as tsq  # noqa: E402
import train as training  # noqa: E402
from grader import REFERENCE, load  # noqa: E402

MODELS = ("ours", "diffusers")
BATCH = 128
OUT = ROOT / "bench"


def median_range(values):
    return {"median": st.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def matmul_ceiling(dtype, repeats, n=2048):
    "GFLOP/s of an n x n matmul on this device: the most a dense layer could get."
    a, b = torch.randn(n, n, dtype=dtype, device=DEVICE), torch.randn(n, n, dtype=dtype, device=DEVICE)
    a @ b
    runs = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        for _ in range(5):
            a @ b
        sync()
        runs.append(5 * 2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return median_range(runs)


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def forward_flops(model):
    "FLOPs of one forward pass per image (convolutions and matrix products, 2 per multiply-add)."
    x, t = torch.randn(8, 1, 28, 28, device=DEVICE), torch.full((8,), 500, device=DEVICE)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x, t)
    return counter.get_total_flops() / 8


def training_rate(ns, model, images, use_bf16, steps, repeats):
    "Images per second through the notebook's train() (a fresh optimizer and EMA per call, as in a real run)."
    diffusion = ns["Diffusion"]().to(DEVICE)
    ns["train"](model, diffusion, images, batch_size=BATCH, max_steps=2, use_bf16=use_bf16, progress=False)  # warm-up
    runs = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        ns["train"](model, diffusion, images, batch_size=BATCH, max_steps=steps, use_bf16=use_bf16, progress=False)
        sync()
        runs.append(steps * BATCH / (time.perf_counter() - start))
    return median_range(runs)


def sampling_seconds(ns, model, use_bf16, steps, repeats, n=64):
    """Seconds for n images with the notebook's sampler, scaled to 1000 steps from runs of `steps` steps.

    Every step costs the same (one network call and a few element-wise operations), so a 100-step run
    times 10 is the 1000-step time; --full-sampling also times the whole 1000 steps once."""
    diffusion = ns["Diffusion"](num_timesteps=steps).to(DEVICE)
    model.eval()
    runs = []
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=use_bf16):
        diffusion.sample(model, (n, 1, 28, 28))  # warm-up
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            diffusion.sample(model, (n, 1, 28, 28), generator=torch.Generator().manual_seed(0))
            sync()
            runs.append((time.perf_counter() - start) * 1000 / steps)
    model.train()
    return median_range(runs)


def speed(ns, args):
    images, _ = ns["load_images"](train=True)
    results = {"device": str(DEVICE), "threads": torch.get_num_threads(), "torch": torch.__version__,
               "ceiling_gflops": {"float32": matmul_ceiling(torch.float32, args.repeats)}, "models": {}}
    precisions = {"float32": False}
    if ns["bf16_supported"](DEVICE):
        precisions["bfloat16"] = True
        results["ceiling_gflops"]["bfloat16"] = matmul_ceiling(torch.bfloat16, args.repeats)
    for name in MODELS:
        torch.manual_seed(0)
        model = training.build(name, ns).to(DEVICE)
        r = {"parameters": sum(p.numel() for p in model.parameters()), "forward_gflops_per_image": forward_flops(model) / 1e9}
        r["train_images_per_s"], r["train_gflops_per_s"] = {}, {}
        for precision, use_bf16 in precisions.items():
            # the slow combination (diffusers in bfloat16 on a CPU) gets fewer steps so that the benchmark stays short
            steps = args.steps if name == "ours" or DEVICE.type != "cpu" or not use_bf16 else max(2, args.steps // 3)
            rate = training_rate(ns, model, images, use_bf16, steps, args.repeats)
            r["train_images_per_s"][precision] = rate
            r["train_gflops_per_s"][precision] = 3 * r["forward_gflops_per_image"] * rate["median"]  # backward = 2x forward
            print(f"{name:9s} {precision:8s} {rate['median']:7.1f} images/s ({rate['min']:.1f}-{rate['max']:.1f})", flush=True)
        r["precision"] = max(precisions, key=lambda p: r["train_images_per_s"][p]["median"])
        r["sampling_64x1000_s"] = sampling_seconds(ns, model, precisions[r["precision"]], args.sampling_steps, args.repeats)
        print(f"{name:9s} sampling 64 x 1000 steps: {r['sampling_64x1000_s']['median']:.1f} s", flush=True)
        if args.full_sampling and name == "ours":   # the target: 64 digits with all 1000 steps in a minute
            r["sampling_64x1000_full_s"] = sampling_seconds(ns, model, precisions[r["precision"]], 1000, 1)["median"]
        results["models"][name] = r
    ours, theirs = results["models"]["ours"], results["models"]["diffusers"]
    best = lambda r: r["train_images_per_s"][r["precision"]]["median"]
    results["ratios"] = {
        "train_best_vs_best": best(ours) / best(theirs),
        **{f"train_{p}": ours["train_images_per_s"][p]["median"] / theirs["train_images_per_s"][p]["median"] for p in precisions},
        "sampling": theirs["sampling_64x1000_s"]["median"] / ours["sampling_64x1000_s"]["median"]}
    return results


@torch.no_grad()
def evaluate(model, use_bf16, classifier, test_features, good):
    "The grader's verdict on 256 DDIM samples; if it passes, the Frechet distance on 1,024 samples too."
    abar = tsq.ref.schedule()[2]
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=use_bf16):
        first = quality.ddim_sample(abar, model, (256, 1, 28, 28), tsq.CPU["steps"], torch.Generator().manual_seed(0), DEVICE).cpu()
    s = quality.statistics(classifier, first, test_features)
    th = tsq.THRESHOLDS
    out = {"confidence": s["confidence"], "max_class_fraction": s["max_class_fraction"], "fid_256": s["fid"],
           "passes": s["confidence"] >= th["confidence"] and s["max_class_fraction"] <= th["max_class_fraction"]
           and s["fid"] <= th["fid"]["cpu"]}
    # The 256-sample distance overestimates the 1,024-sample one by about 16 (measured on real digits: 20-26 against
    # 6.2), so where it exceeds the "good" threshold by more than 25, the 1,024 samples (4 times the cost) are skipped.
    if out["passes"] and s["fid"] <= good + 25:
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=use_bf16):
            rest = quality.ddim_sample(abar, model, (768, 1, 28, 28), tsq.CPU["steps"], torch.Generator().manual_seed(1), DEVICE).cpu()
        out["fid_1024"] = quality.frechet_distance(quality.embed(classifier, torch.cat([first, rest]))[0], test_features)
    return out


def time_to_quality(ns, args, precision_of, previous):
    images, _ = ns["load_images"](train=True)
    classifier, test_features = quality.load_classifier(), quality.load_test_gaussian()
    real = quality.load_mnist(train=True)[0]
    subset = real[torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[:1024]]
    floor = quality.frechet_distance(quality.embed(classifier, subset)[0], test_features)
    results = {**previous, "fid_1024_real_training_digits": floor,
               "good_fid_1024": 2 * floor, "pass": "the grader's check: " + json.dumps(tsq.THRESHOLDS)}
    results.setdefault("models", {})
    print(f"Frechet distance of 1,024 real training digits: {floor:.1f}; 'good' is at most {2 * floor:.1f}", flush=True)
    for name in args.models:
        use_bf16 = precision_of[name] == "bfloat16"
        torch.manual_seed(0)
        model = training.build(name, ns).to(DEVICE)
        every = args.snapshot_every if name == "ours" else args.snapshot_every_diffusers
        print(f"training {name} ({precision_of[name]}) for up to {args.minutes} min, snapshots every {every / 60:.1f} min",
              flush=True)
        _, log = training.run(ns, model, images, use_bf16, args.epochs, args.minutes, every, OUT / "snapshots" / name,
                              output=OUT / "snapshots" / f"{name}_final.pt" if name == "ours" else None)
        rows = []
        for snap in log["snapshots"]:
            model.load_state_dict(torch.load(snap["path"], map_location=DEVICE, weights_only=True)["state_dict"])
            start = time.time()
            row = {"step": snap["step"], "minutes": snap["minutes"], **evaluate(model.eval(), use_bf16, classifier, test_features, 2 * floor)}
            row["eval_seconds"] = time.time() - start
            rows.append(row)
            print("  " + json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        first = lambda ok: next((r["minutes"] for r in rows if ok(r)), None)
        results["models"][name] = {
            "precision": precision_of[name], "minutes_budget": args.minutes, "steps": log["steps"],
            "minutes": log["seconds"] / 60, "snapshots": rows,
            "minutes_to_pass": first(lambda r: r["passes"]),
            "minutes_to_good": first(lambda r: r.get("fid_1024", float("inf")) <= 2 * floor)}
    return results


@torch.no_grad()
def sampler_sweep(ns):
    """Quality and time of DDIM with few steps against Algorithm 2, on the reference model: 256 samples each."""
    model, _ = ns["load_checkpoint"](str(ROOT / "data" / "ddpm_mnist.pt"), DEVICE)
    classifier, test_features = quality.load_classifier(), quality.load_test_gaussian()
    use_bf16 = ns["bf16_supported"](DEVICE)
    rows = []
    for steps in (10, 20, 50, 100, 1000):
        start = time.time()
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=use_bf16):
            if steps == 1000:
                samples = tsq.ancestral_sample(model, 256, torch.Generator().manual_seed(0), DEVICE).cpu()
            else:
                samples = quality.ddim_sample(tsq.ref.schedule()[2], model, (256, 1, 28, 28), steps,
                                              torch.Generator().manual_seed(0), DEVICE).cpu()
        seconds = time.time() - start
        s = quality.statistics(classifier, samples, test_features)
        rows.append({"sampler": "Algorithm 2" if steps == 1000 else "DDIM", "steps": steps, "seconds_256": seconds,
                     "fid_256": s["fid"], "confidence": s["confidence"]})
        print("  " + json.dumps(rows[-1]), flush=True)
    return rows


def epoch_time(ns):
    "One epoch of the notebook's train() with its own defaults (batch size, precision), timed: the GPU check."
    images, _ = ns["load_images"](train=True)
    use_bf16 = ns["bf16_supported"](DEVICE)
    torch.manual_seed(0)
    model = ns["UNet"]().to(DEVICE)
    diffusion = ns["Diffusion"]().to(DEVICE)
    ns["train"](model, diffusion, images, max_steps=5, use_bf16=use_bf16, progress=False)   # warm-up
    sync()
    start = time.perf_counter()
    _, losses = ns["train"](model, diffusion, images, epochs=1, use_bf16=use_bf16, progress=False)
    sync()
    seconds = time.perf_counter() - start
    batch = len(images) // len(losses)
    return {"precision": "bfloat16" if use_bf16 else "float32", "batch_size": batch, "steps": len(losses),
            "seconds": seconds, "images_per_s": len(losses) * batch / seconds, "minutes_for_20_epochs": 20 * seconds / 60}


def objective(ns, steps):
    "Section 9 of the notebook with 256 samples per objective, scored; saves what the notebook shows."
    images, _ = ns["load_images"](train=True)
    classifier, test_features = quality.load_classifier(), quality.load_test_gaussian()
    use_bf16 = ns["bf16_supported"](DEVICE)
    start = time.time()
    results = ns["compare_objectives"](ns["Diffusion"]().to(DEVICE), images, steps, n_samples=256, use_bf16=use_bf16,
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
def guidance(ns, weights=(0.0, 1.0, 2.0, 4.0), per_digit=50):
    "Section 10's conditional model: per guidance weight, the classifier's agreement with the requested digits."
    model, _ = ns["load_checkpoint"](str(ROOT / "data" / "ddpm_mnist_cond.pt"), DEVICE)
    classifier, test_features = quality.load_classifier(), quality.load_test_gaussian()
    use_bf16 = ns["bf16_supported"](DEVICE)
    diffusion = ns["Diffusion"]().to(DEVICE)
    labels = torch.arange(10, device=DEVICE).repeat_interleave(per_digit)
    rows = []
    for w in weights:
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=use_bf16):
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


def fmt(r, digits=1):
    return f"{r['median']:.{digits}f} ({r['min']:.{digits}f}-{r['max']:.{digits}f})"


def markdown(results):
    lines = ["# Benchmark: the notebook's U-Net against diffusers' UNet2DModel", "",
             "Written by `make bench` (`tools/bench.py`); medians over repeated runs, range in brackets."]
    s = results.get("speed")
    if s:
        ours, theirs = s["models"]["ours"], s["models"]["diffusers"]
        lines += ["", f"Device: {s['device']}, {s['threads']} threads, torch {s['torch']}. Matmul ceiling (2048x2048): "
                  + ", ".join(f"{p} {fmt(v, 0)} GFLOP/s" for p, v in s["ceiling_gflops"].items()) + ".", "",
                  "| | ours | diffusers | ratio |", "|---|---|---|---|",
                  f"| parameters | {ours['parameters']:,} | {theirs['parameters']:,} | |",
                  f"| forward GFLOPs per image | {ours['forward_gflops_per_image']:.3f} | {theirs['forward_gflops_per_image']:.3f} | |"]
        for p in ours["train_images_per_s"]:
            lines.append(f"| training images/s, {p} | {fmt(ours['train_images_per_s'][p])} | "
                         f"{fmt(theirs['train_images_per_s'][p])} | {s['ratios']['train_' + p]:.2f}x |")
            lines.append(f"| achieved GFLOP/s, {p} | {ours['train_gflops_per_s'][p]:.0f} | {theirs['train_gflops_per_s'][p]:.0f} | |")
        lines += [f"| faster precision | {ours['precision']} | {theirs['precision']} | "
                  f"{s['ratios']['train_best_vs_best']:.2f}x (best vs best) |",
                  f"| sampling 64 images x 1000 steps, s (faster precision) | {fmt(ours['sampling_64x1000_s'])} | "
                  f"{fmt(theirs['sampling_64x1000_s'])} | {s['ratios']['sampling']:.2f}x |"]
        if "sampling_64x1000_full_s" in ours:
            lines.append(f"| the same, one whole 1000-step run, s | {ours['sampling_64x1000_full_s']:.1f} | | |")
    q = results.get("quality")
    if q:
        lines += ["", "## Time to quality", "",
                  f"Pass: {q['pass']} on 256 samples (100-step DDIM). "
                  f"Good: Frechet distance on 1,024 samples <= {q['good_fid_1024']:.1f}, twice that of 1,024 real "
                  f"training digits ({q['fid_1024_real_training_digits']:.1f}).", "",
                  "| model | precision | training budget, min | steps | minutes to pass | minutes to good |",
                  "|---|---|---|---|---|---|"]
        for name, m in q["models"].items():
            show = lambda v: f"{v:.1f}" if v is not None else f"not within {m['minutes_budget']:.0f}"
            lines.append(f"| {name} | {m['precision']} | {m['minutes_budget']:.0f} | {m['steps']} | "
                         f"{show(m['minutes_to_pass'])} | {show(m['minutes_to_good'])} |")
        lines += ["", "| model | minutes | step | confidence | max class | FID (256) | FID (1,024) | grader |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, m in q["models"].items():
            for r in m["snapshots"]:
                fid = f"{r['fid_1024']:.1f}" if "fid_1024" in r else "-"
                lines.append(f"| {name} | {r['minutes']:.1f} | {r['step']} | {r['confidence']:.3f} | "
                             f"{r['max_class_fraction']:.3f} | {r['fid_256']:.1f} | {fid} | {'pass' if r['passes'] else 'fail'} |")
    sweep = results.get("sampler_sweep")
    if sweep:
        lines += ["", "## Few-step sampling (reference model, 256 samples)", "",
                  "| sampler | steps | seconds | Frechet distance (256) | confidence |", "|---|---|---|---|---|"]
        lines += [f"| {r['sampler']} | {r['steps']} | {r['seconds_256']:.0f} | {r['fid_256']:.1f} | {r['confidence']:.3f} |"
                  for r in sweep]
        lines += ["", "![quality and time against steps](sampler_sweep.png)"]
    obj = results.get("objective")
    if obj:
        lines += ["", "## The objective (notebook section 9; 256 samples, 50-step DDIM)", "",
                  "| objective | training steps | Frechet distance (256) | confidence | largest class |", "|---|---|---|---|---|"]
        lines += [f"| {r['objective']} | {r['steps']} | {r['fid_256']:.1f} | {r['confidence']:.3f} | "
                  f"{r['max_class_fraction']:.3f} |" for r in obj["rows"]]
    guided = results.get("guidance")
    if guided:
        lines += ["", "## Classifier-free guidance (notebook section 10; 50-step DDIM)", "",
                  "| guidance weight w | samples | classifier agrees with the requested digit | confidence | "
                  "Frechet distance |", "|---|---|---|---|---|"]
        lines += [f"| {r['w']:g} | {r['samples']} | {r['accuracy']:.3f} | {r['confidence']:.3f} | {r['fid']:.1f} |"
                  for r in guided]
    for key, title in (("epoch", "One epoch of train() with the notebook's defaults"),
                       ("gpu_epoch", "One epoch of train() on the GPU")):
        e = results.get(key)
        if e:
            lines += ["", f"## {title}", "", f"{e['steps']} steps of {e['batch_size']} images in {e['precision']}: "
                      f"{e['seconds']:.0f} s, {e['images_per_s']:.0f} images/s; 20 epochs would take "
                      f"{e['minutes_for_20_epochs']:.1f} min."]
    gpu = results.get("gpu")
    if gpu:
        lines += ["", "## On a GPU", "", "```", json.dumps(gpu, indent=1), "```"]
    return "\n".join(lines) + "\n"


def main():
    global DEVICE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="training steps per timed run")
    parser.add_argument("--sampling-steps", type=int, default=100, help="sampler steps per timed run")
    parser.add_argument("--full-sampling", action="store_true", help="also time one whole 1000-step run of our sampler")
    parser.add_argument("--quality", action="store_true", help="also measure the time to quality (hours)")
    parser.add_argument("--epoch", action="store_true", help="time one epoch of the notebook's train()")
    parser.add_argument("--sweep", action="store_true", help="quality and time of DDIM (10-100 steps) and Algorithm 2")
    parser.add_argument("--objective", type=int, nargs="?", const=0, metavar="STEPS",
                        help="L_simple against the weighted bound, STEPS training steps each (default: the notebook's)")
    parser.add_argument("--guidance", action="store_true", help="score the conditional model of `make train-conditional`")
    parser.add_argument("--skip-speed", action="store_true", help="keep the speed figures of bench/results.json")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, help="for --quality")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--epochs", type=int, default=8, help="as `make train`; --minutes caps the runs")
    parser.add_argument("--snapshot-every", type=float, default=180, help="seconds of training (ours)")
    parser.add_argument("--snapshot-every-diffusers", type=float, default=600, help="seconds of training (diffusers)")
    args = parser.parse_args()

    ns = load(REFERENCE, extra=("helpers", "objective", "guidance"))
    DEVICE = ns["get_device"]()
    OUT.mkdir(exist_ok=True)
    path = OUT / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    key = "gpu" if DEVICE.type == "cuda" else "speed"
    if not args.skip_speed:
        results[key] = speed(ns, args)
    if args.epoch:
        results["gpu_epoch" if DEVICE.type == "cuda" else "epoch"] = epoch_time(ns)
    if args.sweep:
        results["sampler_sweep"] = sampler_sweep(ns)
        plot_sweep(results["sampler_sweep"], OUT / "sampler_sweep.png")
    if args.objective is not None:
        results["objective"] = objective(ns, args.objective or ns["ABLATION_STEPS"])
    if args.guidance:
        results["guidance"] = guidance(ns)
    if args.quality:
        precision_of = {n: m["precision"] for n, m in results["speed"]["models"].items()}
        results["quality"] = time_to_quality(ns, args, precision_of, results.get("quality", {}))
    path.write_text(json.dumps(results, indent=1) + "\n")
    (OUT / "results.md").write_text(markdown(results))
    print(markdown(results))


DEVICE = torch.device("cpu")
if __name__ == "__main__":
    main()
