"""Evaluation: the seven 5-shot CCA tasks (as data), one fast engine, and an lm-evaluation-harness export.

Light to import: torch and transformers are imported inside the functions that need them.
"""

from factlearn.evaluate.engine import EvalResult, evaluate
from factlearn.evaluate.results import results_table, save_results
from factlearn.evaluate.scoring import generate_until, score_choices, score_continuations
from factlearn.evaluate.fewshot import Prompt, build_prompts
from factlearn.evaluate.tasks import ALL_TASKS, TASKS, Task, get_tasks, register_task

__all__ = ["ALL_TASKS", "TASKS", "Task", "register_task", "get_tasks", "build_prompts", "Prompt", "evaluate",
           "EvalResult", "save_results", "results_table", "score_continuations", "score_choices", "generate_until"]
