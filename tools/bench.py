"""`make bench`: the notebook's U-Net against Hugging Face diffusers' UNet2DModel, trained by the same loop.

Prints a table and writes bench/results.json and bench/results.md. Per model: parameters, forward FLOPs per image,
training images/s (forward, loss, backward, optimizer step and EMA update of the notebook's train(), batch 128) in
float32 and in bfloat16 autocast, the achieved GFLOP/s against a measured matmul ceiling, and the seconds to draw
64 images with the 1000-step sampler. Medians over --repeats runs, with the range.

--epoch times one epoch of the notebook's train() with its defaults (the GPU check: `make gpu-check`).
The notebook's experiments (sampler sweep, sections 9 and 10) are tools/experiments.py; tools/results.py writes
the figures of both.

--quality adds the time to quality (about 80 minutes on 2 cores): the notebook's recipe (its train() and its
defaults) trains our U-Net from each of --seeds in each precision, and each peer (diffusers, PEERS) from the
first seed in its faster precision. Every --snapshot-every seconds of training the averaged weights are scored,
off the clock, as the grader scores a submission: 256 samples of its CPU sampler (20-step DDIM) judged by
grader/quality.py ("pass"). Ours in its faster precision trains the whole --minutes, the other runs stop at their
first pass. "good" is a Frechet distance on 1,024 samples of at most twice that of 1,024 real training digits,
both against the 10,000 MNIST test digits.

--experiment NAME --recipe lr=0.004 --unet base_channels=24 does the same for a change to the recipe or the
architecture (ours only), recorded under its name in bench/results.md's table of experiments.
"""
import argparse
import ast
import inspect
import json
import statistics as st
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from grader import quality, sampling
from grader.cells import REFERENCE, load
from tools import results as bench_results
from tools import train as training

BATCH = 128
# diffusers' UNet2DModel in two configurations, both behind our model(x_t, t) contract: as diffusers' MNIST examples
# size it (attention at 14 and 7 pixels), and the same without any attention, its fastest on a CPU.
PEERS = {
    "diffusers-mnist": dict(block_out_channels=(32, 64, 64), layers_per_block=2,
                            down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                            up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D")),
    "diffusers-fast": dict(block_out_channels=(32, 64, 64), layers_per_block=2, add_attention=False,
                           down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3),
}
MODELS = ("ours", *PEERS)


class DiffusersUNet(torch.nn.Module):
    """Hugging Face diffusers' UNet2DModel (one of PEERS) behind our model(x_t, t) contract."""

    def __init__(self, name):
        super().__init__()
        from diffusers import UNet2DModel
        self.config = {}
        self.net = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, **PEERS[name])

    def forward(self, x, t):
        return self.net(x, t).sample


def build(name, ns, **unet):
    "A fresh, randomly initialised model: 'ours' (the notebook's UNet, with `unet` arguments) or one of PEERS."
    return ns["UNet"](**unet) if name == "ours" else DiffusersUNet(name)


