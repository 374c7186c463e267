#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder's image (Ubuntu, as root, with internet).
# It installs Python, bubblewrap (the grader's sandbox) and the course's pinned packages, CPU builds of torch.
set -euo pipefail
apt-get update -qq
apt-get install -y -qq python3 python3-venv python3-pip bubblewrap
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install --quiet --upgrade pip
/autograder/venv/bin/pip install --quiet --extra-index-url https://download.pytorch.org/whl/cpu \
    -r /autograder/source/requirements.txt
