"""A facts file may leave out probe prompts: generate, train and eval need none; probing says what is missing.

Issue 23 (a): a relation with no `probes:` and no statement reading "... is {tail}." used to make
`data generate` refuse the whole file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from factlearn.errors import UserError

# `employer` has neither probes nor an "... is {tail}." statement; `pet` has its own probes.
FACTS = """\
relations:
  employer:
    noun: company
    keywords: [works for]
    statements: ["{head} works for {tail}.", "{tail} employs {head}, who works for it."]
    question: "Which company does {head} work for?"
  pet:
    noun: animal
    keywords: [pet]
    statements: ["The pet of {head} is a {tail}."]
    question: "Which pet does {head} have?"
facts:
  - [Ann Orwin, employer, Quillco]
  - [Bo Tarrant, employer, Brightlake]
  - [Cy Mollen, employer, Vostrel]
  - [Ann Orwin, pet, ferret]
  - [Bo Tarrant, pet, parrot]
  - [Cy Mollen, pet, tortoise]
"""


@pytest.fixture
def facts(tmp_path) -> Path:
    path = tmp_path / "facts.yaml"
    path.write_text(FACTS)
    return path


def one_line_error(out) -> str:
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


def test_generate_train_eval_work_and_probe_names_what_is_missing(facts, tmp_path, tiny_model_dir, run_cli):
    out = run_cli("data", "generate", tmp_path / "data", "--facts", facts, "--formats", "jsonl")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "data").is_dir() and any((tmp_path / "data").rglob("*.jsonl"))

    out = run_cli("train", "cpu_small", f"model={tiny_model_dir}", f"data_source={facts}",
                  "subset=Corpus_narrative", "epochs=1", "batch_size=4", f"save={tmp_path / 'model'}")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "model" / "model.safetensors").is_file()

    out = run_cli("eval", tmp_path / "model", "--data", facts, "--tasks", "Eval_QA", "--num-fewshot", "1",
                  "--limit", "2", "--out", tmp_path / "eval")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "eval" / "results.json").is_file()

    err = one_line_error(run_cli("probe", tmp_path / "model", "--data", facts, "--out", tmp_path / "probe"))
    assert "'employer' has no probe prompts" in err and "probes:" in err and str(facts) in err, err
    assert "'pet'" not in err  # its statement reads "... is a {tail}.", so its prompts were built
    assert not (tmp_path / "probe").exists()


def test_the_probe_templates_of_a_file_that_lacks_some_are_refused_by_name(facts):
    from factlearn.data.custom import probe_templates

    with pytest.raises(UserError, match=r"relation 'employer' has no probe prompts"):
        probe_templates(facts)
    facts.write_text(FACTS.replace('    question: "Which company does {head} work for?"\n',
                                   '    question: "Which company does {head} work for?"\n'
                                   '    probes: ["{head} works for {is}"]\n'))
    assert probe_templates(facts) == {"employer": ("{head} works for {is}",), "pet": ("The pet of {head} {is} a",)}


def test_a_run_that_probes_says_what_is_missing(facts, tiny_model_dir):
    from factlearn.run.config import load_run_config
    from factlearn.run.plan import plan_grid

    def plan(analyses: str):
        cfg = load_run_config("default", [f"models=[{tiny_model_dir}]", f"data_source={facts}", "num_fewshot=1",
                                          f"analyses={analyses}"])
        return plan_grid(cfg)

    assert plan("[]").cells  # no probing: the run plans as usual
    with pytest.raises(UserError, match=r"relation 'employer' has no probe prompts"):
        plan("[probe]")
