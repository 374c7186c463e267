"""The grader's library: what the checks (tests/) and the tools (tools/) both import. See README, "Layout"."""
