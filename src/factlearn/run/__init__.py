"""`factlearn run`: plan the experiment grid into cells, run the unfinished ones, then write the report.

plan.py decides every cell (no weights loaded), cells.py stores them, execute.py runs one cell,
runner.py drives a whole plan with progress.py's display; the report files come from factlearn.report.
"""
