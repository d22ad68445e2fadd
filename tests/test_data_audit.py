"""Co-occurrence audit: hand-made counts, the thresholds on the generated corpora, and the CLI report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from factlearn.data import RELATION_ANIMAL, RELATION_CAPITAL, Fact, build_rows, generate_world
from factlearn.data.audit import audit_texts
from factlearn.data.load import audit_corpus

FACTS = [Fact("Port Ember", RELATION_CAPITAL, "Ashvale"), Fact("Ember", RELATION_CAPITAL, "Quillmoor"),
         Fact("Ashvale", RELATION_ANIMAL, "sea lion"), Fact("Quillmoor", RELATION_ANIMAL, "lion")]


def test_counts_ties_and_longest_match():
    texts = [
        "The capital of Port Ember is Ashvale.",              # Port Ember/Ashvale; never counts for "Ember"
        "Ashvale and Quillmoor: the former is the capital of Port Ember.",  # true and wrong tail once each
        "Ember's capital city is Quillmoor.",
        "Ember has a lovely coast near Ashvale.",             # no relation words: ignored
        "Ashvale is famous for its sea lion.",                # "sea lion" is one mention, not also "lion"
        "Quillmoor is famous for the lion.",
    ]
    result = audit_texts(texts, FACTS)
    by_head = {f.head: f for f in result.facts}
    assert (by_head["Port Ember"].true_count, by_head["Port Ember"].best_wrong_count) == (2, 1)
    assert by_head["Port Ember"].best_wrong_tail == "Quillmoor" and by_head["Port Ember"].statistical
    assert (by_head["Ember"].true_count, by_head["Ember"].best_wrong_count) == (1, 0)
    assert (by_head["Ashvale"].true_count, by_head["Ashvale"].best_wrong_count) == (1, 0)
    assert result.share == 1.0
    tied = audit_texts(texts[1:2], FACTS[:2])  # one passage naming both tails: a tie is not co-occurrence
    assert tied.facts[0].true_count == tied.facts[0].best_wrong_count == 1 and tied.share == 0.0
    assert tied.summary()["all"]["coverage"] == 0.5


@pytest.mark.parametrize("n, seed", [(20, 0), (50, 3)])
def test_generated_corpora_meet_their_design_goals(n, seed):
    world = generate_world(n, seed)
    facts = world.facts()
    narrative = audit_texts([r["text"] for r in build_rows(world, "Corpus_narrative")], facts)
    referencing = audit_texts([r["text"] for r in build_rows(world, "Corpus_referencing")], facts)
    assert narrative.share >= 0.99
    assert referencing.share <= 0.10
    assert referencing.summary()["all"]["coverage"] == 1.0  # every fact is there, only by reference
    assert set(referencing.summary()) == {"all", RELATION_CAPITAL, RELATION_ANIMAL}


def test_audit_corpus_from_a_path_and_the_cli_json(tmp_path):
    path = tmp_path / "corpus.jsonl"
    rows = build_rows(generate_world(), "Corpus_narrative")[:90]  # the first 10 facts, 9 rows each
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert audit_corpus(str(path)).share == pytest.approx(10 / 40)
    report = tmp_path / "audit.json"
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-m", "factlearn", "data", "audit", "Corpus_referencing", "--json", str(report)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "0.0%" in out.stdout and "all" in out.stdout
    saved = json.loads(report.read_text())
    assert saved["n_passages"] == 1920 and len(saved["facts"]) == 40
    assert saved["summary"]["all"]["share_statistical"] == 0.0


def test_audit_counts_reference_phrases_in_the_tail_slot():
    """The entity audit finds no co-occurrence in the referencing corpus (a tie); the slot-filler count
    shows what does co-occur with (head, relation) there: a reference phrase in every passage."""
    world = generate_world(5, 0)
    facts = build_rows(world, "Facts")
    ref = audit_texts([r["text"] for r in build_rows(world, "Corpus_referencing")], [Fact(**f) for f in facts])
    narr = audit_texts([r["text"] for r in build_rows(world, "Corpus_narrative")], [Fact(**f) for f in facts])
    assert ref.share == 0.0
    for relation in (RELATION_CAPITAL, RELATION_ANIMAL):
        f = ref.fillers[relation]
        assert f["passages"] == f["filled_by_reference"] == 5 * 48 and f["share_filled_by_reference"] == 1.0
        assert {p for p, _ in f["top_fillers"]} == {"the former", "the latter", "the first one", "the second one"}
        assert narr.fillers[relation]["filled_by_reference"] == 0 and narr.fillers[relation]["top_fillers"] == []
    one = audit_texts(["The capital of Port Ember is the former.", "The capital of Ember is Quillmoor."], FACTS)
    assert one.fillers[RELATION_CAPITAL] == {"passages": 2, "with_tail_entity": 1, "filled_by_reference": 1,
                                             "share_filled_by_reference": 0.5, "top_fillers": [["the former", 1]]}
    assert "fillers" in one.to_dict()
