"""The seven CCA evaluation tasks, as data.

A task is a small frozen record: which dataset config it reads, how a document becomes a prompt and a
target, whether it is scored by greedy generation or by the log-likelihood of letter choices, and which
metrics it reports. One engine (engine.py) runs every task; adding a task is `register_task(Task(...))`.

Prompt strings follow the original v0.3 task file (see original-system.md §3):
- generative: "Question: {question} Answer:" with target " {answer}", greedy until "\n";
- multiple choice (hendrycks-test style): "{question}\nA. c1\nB. c2\nC. c3\nD. c4\nAnswer:" with target
  " {letter}" and the description "The following are multiple choice questions (with answers).".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from factlearn.data.schema import EVAL_CONFIGS, MC_CONFIGS
from factlearn.errors import UserError

GENERATE = "generate"
MULTIPLE_CHOICE = "multiple_choice"
MC_DESCRIPTION = "The following are multiple choice questions (with answers)."
LETTERS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Task:
    """One evaluation task. Everything the engine needs is here; the engine has no per-task code.

    `prompt_format` / `target_format` are str.format templates over the document's fields plus two
    derived ones: `choice_lines` ("A. c1\\nB. c2\\n...", MC only) and `label` (the gold letter, MC only).
    """

    name: str
    config: str  # key of the dataset dict (a CCA config name)
    kind: Literal["generate", "multiple_choice"]
    prompt_format: str
    target_format: str
    metrics: tuple[str, ...]
    split: str = "test"
    description: str = ""
    stop: str = "\n"
    max_new_tokens: int = 50
    choice_labels: tuple[str, ...] = LETTERS
    fields: tuple[str, ...] = field(default=("question", "answer"))
    short_name: str = ""  # column title in tables and plots; the task name when empty

    @property
    def headline_metric(self) -> str:
        """The metric a table shows for this task and an ablation tracks: the first of `metrics`."""
        return self.metrics[0]

    @property
    def title(self) -> str:
        return self.short_name or self.name

    def _values(self, doc: dict) -> dict:
        values = dict(doc)
        if self.kind == MULTIPLE_CHOICE:
            choices = list(doc["choices"])
            if len(choices) != len(self.choice_labels):
                raise UserError(f"task {self.name}: a document has {len(choices)} choices but the task expects "
                                f"{len(self.choice_labels)}; check the dataset's `choices` column")
            values["choice_lines"] = "".join(f"{lab}. {c}\n" for lab, c in zip(self.choice_labels, choices))
            values["label"] = self.choice_labels[int(doc["answer"])]
        # hendrycks-style: surrounding white space of the question is not part of the prompt.
        if isinstance(values.get("question"), str):
            values["question"] = values["question"].strip()
        return values

    def doc_to_text(self, doc: dict) -> str:
        """The prompt for one document (without any few-shot context)."""
        return self.prompt_format.format(**self._values(doc))

    def doc_to_target(self, doc: dict) -> str:
        """The gold continuation, as written after the prompt in few-shot examples."""
        return self.target_format.format(**self._values(doc))

    def gold(self, doc: dict) -> str:
        """The gold answer as compared with a prediction: the answer text, or the gold letter for MC."""
        return self._values(doc)["label"] if self.kind == MULTIPLE_CHOICE else str(doc["answer"])

    def continuations(self) -> list[str]:
        """MC only: the strings scored by log-likelihood (" A" ... " D")."""
        return [" " + lab for lab in self.choice_labels]


def generative_task(config: str, short_name: str = "") -> Task:
    return Task(name=config, config=config, kind=GENERATE, prompt_format="Question: {question} Answer:",
                target_format=" {answer}", metrics=("exact_match", "f1"), short_name=short_name)


def multiple_choice_task(config: str, short_name: str = "") -> Task:
    return Task(name=config, config=config, kind=MULTIPLE_CHOICE, description=MC_DESCRIPTION,
                prompt_format="{question}\n{choice_lines}Answer:", target_format=" {label}",
                metrics=("acc", "acc_norm"), fields=("question", "choices", "answer"), short_name=short_name)


# The seven CCA eval configs are the built-in tasks; the data schema is their single source.
ALL_TASKS: tuple[str, ...] = EVAL_CONFIGS
_MC = set(MC_CONFIGS)

SHORT_NAMES = {"Eval_QA": "QA", "Eval_multiple_choice": "MC", "Eval_reverse": "Reverse",
               "Eval_indirect_reasoning": "Indirect", "Eval_2hop_reasoning": "2-hop MC",
               "Eval_2hop_reasoning_raw": "2-hop", "Eval_animal_commonsense": "Commonsense"}

TASKS: dict[str, Task] = {
    name: (multiple_choice_task if name in _MC else generative_task)(name, SHORT_NAMES.get(name, ""))
    for name in ALL_TASKS
}


def register_task(task: Task, overwrite: bool = False) -> Task:
    """Add a task to the registry so evaluate(), the CLI and the lm-eval export all see it."""
    if task.kind not in (GENERATE, MULTIPLE_CHOICE):
        raise UserError(f"task {task.name}: kind must be '{GENERATE}' or '{MULTIPLE_CHOICE}', not '{task.kind}'")
    if task.name in TASKS and not overwrite:
        raise UserError(f"task {task.name} is already registered; pick another name or pass overwrite=True")
    TASKS[task.name] = task
    return task


def get_tasks(names: list[str] | str | None) -> list[Task]:
    """Tasks by name (None -> the seven CCA tasks); an unknown name is a UserError listing valid ones."""
    if names is None:
        names = list(ALL_TASKS)
    elif isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise UserError(f"no task given; choose from: {', '.join(TASKS)}")
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise UserError(f"unknown task(s) {', '.join(unknown)}; valid tasks: {', '.join(TASKS)}")
    return [TASKS[n] for n in dict.fromkeys(names)]
