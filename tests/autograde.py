"""Only an nbgrader_config.py from an older release of this assignment imports this module: it looked for the grader
in tests/. Stop nbgrader with what to do (SystemExit is the one error nbgrader's configuration loader lets through;
any other would be logged and nbgrader would run the submissions in a kernel with its default steps)."""
raise SystemExit("ERROR: this course's nbgrader_config.py is from an older release of the DDPM assignment (it looks "
                 "for the grader in tests/). Replace it with the repository's nbgrader_config.py, or make a new course "
                 "folder with `make course COURSE=folder` (README: For instructors).")