def median_range(values):
    return {"median": st.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def matmul_ceiling(device, dtype, repeats, n=2048):
    "GFLOP/s of an n x n matmul on this device: the most a dense layer could get."
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    a @ b
    runs = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(5):
            a @ b
        sync(device)
        runs.append(5 * 2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return median_range(runs)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def forward_flops(model, device):
    "FLOPs of one forward pass per image (convolutions and matrix products, 2 per multiply-add)."
    x, t = torch.randn(8, 1, 28, 28, device=device), torch.full((8,), 500, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x, t)
    return counter.get_total_flops() / 8


def training_rate(ns, device, model, images, use_bf16, steps, repeats):
    "Images per second through the notebook's train() (a fresh optimizer and EMA per call, as in a real run)."
    diffusion = ns["Diffusion"]().to(device)
    ns["train"](model, diffusion, images, batch_size=BATCH, max_steps=2, use_bf16=use_bf16, progress=False)  # warm-up
    runs = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        ns["train"](model, diffusion, images, batch_size=BATCH, max_steps=steps, use_bf16=use_bf16, progress=False)
        sync(device)
        runs.append(steps * BATCH / (time.perf_counter() - start))
    return median_range(runs)


def sampling_seconds(ns, device, model, use_bf16, steps, repeats, n=64):
    """Seconds for n images with the notebook's sampler, scaled to 1000 steps from runs of `steps` steps.

    Every step costs the same (one network call and a few element-wise operations), so a 100-step run
    times 10 is the 1000-step time; --full-sampling also times the whole 1000 steps once."""
    diffusion = ns["Diffusion"](num_timesteps=steps).to(device)
    model.eval()
    runs = []
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        diffusion.sample(model, (n, 1, 28, 28))  # warm-up
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            diffusion.sample(model, (n, 1, 28, 28), generator=torch.Generator().manual_seed(0))
            sync(device)
            runs.append((time.perf_counter() - start) * 1000 / steps)
    model.train()
    return median_range(runs)


def speed(ns, device, args):
    images, _ = ns["load_images"](train=True)
    results = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
               "ceiling_gflops": {"float32": matmul_ceiling(device, torch.float32, args.repeats)}, "models": {}}
    precisions = {"float32": False}
    if ns["bf16_supported"](device):
        precisions["bfloat16"] = True
        results["ceiling_gflops"]["bfloat16"] = matmul_ceiling(device, torch.bfloat16, args.repeats)
    for name in MODELS:
        torch.manual_seed(0)
        model = build(name, ns).to(device)
        r = {"parameters": sum(p.numel() for p in model.parameters()), "forward_gflops_per_image": forward_flops(model, device) / 1e9}
        r["train_images_per_s"], r["train_gflops_per_s"] = {}, {}
        for precision, use_bf16 in precisions.items():
            # the slow combination (diffusers in bfloat16 on a CPU) gets fewer steps so that the benchmark stays short
            steps = args.steps if name == "ours" or device.type != "cpu" or not use_bf16 else max(2, args.steps // 3)
            rate = training_rate(ns, device, model, images, use_bf16, steps, args.repeats)
            r["train_images_per_s"][precision] = rate
            r["train_gflops_per_s"][precision] = 3 * r["forward_gflops_per_image"] * rate["median"]  # backward = 2x forward
            print(f"{name:9s} {precision:8s} {rate['median']:7.1f} images/s ({rate['min']:.1f}-{rate['max']:.1f})", flush=True)
        r["precision"] = max(precisions, key=lambda p: r["train_images_per_s"][p]["median"])
        r["sampling_64x1000_s"] = sampling_seconds(ns, device, model, precisions[r["precision"]], args.sampling_steps, args.repeats)
        print(f"{name:9s} sampling 64 x 1000 steps: {r['sampling_64x1000_s']['median']:.1f} s", flush=True)
        if args.full_sampling and name == "ours":   # the target: 64 digits with all 1000 steps in a minute
            r["sampling_64x1000_full_s"] = sampling_seconds(ns, device, model, precisions[r["precision"]], 1000, 1)["median"]
        results["models"][name] = r
    ours, best = results["models"]["ours"], lambda r: r["train_images_per_s"][r["precision"]]["median"]
    results["ratios"] = {peer: {
        "train_best_vs_best": best(ours) / best(theirs),
        **{f"train_{p}": ours["train_images_per_s"][p]["median"] / theirs["train_images_per_s"][p]["median"] for p in precisions},
        "sampling": theirs["sampling_64x1000_s"]["median"] / ours["sampling_64x1000_s"]["median"]}
        for peer, theirs in results["models"].items() if peer != "ours"}
    return results


@torch.no_grad()
def evaluate(model, device, classifier, test_features, good):
    """The grader's verdict on 256 DDIM samples, drawn as the grader draws them (sampling.autocast); where it
    passes near the "good" threshold, the Frechet distance on 1,024 samples too."""
    n, steps = quality.SETTINGS["cpu"]["n"], quality.SETTINGS["cpu"]["steps"]
    with sampling.autocast(device):
        first = sampling.ddim_sample(model, (n, 1, 28, 28), steps, torch.Generator().manual_seed(0), device).cpu()
        x0 = quality.load_mnist(train=False)[0][:n]
        loss = quality.denoising_loss(model, sampling.ref.q_sample, x0, device)
    s = quality.measure(first, loss)
    out = {"confidence": s["confidence"], "max_class_fraction": s["max_class_fraction"], "fid_256": s["fid"],
           "denoising_loss": loss, "passes": quality.passes(s)}
    # The 256-sample distance overestimates the 1,024-sample one by about 16 (measured on real digits: 20-26 against
    # 6.2), so where it exceeds the "good" threshold by more than 25, the 1,024 samples (4 times the cost) are skipped.
    if out["passes"] and s["fid"] <= good + 25:
        with sampling.autocast(device):
            rest = sampling.ddim_sample(model, (1024 - n, 1, 28, 28), steps, torch.Generator().manual_seed(1), device).cpu()
        out["fid_1024"] = quality.frechet_distance(quality.embed(classifier, torch.cat([first, rest]))[0], test_features)
    return out


def quality_run(ns, device, images, scoring, name, precision, seed, minutes, every, whole, recipe=None, unet=None):
    """One training run from seed `seed`, scored every `every` seconds of training time (the scoring is off the
    clock). It stops at its first passing score unless `whole`, which trains the whole budget (scoring every
    snapshot until the first pass, then every fourth, and the last)."""
    torch.manual_seed(seed)
    model = build(name, ns, **(unet or {})).to(device)
    rows = []

    def score(ema_model, step, minutes_done):
        passed = any(r["passes"] for r in rows)
        last = minutes_done >= minutes - every / 120
        if passed and not (last or len(rows) % 4 == 0):
            rows.append({"step": step, "minutes": minutes_done, "skipped": True})
            return False
        row = {"step": step, "minutes": minutes_done, **evaluate(ema_model, device, *scoring)}
        rows.append(row)
        print(f"  {name} {precision} seed {seed}: " + json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                                                  for k, v in row.items()}), flush=True)
        return row["passes"] and not whole

    _, log = training.run(ns, model, images, precision == "bfloat16", epochs=100, minutes=minutes, snapshot_every=every,
                          on_snapshot=score, **(recipe or {}))
    rows = [r for r in rows if not r.get("skipped")]
    first = lambda ok: next((r for r in rows if ok(r)), None)
    passed, good = first(lambda r: r["passes"]), first(lambda r: r.get("fid_1024", float("inf")) <= scoring[2])
    return {"model": name, "precision": precision, "seed": seed, "recipe": recipe or {}, "unet": unet or {},
            "minutes_budget": minutes, "steps": log["steps"], "minutes": log["seconds"] / 60,
            "steps_per_s": log["steps"] / log["seconds"], "images_per_s": log["steps"] * batch_size(ns, recipe) / log["seconds"],
            "minutes_to_pass": passed and passed["minutes"], "steps_to_pass": passed and passed["step"],
            "minutes_to_good": good and good["minutes"], "snapshots": rows}


