"""bench/results.json and bench/results.md: the figures of `make bench` (tools/bench.py) and of the notebook's
experiments (tools/experiments.py). Each tool updates its own keys; results.md is rendered from all of them.
"""
import json
import statistics
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


def runs(results, model="ours", precision=None, key="quality"):
    "The time-to-quality runs of `model` (in `precision`; default: the faster one of the speed benchmark)."
    precision = precision or results["speed"]["models"][model]["precision"]
    return [r for r in results[key]["runs"] if r["model"] == model and r["precision"] == precision]


def pass_steps(results, round_to=500):
    """The training steps after which every later scored snapshot of our model passes the grader's check with margin
    (quality.with_margin), worst over the seeds, rounded up to round_to: the notebook's PASS_STEPS."""
    worst = 0
    for run in runs(results):
        rows = run["snapshots"]
        good = [r["passes"] and quality.with_margin(r["fid_256"]) for r in rows]
        worst = max(worst, rows[next(i for i in range(len(rows)) if all(good[i:]))]["step"])
    return -(-worst // round_to) * round_to


def recipe_figures(results):
    """What the notebook and README say of the recipe's speed, per precision: steps/s (median over the seeds), the
    worst seed's minutes and steps to pass; PASS_STEPS and the minutes it takes in each precision."""
    out = {"pass_steps": pass_steps(results)}
    for precision in results["speed"]["models"]["ours"]["train_images_per_s"]:
        rs = runs(results, precision=precision)
        if not rs:
            continue
        passed = [r for r in rs if r["minutes_to_pass"] is not None]
        out[precision] = {"steps_per_s": statistics.median(r["steps_per_s"] for r in rs),
                          "minutes_to_pass": max(r["minutes_to_pass"] for r in passed) if len(passed) == len(rs) else None,
                          "steps_to_pass": max(r["steps_to_pass"] for r in passed) if passed else None}
        out[precision]["minutes_to_pass_steps"] = out["pass_steps"] / out[precision]["steps_per_s"] / 60
    return out


def run_table(rs, changes=False):
    "One row per time-to-quality run: its speed, when it first passed, and its last score."
    head = "| experiment | changes |" if changes else "| model |"
    lines = [head + " precision | seed | steps/s | images/s | minutes to pass (step) | last score: minutes, FID (256) |",
             "|---|" + ("---|" if changes else "") + "---|---|---|---|---|---|"]
    for r in rs:
        last = r["snapshots"][-1] if r["snapshots"] else None
        passed = (f"{r['minutes_to_pass']:.1f} ({r['steps_to_pass']:,})" if r["minutes_to_pass"] is not None
                  else f"not within {r['minutes_budget']:g}")
        change = ", ".join(f"{k}={v}" for k, v in {**r["recipe"], **r["unet"]}.items()) or "none"
        lines.append(f"| {r['model']} |" + (f" {change} |" if changes else "") + f" {r['precision']} | {r['seed']} | "
                     f"{r['steps_per_s']:.1f} | {r['images_per_s']:.0f} | {passed} | "
                     + (f"{last['minutes']:.1f}, {last['fid_256']:.1f} |" if last else "- |"))
    return lines


def fmt(r, digits=1):
    return f"{r['median']:.{digits}f} ({r['min']:.{digits}f}-{r['max']:.{digits}f})"


def markdown(results):
    lines = ["# Benchmark: the notebook's U-Net against diffusers' UNet2DModel", "",
             "Written by `make bench` (`tools/bench.py`, `tools/experiments.py`); medians over repeated runs, range in brackets."]
    s = results.get("speed")
    if s:
        names = list(s["models"])
        ms = [s["models"][n] for n in names]
        row = lambda label, cells: f"| {label} | " + " | ".join(cells) + " |"
        lines += ["", f"Device: {s['device']}, {s['threads']} threads, torch {s['torch']}. Matmul ceiling (2048x2048): "
                  + ", ".join(f"{p} {fmt(v, 0)} GFLOP/s" for p, v in s["ceiling_gflops"].items()) + ". Training at "
                  "batch 128; a peer's cell ends with how many times faster ours is.", "",
                  row("", names), "|---|" + "---|" * len(names),
                  row("parameters", [f"{m['parameters']:,}" for m in ms]),
                  row("forward GFLOPs per image", [f"{m['forward_gflops_per_image']:.3f}" for m in ms])]
        ratio = lambda n, key: f" (ours {s['ratios'][n][key]:.2f}x)" if n != "ours" else ""
        for p in ms[0]["train_images_per_s"]:
            lines.append(row(f"training images/s, {p}", [fmt(m["train_images_per_s"][p]) + ratio(n, "train_" + p)
                                                         for n, m in zip(names, ms)]))
            lines.append(row(f"achieved GFLOP/s, {p}", [f"{m['train_gflops_per_s'][p]:.0f}" for m in ms]))
        lines += [row("faster precision", [m["precision"] + ratio(n, "train_best_vs_best") for n, m in zip(names, ms)]),
                  row("sampling 64 images x 1000 steps, s (faster precision)",
                      [fmt(m["sampling_64x1000_s"]) + ratio(n, "sampling") for n, m in zip(names, ms)])]
        if "sampling_64x1000_full_s" in ms[0]:
            lines.append(row("the same, one whole 1000-step run, s", [f"{ms[0]['sampling_64x1000_full_s']:.1f}"] + [""] * (len(names) - 1)))
    q = results.get("quality")
    if q:
        lines += ["", "## Time to quality", "",
                  f"Each run trains with the notebook's recipe (its train() and defaults) and is scored at regular "
                  f"times of training, off the clock, as the grader scores a submission. Pass: {q['pass']} on 256 "
                  f"samples (20-step DDIM). Good: Frechet distance on 1,024 samples <= {q['good_fid_1024']:.1f}, twice "
                  f"that of 1,024 real training digits ({q['fid_1024_real_training_digits']:.1f}). Runs that are "
                  "not timed for their last score stop at their first pass.", ""]
        lines += run_table(q["runs"])
        lines += ["", "| model | precision | seed | minutes | step | confidence | max class | FID (256) | FID (1,024) | grader |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for run in q["runs"]:
            for r in run["snapshots"]:
                fid = f"{r['fid_1024']:.1f}" if "fid_1024" in r else "-"
                lines.append(f"| {run['model']} | {run['precision']} | {run['seed']} | {r['minutes']:.1f} | {r['step']} | "
                             f"{r['confidence']:.3f} | {r['max_class_fraction']:.3f} | {r['fid_256']:.1f} | {fid} | "
                             f"{'pass' if r['passes'] else 'fail'} |")
    experiments = results.get("experiments")
    if experiments:
        lines += ["", "## Experiments on the recipe and the architecture", "",
                  "`python -m tools.bench --quality --skip-speed --experiment NAME --recipe ... --unet ...`: our U-Net "
                  "with one change, scored as above. The recipe in use is the row without changes."
                  + (" " + results["experiments_note"] if results.get("experiments_note") else ""), ""]
        lines += run_table([{**r, "model": name} for name, rs in experiments.items() for r in rs], changes=True)
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


