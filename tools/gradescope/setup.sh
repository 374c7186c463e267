#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder's image (Ubuntu, as root, with internet).
# It installs Python, bubblewrap (the grader's sandbox) and the course's pinned packages, CPU builds of torch.
set -euo pipefail
apt-get update -qq
apt-get install -y -qq python3 python3-venv python3-pip bubblewrap
# The pinned packages need Python 3.11 or newer: choose a base image that has it (Ubuntu 24.04: Python 3.12).
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "ERROR: this base image's python3 is $(python3 --version 2>&1); the autograder needs 3.11 or newer." \
         "Choose the Ubuntu 24.04 base image in the autograder's settings." >&2; exit 1; }
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install --quiet --upgrade pip
/autograder/venv/bin/pip install --quiet --extra-index-url https://download.pytorch.org/whl/cpu \
    -r /autograder/source/requirements.txt
