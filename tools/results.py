"""bench/results.json and bench/results.md: the figures of `make bench` (tools/bench.py) and of the notebook's
experiments (tools/experiments.py). Each tool updates its own keys; results.md is rendered from all of them.
"""
import json
from pathlib import Path

from grader import quality

OUT = Path(__file__).resolve().parent.parent / "bench"


def load():
    path = OUT / "results.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save(results):
    OUT.mkdir(exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (OUT / "results.md").write_text(markdown(results))
    print(markdown(results))


def pass_steps(results, round_to=500):
    """The training steps after which every later snapshot of our model passes the grader's check with margin
    (quality.with_margin), rounded up to round_to, and the minutes they took: the notebook's PASS_STEPS."""
    rows = results["quality"]["models"]["ours"]["snapshots"]
    good = [r["passes"] and quality.with_margin(r["fid_256"]) for r in rows]
    first = next(i for i in range(len(rows)) if all(good[i:]))
    return -(-rows[first]["step"] // round_to) * round_to, rows[first]["minutes"]


def fmt(r, digits=1):
    return f"{r['median']:.{digits}f} ({r['min']:.{digits}f}-{r['max']:.{digits}f})"


def markdown(results):
    lines = ["# Benchmark: the notebook's U-Net against diffusers' UNet2DModel", "",
             "Written by `make bench` (`tools/bench.py`, `tools/experiments.py`); medians over repeated runs, range in brackets."]
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
                  f"Pass: {q['pass']} on 256 samples (20-step DDIM). "
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


