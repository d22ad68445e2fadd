"""The CCA evaluation tasks, as data: the original's seven and factlearn's two cloze forms.

A task is a small frozen record: which dataset config it reads, how a document becomes a prompt and a
target, whether it is scored by greedy generation or by the log-likelihood of letter choices, and which
metrics it reports. One engine (engine.py) runs every task; adding a task is `register_task(Task(...))`.

Prompt strings follow the original v0.3 task file (see original-system.md §3):
- generative: "Question: {question} Answer:" with target " {answer}", greedy until "\n";
- multiple choice (hendrycks-test style): "{question}\nA. c1\nB. c2\nC. c3\nD. c4\nAnswer:" with target
  " {letter}" and the description "The following are multiple choice questions (with answers).".

factlearn adds (never part of the original protocol) the cloze form of the two multiple-choice sets:
"Question: {question}\nAnswer:" with the gold choice's text as target, each choice scored as the
continuation " {choice}" (acc, and acc_norm = log-likelihood per character as in lm-eval 0.4). Small
models answer letter MC at chance even for facts they know; cloze scoring measures the knowledge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from factlearn.data.schema import CLOZE_CONFIGS, EVAL_CONFIGS, MC_CONFIGS, ORIGINAL_EVAL_CONFIGS
from factlearn.errors import UserError

GENERATE = "generate"
MULTIPLE_CHOICE = "multiple_choice"
CLOZE = "cloze"
CHOICE_KINDS = (MULTIPLE_CHOICE, CLOZE)  # scored by the log-likelihood of each choice
MC_DESCRIPTION = "The following are multiple choice questions (with answers)."
LETTERS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Task:
    """One evaluation task. Everything the engine needs is here; the engine has no per-task code.

    `prompt_format` / `target_format` are str.format templates over the document's fields plus derived
    ones: `choice_lines` ("A. c1\\nB. c2\\n...", MC only), `label` (the gold letter, MC only) and
    `gold_choice` (the gold choice's text, MC and cloze).
    """

    name: str
    config: str  # key of the dataset dict (a CCA config name)
    kind: Literal["generate", "multiple_choice", "cloze"]
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
        if self.kind in CHOICE_KINDS:
            values["gold_choice"] = list(doc["choices"])[int(doc["answer"])]
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
        """The gold answer as compared with a prediction: the answer text, the gold letter for MC, the
        gold choice's text for cloze."""
        if self.kind == MULTIPLE_CHOICE:
            return self._values(doc)["label"]
        if self.kind == CLOZE:
            return self._values(doc)["gold_choice"]
        return str(doc["answer"])

    def continuations(self) -> list[str]:
        """MC only: the strings scored by log-likelihood (" A" ... " D"), the same for every document."""
        return [" " + lab for lab in self.choice_labels]

    def choice_texts(self, doc: dict) -> list[str]:
        """What each choice is called in records and what acc_norm divides by: the letters for MC, the
        choice texts for cloze (lm-eval 0.4 normalises by the choice's length in characters)."""
        return list(self.choice_labels) if self.kind == MULTIPLE_CHOICE else [str(c) for c in doc["choices"]]

    def doc_continuations(self, doc: dict) -> list[str]:
        """The strings scored by log-likelihood after this document's context (" A"... or " {choice}")."""
        return [" " + text for text in self.choice_texts(doc)]


def generative_task(config: str, short_name: str = "") -> Task:
    return Task(name=config, config=config, kind=GENERATE, prompt_format="Question: {question} Answer:",
                target_format=" {answer}", metrics=("exact_match", "f1"), short_name=short_name)


def cloze_task(config: str, short_name: str = "") -> Task:
    """factlearn's addition: choices scored as text continuations, gold text as the few-shot target."""
    return Task(name=config, config=config, kind=CLOZE, prompt_format="Question: {question}\nAnswer:",
                target_format=" {gold_choice}", metrics=("acc", "acc_norm"), fields=("question", "choices", "answer"),
                short_name=short_name)


def multiple_choice_task(config: str, short_name: str = "") -> Task:
    return Task(name=config, config=config, kind=MULTIPLE_CHOICE, description=MC_DESCRIPTION,
                prompt_format="{question}\n{choice_lines}Answer:", target_format=" {label}",
                metrics=("acc", "acc_norm"), fields=("question", "choices", "answer"), short_name=short_name)


# The CCA eval configs are the built-in tasks; the data schema is their single source.
ALL_TASKS: tuple[str, ...] = EVAL_CONFIGS
ORIGINAL_TASKS: tuple[str, ...] = ORIGINAL_EVAL_CONFIGS

SHORT_NAMES = {"Eval_QA": "QA", "Eval_multiple_choice": "MC", "Eval_reverse": "Reverse",
               "Eval_indirect_reasoning": "Indirect", "Eval_2hop_reasoning": "2-hop MC",
               "Eval_2hop_reasoning_raw": "2-hop", "Eval_animal_commonsense": "Commonsense",
               "Eval_multiple_choice_cloze": "MC cloze", "Eval_2hop_reasoning_cloze": "2-hop cloze",
               "Eval_indirect_reasoning_cloze": "Indirect cloze", "Eval_reverse_cloze": "Reverse cloze"}


def _builtin(name: str) -> Task:
    make = multiple_choice_task if name in MC_CONFIGS else cloze_task if name in CLOZE_CONFIGS else generative_task
    return make(name, SHORT_NAMES.get(name, ""))


TASKS: dict[str, Task] = {name: _builtin(name) for name in ALL_TASKS}


def register_task(task: Task, overwrite: bool = False) -> Task:
    """Add a task to the registry so evaluate(), the CLI and the lm-eval export all see it."""
    if task.kind not in (GENERATE, *CHOICE_KINDS):
        raise UserError(f"task {task.name}: kind must be '{GENERATE}', '{MULTIPLE_CHOICE}' or '{CLOZE}', "
                        f"not '{task.kind}'")
    if task.name in TASKS and not overwrite:
        raise UserError(f"task {task.name} is already registered; pick another name or pass overwrite=True")
    TASKS[task.name] = task
    return task


def get_tasks(names: list[str] | str | None) -> list[Task]:
    """Tasks by name (None -> every built-in task); an unknown name is a UserError listing valid ones."""
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
