"""The project's commands (`make train`, `make bench`, ...), run as `python -m tools.<name>` from the repository root."""
