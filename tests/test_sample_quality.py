"""Sample statistics of the submitted trained model, regenerated from its weights with a fixed seed.

The submission's UNet class is rebuilt from its checkpoint (data/ddpm_mnist.pt next to the notebook, or
--checkpoint) and sampled with the grader's own sampler (grader/sampling.py), so this grades the training, not the
sampler; grader/quality.py judges the samples, the same code as the notebook's self-check. First the model must
predict the noise added to real test digits (L_simple): the samples of a model that cannot (one that steers the
sampler onto digits stored in its weights) are not graded.
"""
import functools
from pathlib import Path

import pytest
import torch

from grader import quality, sampling
from grader.cells import REFERENCE, SubmissionError, namespace

PART = "sample_quality"   # its own part, with the notebook's U-Net cell (the model is rebuilt with it)
CPU_SECONDS = 600         # sampling is the longest check: 256 digits x 20 steps take about 20 s of one core


@functools.lru_cache(maxsize=None)
def statistics(notebook, checkpoint, kind):
    device = torch.device("cuda" if kind == "gpu" else "cpu")
    path = sampling.checkpoint_of(notebook, checkpoint)
    try:
        model = sampling.load_model(namespace(notebook, "unet"), path, device)
    except SubmissionError:   # perhaps the U-Net uses a helper of an earlier cell: try with the notebook's own
        model = sampling.load_model(namespace(notebook, "unet", own_earlier=True), path, device)
    return sampling.measure(model, device, kind)


_failed = {}  # a model that could not be loaded or sampled in time is tried once, not once per check


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def verdict(request):   # per check, so that the sampling runs under the check's CPU limit; statistics() is cached
    key = (str(Path(request.config.getoption("--notebook") or REFERENCE).resolve()),
           request.config.getoption("--checkpoint"), request.param)
    if key not in _failed:
        try:
            stats = statistics(*key)
            request.node.user_properties.append(("measured", stats))
            return quality.judge(stats, request.param)
        except SubmissionError as err:
            _failed[key] = str(err)
        except pytest.fail.Exception:
            _failed[key] = "Sampling your model did not finish in time: is there an endless loop?"
            raise
    return dict.fromkeys(quality.CHECKS, _failed[key])


def test_model_predicts_the_noise_of_real_digits(verdict):
    """Your trained model predicts the noise added to real test digits (L_simple, eq. 14)."""
    assert not verdict["denoising_loss"], verdict["denoising_loss"]


def test_samples_are_confident_digits(verdict):
    """Your trained model's samples look like digits to a digit classifier."""
    assert not verdict["confidence"], verdict["confidence"]


def test_samples_cover_all_digits(verdict):
    """Your samples cover all ten digits (no digit above 30 %)."""
    assert not verdict["coverage"], verdict["coverage"]


def test_samples_match_the_data(verdict):
    """Your samples' Frechet distance to real test digits is small enough."""
    assert not verdict["fid"], verdict["fid"]