def batch_size(ns, recipe):
    return (recipe or {}).get("batch_size", inspect.signature(ns["train"]).parameters["batch_size"].default)


def time_to_quality(ns, device, args, precision_of):
    """Every run of args.models: ours in each precision and seed (in its faster precision for the whole budget, in
    the other until it passes), each peer in its faster precision with the first seed, until it passes."""
    images, _ = ns["load_images"](train=True)
    classifier, test_features = quality.load_classifier(), quality.load_test_gaussian()
    real = quality.load_mnist(train=True)[0]
    subset = real[torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[:1024]]
    floor = quality.frechet_distance(quality.embed(classifier, subset)[0], test_features)
    print(f"Frechet distance of 1,024 real training digits: {floor:.1f}; 'good' is at most {2 * floor:.1f}", flush=True)
    results = {"fid_1024_real_training_digits": floor, "good_fid_1024": 2 * floor,
               "pass": "the grader's check: " + json.dumps(quality.THRESHOLDS), "runs": []}
    recipe, unet = parse_settings(args.recipe), parse_settings(args.unet)
    for name in args.models:
        ours = name == "ours"
        for precision in (args.precisions if ours else [precision_of[name]]):
            for seed in (args.seeds if ours else args.seeds[:1]):
                whole = ours and precision == precision_of["ours"]
                every = args.snapshot_every if ours else args.snapshot_every_peers
                minutes = args.minutes if ours else args.minutes_peers or args.minutes
                print(f"training {name} ({precision}, seed {seed}) for up to {minutes:g} min, scored every "
                      f"{every:.0f} s" + ("" if whole else ", until it passes"), flush=True)
                results["runs"].append(quality_run(ns, device, images, (classifier, test_features, 2 * floor), name,
                                                   precision, seed, minutes, every, whole,
                                                   recipe if ours else None, unet if ours else None))
    return results


