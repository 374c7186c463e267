"""How a trained model's samples are judged: the one home of the sample-quality test, its thresholds and its rule.

The grader (tests/test_sample_quality.py, with grader/sampling.py drawing the samples) and the notebook's self-check
(students receive this file with the assignment) run this same code, so a student knows before submitting whether
the check passes. Nothing here is a solution: the samples come from elsewhere.

* An evaluation classifier trained on MNIST (tools/train_classifier.py, data/mnist_classifier.pt): its confidence
  and class histogram on the samples, and the Frechet distance between its features of the samples and of the
  10,000 MNIST test digits (their Gaussian is stored in data/mnist_test_gaussian.pt).
* The denoising loss: L_simple of the model on real test digits, which a model must pass before its samples count.
* THRESHOLDS and judge(), the pass rule; the calibration behind the numbers is grader/calibration.md
  (tools/calibrate.py writes it).
"""
import gzip
import os
import struct
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

CLASSIFIER = Path(__file__).resolve().parent.parent / "data" / "mnist_classifier.pt"
TEST_GAUSSIAN = CLASSIFIER.with_name("mnist_test_gaussian.pt")

# The test: `n` samples of `steps` DDIM steps (on a CPU; on a GPU, the 1000-step sampler of Algorithm 2), and the
# first `n` MNIST test digits for the denoising loss. The numbers are calibrated in grader/calibration.md.
SETTINGS = {"cpu": {"n": 256, "steps": 20}, "gpu": {"n": 2000, "steps": 1000}}
THRESHOLDS = {"denoising_loss": 0.1, "confidence": 0.80, "max_class_fraction": 0.30, "fid": {"cpu": 100.0, "gpu": 100.0}}
MARGIN = 0.8   # the self-check calls a pass "with margin" when the Frechet distance is at most MARGIN x its threshold


class Classifier(nn.Module):
    """A small CNN for 28x28 digits in [-1, 1]; `features` is its 128-dimensional penultimate layer."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),            # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),           # (B, 64, 7, 7)
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 7 * 7, 128), nn.ReLU())  # (B, 128)
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(128, 10))

    def forward(self, x):
        return self.head(self.features(x))


def load_mnist(train, download=False):
    """MNIST from DDPM_DATA_ROOT as images (N, 1, 28, 28) in [-1, 1] and labels (N,), scaled like the notebook's.

    Reads torchvision's raw files (MNIST/raw/*-ubyte, or their .gz) itself, so that the test set alone will do."""
    raw = Path(os.environ.get("DDPM_DATA_ROOT", "data")) / "MNIST" / "raw"
    prefix = "train" if train else "t10k"
    if download and not (raw / f"{prefix}-images-idx3-ubyte").exists():
        import torchvision
        torchvision.datasets.MNIST(raw.parent.parent, train=train, download=True)
    images, labels = (_idx(raw / f"{prefix}-{name}") for name in ("images-idx3-ubyte", "labels-idx1-ubyte"))
    return images.unsqueeze(1).float() / 127.5 - 1.0, labels.long()


def _idx(path):
    """An IDX file (MNIST's format: a magic number whose last byte is the number of dimensions, the dimensions as
    big-endian 32-bit integers, then unsigned bytes) as a uint8 tensor, from the file or its .gz."""
    if path.exists():
        data = path.read_bytes()
    elif path.with_name(path.name + ".gz").exists():
        data = gzip.decompress(path.with_name(path.name + ".gz").read_bytes())
    else:
        raise FileNotFoundError(f"MNIST is not in {path.parent} ({path.name} is missing): run `make data`.")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).reshape(shape)


def load_classifier(path=CLASSIFIER):
    model = Classifier()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


@torch.no_grad()
def embed(classifier, images, batch_size=1000):
    """Features (N, 128) and class probabilities (N, 10) of images (N, 1, 28, 28) in [-1, 1]."""
    feats, probs = [], []
    for x in images.float().clamp(-1, 1).split(batch_size):
        f = classifier.features(x)
        feats.append(f.double())
        probs.append(F.softmax(classifier.head(f), dim=1))
    return torch.cat(feats), torch.cat(probs)


def gaussian(features):
    """The mean (D,) and covariance (D, D) of features (N, D), in float64."""
    features = features.double()
    return features.mean(0), torch.cov(features.T)


def test_gaussian(classifier):
    """The Gaussian of the classifier's features of the 10,000 MNIST test digits (reads the data set)."""
    return gaussian(embed(classifier, load_mnist(train=False)[0])[0])


def save_test_gaussian(classifier, path=TEST_GAUSSIAN):
    mean, covariance = test_gaussian(classifier)
    torch.save({"mean": mean, "covariance": covariance}, path)


def load_test_gaussian(path=TEST_GAUSSIAN):
    stored = torch.load(path, map_location="cpu", weights_only=True)
    return stored["mean"], stored["covariance"]


