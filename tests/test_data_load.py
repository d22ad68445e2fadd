"""Loading from every local layout, export determinism, the hub's fast offline failure, and CLI bad inputs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest

from factlearn.data import CONFIGS, SPLIT_OF, export, generate_world, load_cca, load_text_corpus
from factlearn.errors import UserError

FACTLEARN = [sys.executable, "-m", "factlearn"]


def one_line_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("factlearn: error:") and "Traceback" not in out.stderr, out.stderr
    return lines[0]


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    return export(generate_world(), tmp_path_factory.mktemp("export") / "cca")


@pytest.fixture(scope="module")
def canonical():
    return load_cca()


def same(a: datasets.Dataset, b: datasets.Dataset) -> bool:
    return a.features == b.features and a.to_list() == b.to_list()


def test_export_layout_and_card(exported):
    for config in CONFIGS:
        split = SPLIT_OF[config]
        assert (exported / "jsonl" / config / f"{split}.jsonl").is_file()
        assert (exported / "parquet" / config / f"{split}.parquet").is_file()
        assert (exported / "arrow" / config / "state.json").is_file()
    card = (exported / "README.md").read_text()
    assert card.startswith("---\n") and "- config_name: Eval_2hop_reasoning_raw" in card
    assert "| n_countries | 20 |" in card and "| seed | 0 |" in card
    assert "path: parquet/Facts/train.parquet" in card
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_export_is_byte_identical(exported, tmp_path):
    again = export(generate_world(), tmp_path / "again")
    assert digest(again) == digest(exported)  # jsonl, parquet and arrow (same library versions)


@pytest.mark.parametrize("sub", ["", "jsonl", "parquet", "arrow"])
def test_round_trip_through_every_format(exported, canonical, sub):
    loaded = load_cca(source=str(exported / sub) if sub else str(exported))
    assert list(loaded) == list(CONFIGS)
    for config in CONFIGS:
        assert same(loaded[config], canonical[config]), config
    assert same(load_cca("Eval_multiple_choice", source=str(exported / sub)), canonical["Eval_multiple_choice"])


def test_hub_style_parquet_and_plain_save_to_disk(exported, canonical, tmp_path):
    hub = tmp_path / "hub"
    for config in CONFIGS:
        split = SPLIT_OF[config]
        (hub / config).mkdir(parents=True)
        shutil.copy(exported / "parquet" / config / f"{split}.parquet", hub / config / f"{split}-00000-of-00001.parquet")
    assert same(load_cca("Eval_2hop_reasoning", source=str(hub)), canonical["Eval_2hop_reasoning"])
    saved = tmp_path / "saved"
    canonical.save_to_disk(str(saved))
    assert same(load_cca("Facts", source=str(saved)), canonical["Facts"])
    one = tmp_path / "one_config"  # a single config's DatasetDict keyed by split, as load_dataset returns it
    datasets.DatasetDict({"test": canonical["Eval_QA"]}).save_to_disk(str(one))
    assert same(load_cca("Eval_QA", source=str(one)), canonical["Eval_QA"])


def test_extra_columns_dropped_and_int_answers_cast(tmp_path, canonical):
    folder = tmp_path / "mine" / "Eval_multiple_choice"
    folder.mkdir(parents=True)
    rows = [{**r, "note": "x"} for r in canonical["Eval_multiple_choice"].to_list()]
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert same(load_cca("Eval_multiple_choice", source=str(tmp_path / "mine")), canonical["Eval_multiple_choice"])


def test_text_corpus_sources(exported, canonical, tmp_path):
    assert load_text_corpus("Corpus_narrative")["text"] == canonical["Corpus_narrative"]["text"]
    path = exported / "jsonl" / "Corpus_referencing" / "train.jsonl"
    assert load_text_corpus(str(path))["text"] == canonical["Corpus_referencing"]["text"]
    assert load_text_corpus(str(exported / "parquet" / "Corpus_narrative")).column_names == ["text"]
    assert len(load_text_corpus(str(exported / "arrow" / "Corpus_narrative"))) == 360
    assert len(load_text_corpus("Corpus_narrative", source=str(exported))) == 360
    with pytest.raises(UserError, match="no 'text' column"):
        load_text_corpus(str(exported / "jsonl" / "Facts" / "train.jsonl"))
    with pytest.raises(UserError, match="has no text column"):
        load_text_corpus("Eval_QA")
    with pytest.raises(UserError, match="not a CCA corpus config"):
        load_text_corpus("no_such_corpus")


def test_bad_inputs_in_python(tmp_path, exported):
    with pytest.raises(UserError, match="unknown CCA config 'facts'.*did you mean Facts"):
        load_cca("facts")
    with pytest.raises(UserError, match="n_countries"):
        load_cca("Facts", n_countries=100_001)
    with pytest.raises(UserError, match="no data for config Eval_QA"):
        load_cca("Eval_QA", source=str(tmp_path))
    with pytest.raises(UserError, match="not empty"):
        export(generate_world(), exported)
    with pytest.raises(UserError, match="unknown export format"):
        export(generate_world(), tmp_path / "x", formats=("csv",))
    assert not (tmp_path / "x").exists()
    bad = tmp_path / "bad" / "Eval_multiple_choice"
    bad.mkdir(parents=True)
    (bad / "test.jsonl").write_text(json.dumps({"question": "q", "choices": ["a", "b", "c", "d"], "answer": "B"}) + "\n")
    with pytest.raises(UserError, match=r"line 1: 'answer' must be an integer"):
        load_cca("Eval_multiple_choice", source=str(tmp_path / "bad"))


def test_hub_offline_fails_fast_naming_alternatives():
    started = time.time()
    with pytest.raises(UserError, match="generator.*local folder"):
        load_cca("Facts", source="hub")
    assert time.time() - started < 10


# --- the CLI: one line, exit 2, nothing written -------------------------------------------------------

def test_cli_generate_then_show_and_bad_world(run_cli, tmp_path):
    out = tmp_path / "gen"
    ok = run_cli("data", "generate", str(out), "--n-countries", "5", "--seed", "2", "--formats", "jsonl")
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "jsonl"]
    rows = (out / "jsonl" / "Eval_2hop_reasoning_raw" / "test.jsonl").read_text().splitlines()
    assert len(rows) == 5 and set(json.loads(rows[0])) == {"question", "answer"}
    err = one_line_error(run_cli("data", "generate", str(tmp_path / "never"), "--n-countries", "1"))
    assert "n_countries=1" in err and not (tmp_path / "never").exists()
    assert list(tmp_path.iterdir()) == [out]


def test_cli_unknown_config_and_missing_column(run_cli, tmp_path):
    assert "Eval_2hop_reasoning_raw" in one_line_error(run_cli("data", "show", "Eval_qa"))
    folder = tmp_path / "mine" / "Facts"
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_text(json.dumps({"head": "A", "relation": "capital city"}) + "\n")
    err = one_line_error(run_cli("data", "show", "Facts", "--source", str(tmp_path / "mine")))
    assert "config Facts is missing column(s) tail" in err and "needs columns head, relation, tail" in err


def test_cli_corrupt_jsonl_line_and_audit_writes_nothing(run_cli, tmp_path):
    folder = tmp_path / "mine" / "Corpus_narrative"
    folder.mkdir(parents=True)
    lines = [json.dumps({"text": "Dororia is a country."}), json.dumps({"text": "fine"}), '{"text": "broken', ""]
    (folder / "train.jsonl").write_text("\n".join(lines))
    report = tmp_path / "audit.json"
    err = one_line_error(run_cli("data", "audit", "Corpus_narrative", "--source", str(tmp_path / "mine"),
                                 "--json", str(report)))
    assert "train.jsonl, line 3: invalid JSON" in err
    assert not report.exists()


def test_export_a_dataset_dict_subset(canonical, tmp_path):
    subset = datasets.DatasetDict({"Eval_QA": canonical["Eval_QA"], "Facts": canonical["Facts"]})
    out = export(subset, tmp_path / "subset", formats=("jsonl",))
    card = (out / "README.md").read_text()
    assert "existing DatasetDict" in card and "path: jsonl/Facts/train.jsonl" in card
    assert card.index("config_name: Facts") < card.index("config_name: Eval_QA")  # schema order
    loaded = load_cca(source=str(out))
    assert list(loaded) == ["Facts", "Eval_QA"] and same(loaded["Eval_QA"], canonical["Eval_QA"])
    with pytest.raises(UserError, match="keys must be CCA config names"):
        export(datasets.DatasetDict({"train": canonical["Facts"]}), tmp_path / "nope")


# --- a UTF-8 byte-order mark is not content; garbage is still refused --------------------------------

BOM = b"\xef\xbb\xbf"


def write_jsonl(path: Path, rows: list[dict], prefix: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(prefix + "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8"))
    return path


def test_bom_jsonl_reads_the_same_rows_for_eval_data_and_corpora(tmp_path, canonical):
    from factlearn.train.data import load_corpus

    rows = canonical["Eval_QA"].to_list()
    for name, prefix in (("plain", b""), ("bom", BOM)):
        write_jsonl(tmp_path / name / "Eval_QA" / "test.jsonl", rows, prefix)
    assert (tmp_path / "bom" / "Eval_QA" / "test.jsonl").read_bytes().startswith(BOM)
    assert same(load_cca("Eval_QA", source=str(tmp_path / "bom")), canonical["Eval_QA"])
    assert same(load_cca("Eval_QA", source=str(tmp_path / "bom")), load_cca("Eval_QA", source=str(tmp_path / "plain")))
    texts = canonical["Corpus_narrative"]["text"][:5]
    plain = write_jsonl(tmp_path / "plain.jsonl", [{"text": t} for t in texts])
    bom = write_jsonl(tmp_path / "bom.jsonl", [{"text": t} for t in texts], BOM)
    array = tmp_path / "array.json"  # a .json file may also hold one JSON array of objects (with a BOM too)
    array.write_bytes(BOM + json.dumps([{"text": t} for t in texts]).encode())
    for path in (plain, bom, array):
        assert load_text_corpus(str(path))["text"] == texts, path
        assert load_corpus(str(path))["text"] == texts, path  # the training path reads with the same rules


def test_garbage_after_a_bom_or_not_utf8_is_still_refused(run_cli, tmp_path):
    from factlearn.train.data import load_corpus

    invalid = tmp_path / "invalid.jsonl"
    invalid.write_bytes(BOM + b'{"text": "fine"}\n{"text": broken\n')
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes('{"text": "caf\u00e9"}\n'.encode("latin-1"))
    bom_in_middle = tmp_path / "middle.jsonl"  # only a leading BOM is skipped; one inside a line is content
    bom_in_middle.write_bytes(b'{"text": "a"}\n' + BOM + b'{"text": "b"}\n')
    for load in (load_text_corpus, load_corpus):
        with pytest.raises(UserError, match=r"cannot read corpus file .*invalid\.jsonl, line 2: invalid JSON"):
            load(str(invalid))
        with pytest.raises(UserError, match=r"cannot read corpus file .*latin1\.jsonl: not UTF-8 text"):
            load(str(latin1))
        with pytest.raises(UserError, match=r"middle\.jsonl, line 2: invalid JSON"):
            load(str(bom_in_middle))
    folder = tmp_path / "cca" / "Eval_QA"
    folder.mkdir(parents=True)
    (folder / "test.jsonl").write_bytes(BOM + b'{"question": "q", "answer": \n')
    err = one_line_error(run_cli("data", "show", "Eval_QA", "--source", str(tmp_path / "cca")))
    assert "cannot read data file" in err and "test.jsonl, line 1: invalid JSON" in err
    err = one_line_error(run_cli("data", "audit", str(latin1)))
    assert "latin1.jsonl: not UTF-8 text" in err
