"""The grader's library: what the checks (tests/) and the tools (tools/) both import. See README.md and docs/grader.md."""
__version__ = "2026.12.0"   # recorded with every grade (runner.version() adds a digest of the grading files)
