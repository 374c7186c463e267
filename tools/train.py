"""`make train`: train the reference model with solution.ipynb's own code and save it for skip_training.

Runs the notebook's setup, helper and graded cells (through the grader's loader), then the notebook's `train`.
`--snapshot-every S` also saves the averaged (EMA) weights every S seconds of training time, and `--minutes M`
stops after M minutes of training: `make bench QUALITY=1` (tools/bench.py) uses both to measure the time to good samples.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from grader.cells import MODEL, REFERENCE, ROOT, load


def run(ns, model, images, use_bf16, epochs, minutes=None, snapshot_every=None, snapshot_dir=None, output=None,
        progress=False, loss_fn=None, on_snapshot=None, **recipe):
    """The notebook's train() with a time budget and snapshots of the EMA weights; returns (ema_model, log).

    The snapshots are taken through train()'s on_step callback every `snapshot_every` seconds of training (the
    time spent saving them does not count), and at the end of the run; the training loop is the notebook's.
    on_snapshot(ema_model, step, minutes), called at each snapshot time (also off the clock), may score the model
    and stop the run by returning True. `recipe`: more of train()'s arguments (batch_size, lr, ...)."""
    log = {"snapshots": [], "steps": 0, "seconds": 0.0}
    snapshot_dir = Path(snapshot_dir) if snapshot_dir else None
    if snapshot_dir:
        snapshot_dir.mkdir(parents=True, exist_ok=True)
    clock = {"start": time.perf_counter(), "paused": 0.0, "next": snapshot_every, "stopped": False}

    def save(ema_model, step, seconds):
        "Save and/or score the averaged weights after `step` steps; True stops the run."
        entry = {"step": step, "minutes": seconds / 60}
        if snapshot_dir:
            entry["path"] = str(snapshot_dir / f"step{step:06d}.pt")
            torch.save({"state_dict": ema_model.state_dict(), **entry}, entry["path"])
            print(f"  snapshot at step {step} after {seconds / 60:.1f} min of training", flush=True)
        log["snapshots"].append(entry)
        clock["stopped"] = bool(on_snapshot and on_snapshot(ema_model, step, seconds / 60))
        return clock["stopped"]

    def on_step(step, loss, ema_model):
        seconds = time.perf_counter() - clock["start"] - clock["paused"]
        log["steps"], log["seconds"] = step, seconds
        over = minutes is not None and seconds >= 60 * minutes
        if (snapshot_dir or on_snapshot) and clock["next"] and seconds >= clock["next"] and not over:
            pause = time.perf_counter()
            over = save(ema_model, step, seconds)
            clock["paused"] += time.perf_counter() - pause
            while clock["next"] <= seconds:
                clock["next"] += snapshot_every
        return over

    ema_model, log["losses"] = ns["train"](model, ns["Diffusion"]().to(next(model.parameters()).device), images,
                                           epochs=epochs, use_bf16=use_bf16, progress=progress, loss_fn=loss_fn,
                                           on_step=on_step, checkpoint_path=str(output) if output else None, **recipe)
    if (snapshot_dir or on_snapshot) and not clock["stopped"] and \
            (not log["snapshots"] or log["snapshots"][-1]["step"] != log["steps"]):
        save(ema_model, log["steps"], log["seconds"])
    return ema_model, log


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--minutes", type=float, help="stop after this much training time")
    parser.add_argument("--output", help="default: data/ddpm_mnist.pt, or data/ddpm_mnist_cond.pt with --conditional")
    parser.add_argument("--dataset", default="MNIST")
    parser.add_argument("--conditional", action="store_true",
                        help="a UNet with num_classes=10 and the notebook's conditional_loss (section 10)")
    parser.add_argument("--snapshot-every", type=float, help="seconds of training between EMA snapshots")
    parser.add_argument("--snapshot-dir", default="build/snapshots")
    args = parser.parse_args()

    args.output = args.output or str(ROOT / (Path("data", "ddpm_mnist_cond.pt") if args.conditional else MODEL))

    ns = load(REFERENCE, extra=("helpers", "guidance"))
    device = ns["get_device"]()
    use_bf16 = ns["bf16_supported"](device)
    images, labels = ns["load_images"](train=True, dataset=args.dataset)
    print(f"training on {device} (bfloat16 autocast: {use_bf16}) for {args.epochs} epochs, "
          f"{torch.get_num_threads()} threads", flush=True)
    torch.manual_seed(0)
    model, loss_fn = ns["UNet"](), None
    if args.conditional:
        model, loss_fn, images = ns["UNet"](num_classes=10), ns["conditional_loss"], ns["with_labels"](images, labels)
    start = time.time()
    _, log = run(ns, model.to(device), images, use_bf16, args.epochs, args.minutes, args.snapshot_every,
                 args.snapshot_dir if args.snapshot_every else None, args.output, progress=sys.stderr.isatty(),
                 loss_fn=loss_fn)
    losses = log["losses"] or [float("nan")]
    print(f"trained {log['steps']} steps in {(time.time() - start) / 60:.1f} min; final loss (mean of the last 200 "
          f"steps) {np.mean(losses[-200:]):.4f}; saved {args.output}", flush=True)


if __name__ == "__main__":
    main()