def parse_settings(pairs):
    "['lr=0.004', 'batch_size=64'] -> {'lr': 0.004, 'batch_size': 64}: train() or UNet() arguments to try."
    return {k: ast.literal_eval(v) for k, v in (p.split("=", 1) for p in pairs or [])}


def epoch_time(ns, device):
    "One epoch of the notebook's train() with its own defaults (batch size, precision), timed: the GPU check."
    images, _ = ns["load_images"](train=True)
    use_bf16 = ns["bf16_supported"](device)
    torch.manual_seed(0)
    model = ns["UNet"]().to(device)
    diffusion = ns["Diffusion"]().to(device)
    ns["train"](model, diffusion, images, max_steps=5, use_bf16=use_bf16, progress=False)   # warm-up
    sync(device)
    start = time.perf_counter()
    _, losses = ns["train"](model, diffusion, images, epochs=1, use_bf16=use_bf16, progress=False)
    sync(device)
    seconds = time.perf_counter() - start
    batch = len(images) // len(losses)
    return {"precision": "bfloat16" if use_bf16 else "float32", "batch_size": batch, "steps": len(losses),
            "seconds": seconds, "images_per_s": len(losses) * batch / seconds, "minutes_for_20_epochs": 20 * seconds / 60}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="training steps per timed run")
    parser.add_argument("--sampling-steps", type=int, default=100, help="sampler steps per timed run")
    parser.add_argument("--full-sampling", action="store_true", help="also time one whole 1000-step run of our sampler")
    parser.add_argument("--quality", action="store_true", help="also measure the time to quality (hours)")
    parser.add_argument("--epoch", action="store_true", help="time one epoch of the notebook's train()")
    parser.add_argument("--skip-speed", action="store_true", help="keep the speed figures of bench/results.json")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, help="for --quality")
    parser.add_argument("--precisions", nargs="+", choices=("bfloat16", "float32"),
                        help="of ours, for --quality (default: every one this device has)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="of ours (the peers: the first)")
    parser.add_argument("--minutes", type=float, default=10, help="training budget of each run")
    parser.add_argument("--minutes-peers", type=float, help="training budget of each peer's run (default: --minutes)")
    parser.add_argument("--snapshot-every", type=float, default=30, help="seconds of training between scores (ours)")
    parser.add_argument("--snapshot-every-peers", type=float, default=120, help="the same for the peers")
    parser.add_argument("--experiment", help="a name: record the runs as an experiment (bench/results.md's table of "
                        "experiments) rather than as the time to quality")
    parser.add_argument("--recipe", nargs="*", help="train() arguments of ours to try, as name=value")
    parser.add_argument("--unet", nargs="*", help="UNet() arguments of ours to try, as name=value")
    args = parser.parse_args()

    ns = load(REFERENCE, extra=("helpers",))
    device = ns["get_device"]()
    results = bench_results.load()
    if not args.skip_speed:
        results["gpu" if device.type == "cuda" else "speed"] = speed(ns, device, args)
    if args.epoch:
        results["gpu_epoch" if device.type == "cuda" else "epoch"] = epoch_time(ns, device)
    if args.quality:
        args.models = ["ours"] if args.experiment else args.models
        precision_of = {n: m["precision"] for n, m in results["speed"]["models"].items()}
        args.precisions = sorted(args.precisions or results["speed"]["models"]["ours"]["train_images_per_s"],
                                 key=lambda p: p != precision_of["ours"])     # the faster one first
        runs = time_to_quality(ns, device, args, precision_of)
        if args.experiment:   # ours only, as changed by --recipe and --unet
            results.setdefault("experiments", {})[args.experiment] = runs["runs"]
        else:
            results["quality"] = runs
    bench_results.save(results)


if __name__ == "__main__":
    main()
