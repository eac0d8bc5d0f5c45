"""The course's plumbing: no lesson teaches what is in this package; you need not read
it.

Lessons import only dl_utils, which re-exports what they need from here. Nothing in
this package imports dl_utils or a lesson: the arrows point one way, lessons -> dl_utils
-> _course. Each module starts with what it is for and which lessons rely on it:
    files        paths, FriendlyError, MNIST's files checked, atomic writes (all)
    cli          command lines, printed tables, run_main, Ctrl-C (all)
    figures      PNG figures without a screen (all that draw)
    stats        Wilson and t intervals, Bonferroni, verdict words (3-10)
    images       image files read safely, folders of them (4, 8, 9)
    checkpoints  training states checked before a resume (3, 6, 10); the course's
                 saved models side by side (11, 12)
    checks       hand-written code against PyTorch's: differences, a match table
                 (11, 12)
    launch       torchrun, the machine's limits (10)
    serving      uvicorn, the request guard and deadline, a client (9)
"""
