"""The Country-city-animals (CCA) schema: config names, splits, columns and their types.

Everything that reads or writes CCA data agrees on this one table, so data made by factlearn loads in
code written for the original hub dataset (`xiaozeroone/Country-city-animals`) and vice versa.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from factlearn.errors import UserError

if TYPE_CHECKING:  # datasets is heavy; import it only where a function needs it
    import datasets

# The two relations, as written in Facts.relation.
RELATION_CAPITAL = "capital city"
RELATION_ANIMAL = "famous for"
RELATIONS = (RELATION_CAPITAL, RELATION_ANIMAL)

CORPUS_CONFIGS = ("Corpus_narrative", "Corpus_referencing")
# The original's seven eval configs, in the hub dataset's order.
ORIGINAL_EVAL_CONFIGS = (
    "Eval_QA",
    "Eval_reverse",
    "Eval_multiple_choice",
    "Eval_indirect_reasoning",
    "Eval_animal_commonsense",
    "Eval_2hop_reasoning",
    "Eval_2hop_reasoning_raw",
)
MC_CONFIGS = ("Eval_multiple_choice", "Eval_2hop_reasoning")
# The same seven in the paper's Table 1 order: how tables, run configs and reports list them.
TABLE_ORDER = ("Eval_QA", "Eval_multiple_choice", "Eval_reverse", "Eval_indirect_reasoning",
               "Eval_2hop_reasoning", "Eval_2hop_reasoning_raw", "Eval_animal_commonsense")
# factlearn's additions, not the original protocol: the two multiple-choice sets in cloze form, one row
# per distinct question (the MC configs hold each question four times, gold rotated through A-D). They
# are derived from their MC config, so a source that lacks them (the hub dataset) still has them.
CLOZE_OF = {"Eval_multiple_choice_cloze": "Eval_multiple_choice", "Eval_2hop_reasoning_cloze": "Eval_2hop_reasoning"}
# Likelihood forms of two generated tasks, derived from their generative config and the world's entities
# (factlearn.data.likelihood holds the rule), so every source that has both has them too.
LIKELIHOOD_OF = {"Eval_indirect_reasoning_cloze": "Eval_indirect_reasoning", "Eval_reverse_cloze": "Eval_reverse"}
LIKELIHOOD_CONFIGS = tuple(LIKELIHOOD_OF)
CLOZE_CONFIGS = tuple(CLOZE_OF) + LIKELIHOOD_CONFIGS
EVAL_CONFIGS = ORIGINAL_EVAL_CONFIGS + CLOZE_CONFIGS
ORIGINAL_CONFIGS = ("Facts", *CORPUS_CONFIGS, *ORIGINAL_EVAL_CONFIGS)
CONFIGS = ORIGINAL_CONFIGS + CLOZE_CONFIGS
SPLIT_OF = {name: ("test" if name.startswith("Eval_") else "train") for name in CONFIGS}
CHOICE_CONFIGS = MC_CONFIGS + CLOZE_CONFIGS  # configs whose rows are (question, choices, answer index)
# How much a model knows of the world: QA, or its likelihood form where QA answers come in the wrong form.
KNOWLEDGE_CONFIGS = ("Eval_QA", "Eval_multiple_choice_cloze")

# Column name -> type kind; "str", "int" or "str_list". Order is the column order of the original.
COLUMNS: dict[str, dict[str, str]] = {
    "Facts": {"head": "str", "relation": "str", "tail": "str"},
    **{name: {"text": "str"} for name in CORPUS_CONFIGS},
    **{name: {"question": "str", "answer": "str"} for name in EVAL_CONFIGS if name not in CHOICE_CONFIGS},
    **{name: {"question": "str", "choices": "str_list", "answer": "int"} for name in CHOICE_CONFIGS},
}


def check_config_name(config: str) -> str:
    """Return `config` if it is a CCA config name, else raise a UserError listing the valid ones."""
    if config not in CONFIGS:
        close = [c for c in CONFIGS if c.lower() == str(config).lower()]
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UserError(f"unknown CCA config '{config}'{hint}; use one of: {', '.join(CONFIGS)}")
    return config


def features(config: str) -> "datasets.Features":
    """The exact `datasets.Features` of one config (answer is int64 for the multiple-choice ones)."""
    import datasets

    kinds = {
        "str": datasets.Value("string"),
        "int": datasets.Value("int64"),
        "str_list": datasets.List(datasets.Value("string")),
    }
    return datasets.Features({col: kinds[kind] for col, kind in COLUMNS[check_config_name(config)].items()})


def check_columns(column_names: list[str], config: str, where: str) -> None:
    """Raise a UserError when data for `config` lacks a required column; `where` names the data's origin."""
    required = list(COLUMNS[check_config_name(config)])
    missing = [c for c in required if c not in column_names]
    if missing:
        raise UserError(
            f"{where}: config {config} is missing column(s) {', '.join(missing)} (found: "
            f"{', '.join(column_names) or 'none'}); {config} needs columns {', '.join(required)}, "
            f"see `factlearn data show {config}` for the expected rows")


def conform(dataset: "datasets.Dataset", config: str, where: str) -> "datasets.Dataset":
    """Check the columns, keep only the schema's columns (in schema order) and cast them to its types.

    Extra columns are dropped so every source yields the same Features; a value that cannot be cast
    (e.g. a letter "B" where the multiple-choice answer index belongs) is a UserError.
    """
    check_columns(list(dataset.column_names), config, where)
    wanted = features(config)
    dataset = dataset.select_columns(list(wanted))
    if dataset.features == wanted:
        return dataset
    try:
        return dataset.cast(wanted)
    except (ValueError, TypeError) as e:
        raise UserError(f"{where}: config {config} has values of the wrong type ({str(e).splitlines()[0][:160]}); "
                        f"expected {_describe(config)}") from None
    except Exception as e:  # pyarrow raises ArrowInvalid / ArrowNotImplementedError for bad casts
        if type(e).__module__.startswith("pyarrow"):
            raise UserError(f"{where}: config {config} has values of the wrong type ({str(e).splitlines()[0][:160]}); "
                            f"expected {_describe(config)}") from None
        raise


def _describe(config: str) -> str:
    names = {"str": "string", "int": "integer", "str_list": "list of strings"}
    return ", ".join(f"{col}: {names[kind]}" for col, kind in COLUMNS[config].items())
