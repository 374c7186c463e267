"""`make train`: train the reference model with solution.ipynb's own code and save it for skip_training.

Runs the notebook's setup, helper and graded cells (through the grader's loader), then the notebook's `train`.
`--snapshot-every S` also saves the averaged (EMA) weights every S seconds of training time, and `--minutes M`
stops after M minutes of training: `make bench QUALITY=1` uses both to measure the time to good samples.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from grader import REFERENCE, load  # noqa: E402


class DiffusersUNet(torch.nn.Module):
    """Hugging Face diffusers' UNet2DModel sized the way its MNIST examples do, behind our model(x_t, t) contract."""

    def __init__(self):
        super().__init__()
        from diffusers import UNet2DModel
        self.config = {}
        self.net = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64),
                               layers_per_block=2, down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                               up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"))

    def forward(self, x, t):
        return self.net(x, t).sample


def build(name, ns):
    "A fresh, randomly initialised model: 'ours' (the notebook's UNet) or 'diffusers'."
    return ns["UNet"]() if name == "ours" else DiffusersUNet()


class Budget(Exception):
    "Raised from inside the training loop when the time budget is spent."


def run(ns, model, images, use_bf16, epochs, minutes=None, snapshot_every=None, snapshot_dir=None, output=None,
        progress=False, loss_fn=None):
    """The notebook's train(), with snapshots of the EMA weights and a time budget; returns (ema_model, log).

    loss_fn is passed on to train() (the notebook's diffusion_loss if None); the losses are recorded either way.

    Training time counts the training steps only, not the saving of snapshots. The snapshots hook into the EMA
    update that train() makes after every optimizer step, so the training loop itself is the notebook's, unchanged.
    """
    budget = minutes * 60 if minutes else None
    log = {"snapshots": [], "steps": 0, "seconds": 0.0}
    snapshot_dir = Path(snapshot_dir) if snapshot_dir else None
    if snapshot_dir:
        snapshot_dir.mkdir(parents=True, exist_ok=True)
    base = ns["EMA"]

    class SnapshotEMA(base):
        def __init__(self, model, decay=0.999):
            super().__init__(model, decay)
            self.start, self.paused, self.next = time.perf_counter(), 0.0, snapshot_every
            log["ema"] = self

        def update(self, model):
            super().update(model)
            seconds = time.perf_counter() - self.start - self.paused
            log["steps"], log["seconds"] = self.num_updates, seconds
            over = budget is not None and seconds >= budget
            if snapshot_dir and (over or (self.next and seconds >= self.next)):
                pause = time.perf_counter()
                save(self.model, self.num_updates, seconds)
                self.paused += time.perf_counter() - pause
                while self.next and self.next <= seconds:
                    self.next += snapshot_every
            if over:
                raise Budget

    def save(ema_model, step, seconds):
        path = snapshot_dir / f"step{step:06d}.pt"
        torch.save({"state_dict": ema_model.state_dict(), "step": step, "minutes": seconds / 60}, path)
        log["snapshots"].append({"path": str(path), "step": step, "minutes": seconds / 60})
        print(f"  snapshot at step {step} after {seconds / 60:.1f} min of training", flush=True)

    inner = loss_fn or ns["diffusion_loss"]

    def recorded_loss(*args, **kwargs):   # the losses of a run that the budget stops, which train() can't return
        loss = inner(*args, **kwargs)
        log["losses"].append(loss.item())
        return loss

    train_globals, log["losses"] = ns["train"].__globals__, []
    train_globals["EMA"] = SnapshotEMA
    try:
        ema_model, _ = ns["train"](model, ns["Diffusion"]().to(next(model.parameters()).device), images,
                                   epochs=epochs, use_bf16=use_bf16, progress=progress, loss_fn=recorded_loss)
    except Budget:
        ema_model = log["ema"].model
    finally:
        train_globals["EMA"] = base
    if snapshot_dir and (not log["snapshots"] or log["snapshots"][-1]["step"] != log["steps"]):
        save(ema_model, log["steps"], log["seconds"])
    if output:
        ns["save_checkpoint"](ema_model, output, log["losses"])
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

    args.output = args.output or ("data/ddpm_mnist_cond.pt" if args.conditional else "data/ddpm_mnist.pt")

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
