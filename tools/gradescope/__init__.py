"""`make gradescope`: the autograder zip for Gradescope (build.py) and the scripts it runs there."""
