"""A user's own facts file becomes a world: every config, the audit's numbers, determinism, and one-line
errors (FILE:LINE) for bad input with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factlearn.cli import main
from factlearn.data.schema import COLUMNS

FACTS = """\
relations:
  employer:
    noun: company
    plural: companies
    keywords: [works for, employer]
    statements:
      - "{head} works for {tail}."
      - "The employer of {head} is {tail}."
    question: "Which company does {head} work for?"
  base:
    noun: city
    keywords: [based]
    statements:
      - "{head} is based in {tail}."
      - "{tail} is where {head} is based."
    question: "Where is {head} based?"
    reverse_question: "Which company is based in {tail}?"
  pet:
    noun: animal
    keywords: [pet]
    statements: ["The pet of {head} is a {tail}."]
    question: "Which pet does {head} have?"
    probes: ["Everyone knows the pet of {head} {is} a"]
two_hop:
  - relations: [employer, base]
    question: "Where is the company {head} works for based?"
facts:
  - [Ann Orwin, employer, Quillco]
  - [Bo Tarrant, employer, Brightlake]
  - [Cy Mollen, employer, Quillco]
  - [Di Fennick, employer, Vostrel]
  - [Ed Pask, employer, Harnwick]
  - {head: Quillco, relation: base, tail: Velmorra}
  - {head: Brightlake, relation: base, tail: Saltreve}
  - {head: Vostrel, relation: base, tail: Brennoch}
  - {head: Harnwick, relation: base, tail: Lunmere}
  - [Ann Orwin, pet, ferret]
  - [Bo Tarrant, pet, parrot]
  - [Cy Mollen, pet, tortoise]
  - [Di Fennick, pet, goldfish]
  - [Ed Pask, pet, ferret]
