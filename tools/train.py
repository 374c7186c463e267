"""`make train`: train the reference model with solution.ipynb's own code and save it for skip_training.

Runs the notebook's setup, helper and graded cells (through the grader's loader), then the same call as the
notebook's training cell. Prints the loss every 100 steps and the total time.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from grader import REFERENCE, load  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--epochs", type=int, default=6)
parser.add_argument("--output", default="data/ddpm_mnist.pt")
parser.add_argument("--dataset", default="MNIST")
args = parser.parse_args()

ns = load(REFERENCE, extra=("helpers",))
device = ns["get_device"]()
use_bf16 = ns["bf16_supported"](device)
images, _ = ns["load_images"](train=True, dataset=args.dataset)
print(f"training on {device} (bfloat16 autocast: {use_bf16}) for {args.epochs} epochs, {torch.get_num_threads()} threads",
      flush=True)
torch.manual_seed(0)
start = time.time()
_, losses = ns["train"](ns["UNet"]().to(device), ns["Diffusion"]().to(device), images, epochs=args.epochs,
                        use_bf16=use_bf16, checkpoint_path=args.output, progress=sys.stderr.isatty())
minutes = (time.time() - start) / 60
print(f"trained {len(losses)} steps in {minutes:.1f} min; final loss (mean of the last 200 steps) "
      f"{np.mean(losses[-200:]):.4f}; saved {args.output}", flush=True)