def frechet_distance(a, b):
    """Frechet distance between Gaussians: |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2).

    a, b: features (N, D), each fitted with a Gaussian, or a Gaussian (mean, covariance) itself."""
    (mu_a, s_a), (mu_b, s_b) = (x if isinstance(x, tuple) else gaussian(x) for x in (a, b))
    vals, vecs = torch.linalg.eigh(s_a)
    root_a = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp(min=0).sqrt().sum()   # Tr (S_a S_b)^1/2
    return ((mu_a - mu_b).pow(2).sum() + s_a.trace() + s_b.trace() - 2 * cross).item()


def statistics(classifier, samples, reference):
    """Mean confidence, class histogram (fractions) and Frechet distance of generated samples."""
    feats, probs = embed(classifier, samples)
    confidence, labels = probs.max(dim=1)
    histogram = torch.bincount(labels, minlength=10).double() / len(labels)
    return {"confidence": confidence.mean().item(), "histogram": histogram.tolist(),
            "max_class_fraction": histogram.max().item(), "fid": frechet_distance(feats, reference)}


def denoising_loss(model, noisy, x0, device="cpu", seed=0, num_timesteps=1000):
    """L_simple (eq. 14) of `model` on clean images x0 (N, 1, 28, 28), each with its own seeded t and noise.

    noisy(x0, t, noise) is the forward process q(x_t | x_0) (eq. 4). A trained denoiser predicts the noise well; a
    model that only reproduces digits stored in its weights cannot."""
    g = torch.Generator().manual_seed(seed)
    t, noise = torch.randint(0, num_timesteps, (len(x0),), generator=g), torch.randn(x0.shape, generator=g)
    x_t = noisy(x0, t, noise).float()
    with torch.no_grad():
        prediction = model(x_t.to(device), t.to(device))
    if not isinstance(prediction, torch.Tensor) or prediction.shape != noise.shape:
        return float("inf")
    return (prediction.float().cpu() - noise).pow(2).mean().item()


def measure(samples, denoising_loss):
    """The figures judge() rules on: the samples' statistics (samples: (N, 1, 28, 28) in [-1, 1]) and the loss."""
    return {**statistics(load_classifier(), samples, load_test_gaussian()), "denoising_loss": denoising_loss}


CHECKS = ("denoising_loss", "confidence", "coverage", "fid")


def judge(stats, kind="cpu"):
    """The pass rule: {check: None if it passes, else what failed, with the figures, in words for the student}.

    A model that does not predict the noise of real digits fails every check: its samples say nothing of training."""
    th = THRESHOLDS
    if not stats["denoising_loss"] <= th["denoising_loss"]:
        why = (f"your model's L_simple on real test digits is {stats['denoising_loss']:.3f}, above "
               f"{th['denoising_loss']}: it does not predict the noise added to real digits, so its samples are not "
               "graded. Train longer, or check the loss.")
        return dict.fromkeys(CHECKS, why)
    verdict = dict.fromkeys(CHECKS)
    if not stats["confidence"] >= th["confidence"]:
        verdict["confidence"] = (f"a digit classifier's mean confidence on your samples is {stats['confidence']:.2f}, "
                                 f"below {th['confidence']:.2f}: they do not look enough like digits yet. Train longer.")
    if not stats["max_class_fraction"] <= th["max_class_fraction"]:
        verdict["coverage"] = (f"{stats['max_class_fraction']:.0%} of your samples are one digit (at most "
                               f"{th['max_class_fraction']:.0%}): they do not cover all ten digits (mode collapse?).")
    if not stats["fid"] <= th["fid"][kind]:
        verdict["fid"] = (f"the Frechet distance between your samples and real digits is {stats['fid']:.0f}, above "
                          f"{th['fid'][kind]:.0f}. Train longer, or check the loss.")
    return verdict


def passes(stats, kind="cpu"):
    return not any(judge(stats, kind).values())


def with_margin(fid, kind="cpu"):
    """Whether a Frechet distance passes with margin: at most MARGIN x its threshold."""
    return fid <= MARGIN * THRESHOLDS["fid"][kind]


def report(stats, kind="cpu"):
    """The self-check's verdict in words: the figures against the thresholds, and pass or train longer."""
    th, fid_max = THRESHOLDS, THRESHOLDS["fid"][kind]
    lines = [f"  L_simple on {SETTINGS[kind]['n']} test digits  {stats['denoising_loss']:8.3f}   (at most {th['denoising_loss']})",
             f"  classifier confidence        {stats['confidence']:8.2f}   (at least {th['confidence']:.2f})",
             f"  largest digit class          {stats['max_class_fraction']:8.0%}   (at most {th['max_class_fraction']:.0%})",
             f"  Frechet distance             {stats['fid']:8.1f}   (at most {fid_max:.0f}; with margin: "
             f"{MARGIN * fid_max:.0f})"]
    failed = [why for why in dict.fromkeys(judge(stats, kind).values()) if why]
    if failed:
        lines += ["NOT YET: the grader's sample-quality check would fail: " + " ".join(failed)]
    elif not with_margin(stats["fid"], kind):
        lines += ["PASSES, narrowly: the grader draws its own samples, which can land on the other side of the "
                  "threshold. Train longer (resume training) to be safe."]
    else:
        lines += ["PASSES with margin: the grader's sample-quality check should pass."]
    return "\n".join(lines)