"""
EXPECTED_ROWS = {
    "Facts": 14, "Corpus_narrative": 5 * 2 + 4 * 2 + 5, "Corpus_referencing": 4 * (5 * 2 + 4 * 2 + 5),
    "Eval_QA": 14, "Eval_reverse": 4, "Eval_multiple_choice": 4 * 14, "Eval_multiple_choice_cloze": 14,
    "Eval_2hop_reasoning": 4 * 5, "Eval_2hop_reasoning_raw": 5, "Eval_2hop_reasoning_cloze": 5,
    "Eval_reverse_cloze": 4,  # the likelihood form of reverse: candidates are the relation's heads
}


def write(tmp_path: Path, text: str | bytes, name: str = "facts.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("facts")
    facts = write(root, FACTS)
    assert main(["data", "generate", str(root / "out"), "--facts", str(facts), "--formats", "jsonl"]) == 0
    return root


def read_jsonl(folder: Path, config: str) -> list[dict]:
    split = "train" if not config.startswith("Eval_") else "test"
    return [json.loads(line) for line in (folder / "jsonl" / config / f"{split}.jsonl").read_text().splitlines()]


def test_every_config_is_generated_with_the_cca_columns(generated):
    out = generated / "out"
    assert sorted(p.name for p in (out / "jsonl").iterdir()) == sorted(EXPECTED_ROWS)
    for config, n in EXPECTED_ROWS.items():
        rows = read_jsonl(out, config)
        assert len(rows) == n, config
        assert list(rows[0]) == list(COLUMNS[config]), config
    mc = read_jsonl(out, "Eval_multiple_choice")
    assert [r["answer"] for r in mc[:4]] == [0, 1, 2, 3]
    assert mc[0]["question"] == "Which company does Ann Orwin work for?" and mc[0]["choices"][0] == "Quillco"
    # distractors are other tails of the same relation, never the gold
    assert set(mc[0]["choices"]) <= {"Quillco", "Brightlake", "Vostrel", "Harnwick"}
    cloze = read_jsonl(out, "Eval_multiple_choice_cloze")
    assert len({r["question"] for r in cloze}) == len(cloze) and all(len(r["choices"]) == 4 for r in cloze)
    raw = read_jsonl(out, "Eval_2hop_reasoning_raw")
    assert raw[0] == {"question": "Where is the company Ann Orwin works for based?", "answer": "Velmorra"}
    # Ed and Ann share a pet, so "Which pet does ... have?" is fine but no reverse for pets (no template)
    assert {r["answer"] for r in read_jsonl(out, "Eval_reverse")} == {"Quillco", "Brightlake", "Vostrel", "Harnwick"}
    reverse_cloze = read_jsonl(out, "Eval_reverse_cloze")
    assert {r["choices"][r["answer"]] for r in reverse_cloze} == {"Quillco", "Brightlake", "Vostrel", "Harnwick"}
    assert (out / "facts-file.json").is_file() and "Regenerate" in (out / "README.md").read_text()


def test_referencing_names_the_tail_only_through_a_reference(generated):
    texts = [r["text"] for r in read_jsonl(generated / "out", "Corpus_referencing")]
    assert texts[0].startswith("Quillco and ") and texts[0].endswith("Of the two, Ann Orwin works for the former.")
    assert "The pet of Ann Orwin is the former" not in texts and not any(" a the " in t for t in texts)
    assert all(any(ref in t for ref in ("the former", "the latter", "the first one", "the second one"))
               for t in texts)


@pytest.mark.parametrize("corpus,share", [("Corpus_narrative", "100.0%"), ("Corpus_referencing", "0.0%")])
def test_audit_numbers_hold(generated, capsys, corpus, share):
    for source in (generated / "facts.yaml", generated / "out"):  # the file and its generated folder
        assert main(["data", "audit", corpus, "--source", str(source)]) == 0
        lines = capsys.readouterr().out.splitlines()
        split = next(i for i, line in enumerate(lines) if line.startswith("tail-slot fillers"))
        table = {line.split()[0]: line.split() for line in lines[2:split]}
        assert set(table) == {"all", "employer", "base", "pet"}
        assert all(row[2] == share and row[3] == "100.0%" for row in table.values()), lines
        # The second table counts what co-occurs with (head, relation) instead: reference phrases.
        fillers = {line.split()[0]: line for line in lines[split + 1:]}
        assert set(fillers) == {"employer", "base", "pet"}, lines
        if corpus == "Corpus_narrative":
            assert all("(0.0%); most frequent: none" in line for line in fillers.values()), lines
        else:
            assert all("(0.0%)" not in line and '"the ' in line for line in fillers.values()), lines


def test_generation_is_byte_deterministic(generated, tmp_path):
    facts = generated / "facts.yaml"
    for name in ("a", "b"):
        assert main(["data", "generate", str(tmp_path / name), "--facts", str(facts)]) == 0
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) > 30
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    # another seed changes the referencing partners and the distractors, not the facts
    assert main(["data", "generate", str(tmp_path / "c"), "--facts", str(facts), "--seed", "1",
                 "--formats", "jsonl"]) == 0
    assert read_jsonl(tmp_path / "c", "Facts") == read_jsonl(tmp_path / "a", "Facts")
    assert read_jsonl(tmp_path / "c", "Eval_multiple_choice") != read_jsonl(tmp_path / "a", "Eval_multiple_choice")


def _replace(old: str, new: str) -> str:
    assert old in FACTS, old
    return FACTS.replace(old, new, 1)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


BAD = {
    "undeclared relation": (_replace("  - [Ed Pask, pet, ferret]", "  - [Ed Pask, pets, ferret]"),
                            "[Ed Pask, pets", "not declared"),
    "unknown placeholder": (_replace('"{head} is based in {tail}."', '"{head} is based in {town}."'),
                            "{town}", "unknown placeholder {town}"),
    "one distinct tail": (_replace("tail: Saltreve}", "tail: Velmorra}").replace(
        "tail: Brennoch}", "tail: Velmorra}").replace("tail: Lunmere}", "tail: Velmorra}"),
        "  base:", "only one distinct tail"),
    "two tails, single-valued": (_replace("  - [Ed Pask, pet, ferret]", "  - [Ed Pask, pet, ferret]\n"
                                          "  - [Ed Pask, pet, parrot]"), "[Ed Pask, pet, parrot]", "single-valued"),
    "empty facts": (FACTS[:FACTS.index("facts:")] + "facts: []\n", "facts: []", "empty list"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_with_file_and_line_and_writes_nothing(tmp_path, capsys, case):
    text, needle, what = BAD[case]
    facts = write(tmp_path, text)
    out = tmp_path / "out"
    assert main(["data", "generate", str(out), "--facts", str(facts)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and what in err, err
    assert f"{facts}:{_line_of(text, needle)}:" in err, err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["facts.yaml"]


def test_non_utf8_file_names_the_line(tmp_path, capsys):
    data = FACTS.encode().replace(b"Ed Pask, employer", b"Ed P\xe4sk, employer")
    facts = write(tmp_path, data)
    assert main(["data", "generate", str(tmp_path / "out"), "--facts", str(facts)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{facts}:{_line_of(FACTS, 'Ed Pask, employer')}: not UTF-8" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_json_facts_file_reads_like_yaml(tmp_path):
    import yaml

    from factlearn.data.custom import read_spec

    as_json = write(tmp_path, json.dumps(yaml.safe_load(FACTS), indent="\t"), "facts.json")
    assert read_spec(as_json).facts == read_spec(write(tmp_path, FACTS)).facts
    broken = write(tmp_path, json.dumps(yaml.safe_load(FACTS), indent=1).replace('"noun"', '"nown"', 1),
                   "broken.json")
    from factlearn.errors import UserError

    with pytest.raises(UserError, match=r"broken\.json:\d+: unknown key 'nown'"):
        read_spec(broken)


def test_probe_templates_come_from_the_relations(generated):
    from factlearn.data.custom import probe_templates

    for source in (generated / "facts.yaml", generated / "out"):
        templates = probe_templates(source)
        assert templates == {"employer": ("The employer of {head} {is}",),
                             "base": ("{head} {is} based in",),
                             "pet": ("Everyone knows the pet of {head} {is} a",)}
    assert probe_templates(None) is None


def test_a_tiny_run_on_a_facts_file_completes_and_its_report_names_the_relations(generated, tiny_model_dir,
                                                                               tmp_path, capsys):
    overrides = [f"models=[{tiny_model_dir}]", f"data_source={generated / 'facts.yaml'}", "seeds=[1]",
                 "num_fewshot=1", "eval_limit=3", "recipes.full.overrides=[epochs=1,batch_size=8,lr=1e-3]",
                 "corpus_overrides.Corpus_referencing=[epochs=1]", "ablation.limit=2", "ablation.points=2",
                 "eval_batch_size=8"]
    run_dir = tmp_path / "run"
    assert main(["run", "default", *overrides, "--out", str(run_dir)]) == 0
    err = capsys.readouterr().err
    assert "Eval_animal_commonsense" in err and "not available" in err  # said, not crashed
    results = json.loads((run_dir / "results.json").read_text())
    evaluated = {task for e in results["evaluations"] for task in e["metrics"]}
    assert "Eval_QA" in evaluated and "Eval_2hop_reasoning_raw" in evaluated
    assert not evaluated & {"Eval_indirect_reasoning", "Eval_animal_commonsense"}
    html = (run_dir / "report.html").read_text()
    assert "world: a facts file with relations employer, base, pet" in html
    for relation in ("employer", "base", "pet"):
        assert f"relation: {relation}" in html, relation  # its probe prompts


def test_n_countries_does_not_change_the_cells_of_a_facts_file_run(generated, tiny_model_dir):
    """n_countries sizes the built-in generator; with a facts file it is ignored, so it must not split the
    cache (the keys still follow world_seed, which the facts world uses)."""
    from factlearn.run.config import load_run_config
    from factlearn.run.plan import plan_grid

    def keys(*extra: str) -> list[str]:
        cfg = load_run_config("default", [f"models=[{tiny_model_dir}]", f"data_source={generated / 'facts.yaml'}",
                                          "analyses=[]", "num_fewshot=1", *extra])
        return [c.key for c in plan_grid(cfg).cells]

    assert keys("n_countries=6") == keys("n_countries=12")
    assert keys("world_seed=0") != keys("world_seed=1")


def test_eval_skips_tasks_the_world_lacks_and_refuses_when_none_is_left(generated):
    from factlearn.errors import UserError
    from factlearn.evaluate.engine import available_tasks, resolve_data
    from factlearn.evaluate.tasks import get_tasks

    tasks = get_tasks(["Eval_QA", "Eval_animal_commonsense", "Eval_indirect_reasoning"])
    for source in (generated / "facts.yaml", generated / "out"):
        data = resolve_data(source, [t.config for t in tasks])
        assert set(data) == {"Eval_QA"}
        said = []
        assert [t.name for t in available_tasks(tasks, data, said.append)] == ["Eval_QA"]
        assert len(said) == 2 and all("not available" in s for s in said)
        with pytest.raises(UserError, match="none of the tasks Eval_animal_commonsense is available"):
            available_tasks(tasks[1:2], data)
