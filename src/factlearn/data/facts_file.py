"""The facts file: a user's own world, as relations (with their wording) and (head, relation, tail) facts.

The format is documented with a worked example in docs/facts-file.md (examples/people.yaml is one):

    relations:
      employer:                              # the name, as written in Facts.relation
        noun: company                        # what the tails are (plural "companies": `plural:` overrides)
        keywords: [works for, employs]       # words that express it: the audit's relation detector
        statements: ["{head} works for {tail}.", "{tail} employs {head}."]
        question: "Which company does {head} work for?"
        reverse_question: "Who works for {tail}?"      # optional
        probes: ["The company {head} works for {is}"]  # optional; else built from the statements
        referencing: [...]       # optional {head} {first} {second} {ref}; else built from the statements
        multi_valued: false      # optional: may one head have several tails?
        distractors: [...]       # optional extra wrong answers for multiple choice
    two_hop:                                 # optional: chain questions, relation pair -> template
      - relations: [employer, headquarters]
        question: "In which city is the company {head} works for headquartered?"
    facts:
      - [Ada Brightwell, employer, Quillmark]
      - {head: Quillmark, relation: headquarters, tail: Harrowgate}

YAML is read with `yaml.compose`, which keeps every node's line, so each problem is reported as one
line `FILE:LINE: what is wrong; how to fix` (a UserError). JSON files hold the same structure and
are read the same way (after a strict JSON syntax check). Scalars are taken as written: a head
called `No` or `1984` stays a string (YAML's yes/no booleans only count for `multi_valued`).
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from dataclasses import asdict, dataclass
from pathlib import Path

from factlearn.data.world import Fact
from factlearn.errors import UserError

FORMAT_VERSION = 1
DOCS = "docs/facts-file.md"
SPEC_NAME = "facts-file.json"  # the resolved facts file `data generate` writes next to the data

TOP_KEYS = ("version", "relations", "two_hop", "facts")
RELATION_KEYS = ("noun", "plural", "keywords", "statements", "question", "reverse_question", "probes",
                 "referencing", "multi_valued", "distractors")
# template kind -> (placeholders it must use, placeholders it may use)
PLACEHOLDERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "statements": (("head", "tail"), ("head", "tail")),
    "question": (("head",), ("head",)),
    "reverse_question": (("tail",), ("tail",)),
    "probes": (("head", "is"), ("head", "is")),
    "referencing": (("head", "first", "second", "ref"), ("head", "first", "second", "ref")),
    "two_hop": (("head",), ("head",)),
}
_IS = re.compile(r"\bis\b")


@dataclass(frozen=True)
class Relation:
    """One relation and all of its wording, resolved (plural and probes filled in)."""

    name: str
    noun: str
    plural: str
    keywords: tuple[str, ...]
    statements: tuple[str, ...]
    question: str
    reverse_question: str | None
    probes: tuple[str, ...]
    referencing: tuple[str, ...]  # empty: built from the statements (factlearn.data.custom)
    multi_valued: bool
    distractors: tuple[str, ...]


@dataclass(frozen=True)
class TwoHop:
    """The composite question for chains (a, first, b), (b, second, c): asks about a, answer c."""

    first: str
    second: str
    question: str


@dataclass(frozen=True)
class FactsSpec:
    """A validated facts file. `digest` identifies its content (not its path) for dataset fingerprints."""

    path: str
    relations: tuple[Relation, ...]
    two_hop: tuple[TwoHop, ...]
    facts: tuple[Fact, ...]

    def relation(self, name: str) -> Relation:
        return next(r for r in self.relations if r.name == name)

    def as_dict(self) -> dict:
        """The resolved file, itself a valid facts file (JSON); written as facts-file.json by export."""
        relations = {}
        for r in self.relations:
            d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(r).items() if k != "name"}
            relations[r.name] = {k: v for k, v in d.items() if v not in (None, [])}
        return {"version": FORMAT_VERSION, "relations": relations,
                "two_hop": [{"relations": [t.first, t.second], "question": t.question} for t in self.two_hop],
                "facts": [list(f) for f in self.facts]}

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]


# --- reading -----------------------------------------------------------------------------------------

def load_facts_file(path: str | Path) -> FactsSpec:
    """Read and validate a facts file; any problem is a UserError `FILE:LINE: what; how to fix`."""
    import yaml

    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}); re-save the file as "
                        "UTF-8") from None
    text = text.removeprefix("\ufeff")
    if path.suffix.lower() == ".json":
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg}); fix the syntax there") from None
        text = text.replace("\t", " ")  # JSON allows tab indentation, YAML does not; tabs in strings are \t
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise UserError(f"{path}:{line}: invalid YAML ({getattr(e, 'problem', None) or e}); fix the syntax "
                        f"there (see {DOCS})") from None
    if root is None:
        raise UserError(f"{path}:1: the file is empty; a facts file needs `relations:` and `facts:` (see {DOCS})")
    return _Reader(str(path)).spec(root)


class _Reader:
    """Walks the composed YAML nodes, converting and checking as it goes; errors carry the node's line."""

    def __init__(self, path: str):
        self.path = path

    def error(self, node, message: str) -> UserError:
        return UserError(f"{self.path}:{node.start_mark.line + 1}: {message}")

    # -- node kinds -------------------------------------------------------------------------------
    def mapping(self, node, what: str, allowed: tuple[str, ...]) -> dict:
        """{key: (key node, value node)} of a mapping node, refusing unknown and repeated keys."""
        import yaml

        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"{what} must be a mapping of keys to values; see {DOCS}")
        out: dict = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key in out:
                raise self.error(key_node, f"{what} has key '{key}' twice; keep one")
            if allowed and key not in allowed:
                raise self.error(key_node, f"unknown key '{key}' in {what}; use {', '.join(allowed)}")
            out[key] = (key_node, value_node)
        return out

    def sequence(self, node, what: str, allow_empty: bool = False) -> list:
        import yaml

        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, f"{what} must be a list (- item per line, or [a, b]); see {DOCS}")
        if not node.value and not allow_empty:
            raise self.error(node, f"{what} is an empty list; give at least one item")
        return node.value

    def string(self, node, what: str) -> str:
        import yaml

        if not isinstance(node, yaml.ScalarNode) or (node.tag.endswith(":null") and node.style is None):
            raise self.error(node, f"{what} must be a text value; write it after the colon, quoted if it has "
                             "special characters")
        value = " ".join(node.value.split())
        if not value:
            raise self.error(node, f"{what} is empty; give a text value")
        return value

    def boolean(self, node, what: str) -> bool:
        import yaml

        if isinstance(node, yaml.ScalarNode) and node.value.lower() in ("true", "false", "yes", "no"):
            return node.value.lower() in ("true", "yes")
        raise self.error(node, f"{what} must be true or false")

    def strings(self, node, what: str, allow_empty: bool = False) -> tuple[str, ...]:
        return tuple(self.string(n, f"an item of {what}") for n in self.sequence(node, what, allow_empty))

    def template(self, node, kind: str, where: str) -> str:
        """A str.format template using exactly the placeholders its kind allows (and all it needs)."""
        text = self.string(node, f"{kind} of {where}")
        need, allowed = PLACEHOLDERS[kind]
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
        except ValueError as e:
            raise self.error(node, f"template {text!r} has unbalanced braces ({e}); write a literal brace as "
                             "{{ or }}") from None
        for f in fields:
            if f not in allowed:
                raise self.error(node, f"template {text!r} uses unknown placeholder {{{f}}}; {kind} may use "
                                 f"{', '.join('{' + a + '}' for a in allowed)}")
        missing = [n for n in need if n not in fields]
        if missing:
            raise self.error(node, f"template {text!r} lacks {', '.join('{' + m + '}' for m in missing)}; "
                             f"every {kind} template needs {', '.join('{' + n + '}' for n in need)}")
        if kind == "probes" and text.endswith("."):
            raise self.error(node, f"probe template {text!r} must end where the tail follows (no final "
                             "period); e.g. 'The company {head} works for {is}'")
        return text

    # -- the file ---------------------------------------------------------------------------------
    def spec(self, root) -> FactsSpec:
        top = self.mapping(root, "the facts file", TOP_KEYS)
        for key in ("relations", "facts"):
            if key not in top:
                raise self.error(root, f"the facts file has no `{key}:` section; add it (see {DOCS})")
        if "version" in top and top["version"][1].value != str(FORMAT_VERSION):
            raise self.error(top["version"][1], f"unknown facts file version {top['version'][1].value!r}; "
                             f"this factlearn reads version {FORMAT_VERSION}")
        rel_nodes = self.mapping(top["relations"][1], "relations", ())
        if not rel_nodes:
            raise self.error(top["relations"][1], "relations is empty; declare at least one relation")
        relations = {}  # name -> (key node, value node, Relation)
        for name, (key_node, value_node) in rel_nodes.items():
            self.string(key_node, "a relation name")
            relations[name] = (key_node, value_node, self.relation(name, value_node))
        self.check_keywords(relations)
        facts = self.facts(top["facts"][1], relations)
        self.check_tails(relations, facts)
        two_hop = self.two_hop(top["two_hop"][1], relations) if "two_hop" in top else ()
        return FactsSpec(self.path, tuple(r for _, _, r in relations.values()), two_hop, tuple(facts))

    def relation(self, name: str, node) -> Relation:
        where = f"relation '{name}'"
        keys = self.mapping(node, where, RELATION_KEYS)
        for required in ("noun", "statements", "question"):
            if required not in keys:
                raise self.error(node, f"{where} has no `{required}:`; add it (see {DOCS})")
        noun = self.string(keys["noun"][1], f"noun of {where}")
        plural = self.string(keys["plural"][1], f"plural of {where}") if "plural" in keys else pluralize(noun)
        if "keywords" in keys:
            keywords = self.strings(keys["keywords"][1], f"keywords of {where}")
        else:
            keywords = tuple(w for w in re.findall(r"\w+", name.lower()) if len(w) > 2) or (name.lower(),)
        seq = {k: self.sequence(keys[k][1], f"{k} of {where}") for k in ("statements", "probes", "referencing")
               if k in keys}
        statements = tuple(self.worded(n, "statements", where, keywords) for n in seq["statements"])
        referencing = tuple(self.worded(n, "referencing", where, keywords) for n in seq.get("referencing", ()))
        question = self.template(keys["question"][1], "question", where)
        reverse = self.template(keys["reverse_question"][1], "reverse_question", where) \
            if "reverse_question" in keys else None
        if "probes" in seq:
            probes = tuple(self.template(n, "probes", where) for n in seq["probes"])
        else:  # may be empty: only probing needs them, and it says so (custom.probe_templates)
            probes = probes_from_statements(statements)
        multi = self.boolean(keys["multi_valued"][1], f"multi_valued of {where}") if "multi_valued" in keys else False
        distractors = self.strings(keys["distractors"][1], f"distractors of {where}", allow_empty=True) \
            if "distractors" in keys else ()
        return Relation(name, noun, plural, keywords, statements, question, reverse, probes, referencing, multi,
                        distractors)

    def worded(self, node, kind: str, where: str, keywords: tuple[str, ...]) -> str:
        """A statement or referencing template that also names the relation by one of its keywords."""
        text = self.template(node, kind, where)
        literal = re.sub(r"\{\w*\}", " ", text)
        if not any(re.search(rf"\b{re.escape(k)}\b", literal, re.IGNORECASE) for k in keywords):
            raise self.error(node, f"{kind} template {text!r} of {where} contains none of its keywords "
                             f"({', '.join(keywords)}); the co-occurrence audit detects the relation by them: "
                             "reword it or add a word it uses to `keywords:`")
        return text

    def check_keywords(self, relations: dict) -> None:
        """No relation's wording may use another relation's keyword, or the audit would count it for both."""
        for name, (_, node, relation) in relations.items():
            keys = self.mapping(node, f"relation '{name}'", RELATION_KEYS)
            for kind in ("statements", "referencing"):
                if kind not in keys:
                    continue
                for item in keys[kind][1].value:
                    literal = re.sub(r"\{\w*\}", " ", item.value)
                    for other, (_, _, rel) in relations.items():
                        hit = next((k for k in rel.keywords if other != name and k not in relation.keywords
                                    and re.search(rf"\b{re.escape(k)}\b", literal, re.IGNORECASE)), None)
                        if hit:
                            raise self.error(item, f"{kind} template {item.value!r} of relation '{name}' contains "
                                             f"'{hit}', a keyword of relation '{other}', so the audit would count "
                                             "it for both; reword it or change the keywords")

    def facts(self, node, relations: dict) -> list[Fact]:
        import yaml

        facts: list[Fact] = []
        seen: dict[tuple[str, str], tuple[str, int]] = {}  # (head, relation) -> (tail, line), single-valued
        exact: dict[Fact, int] = {}
        for item in self.sequence(node, "facts"):
            if isinstance(item, yaml.SequenceNode):
                if len(item.value) != 3:
                    raise self.error(item, f"a fact has {len(item.value)} items; write [head, relation, tail]")
                parts = [self.string(n, f"the {k} of a fact") for n, k in zip(item.value, ("head", "relation", "tail"))]
            else:
                keys = self.mapping(item, "a fact", ("head", "relation", "tail"))
                missing = [k for k in ("head", "relation", "tail") if k not in keys]
                if missing:
                    raise self.error(item, f"a fact lacks {', '.join(missing)}; write {{head: ..., relation: ..., "
                                     "tail: ...}} or [head, relation, tail]")
                parts = [self.string(keys[k][1], f"the {k} of a fact") for k in ("head", "relation", "tail")]
            fact = Fact(*parts)
            line = item.start_mark.line + 1
            if fact.relation not in relations:
                raise self.error(item, f"fact uses relation '{fact.relation}', which is not declared under "
                                 f"relations (declared: {', '.join(relations)}); declare it or fix the spelling")
            if fact.head == fact.tail:
                raise self.error(item, f"fact has the same head and tail ('{fact.head}'); a fact links two "
                                 "different entities")
            if fact in exact:
                raise self.error(item, f"the fact {list(fact)} is repeated (first at line {exact[fact]}); remove "
                                 "one")
            exact[fact] = line
            key = (fact.head, fact.relation)
            if key in seen and not relations[fact.relation][2].multi_valued:
                tail, first = seen[key]
                raise self.error(item, f"'{fact.head}' already has {fact.relation} '{tail}' (line {first}) and "
                                 f"'{fact.relation}' is single-valued; remove one fact, or set `multi_valued: "
                                 "true` on the relation")
            seen.setdefault(key, (fact.tail, line))
            facts.append(fact)
        return facts

    def check_tails(self, relations: dict, facts: list[Fact]) -> None:
        """Every relation needs >= 2 distinct tails: wrong answers come from the relation's other tails."""
        for name, (key_node, _, _) in relations.items():
            tails = list(dict.fromkeys(f.tail for f in facts if f.relation == name))
            if not tails:
                raise self.error(key_node, f"relation '{name}' is declared but no fact uses it; add facts or "
                                 "remove the relation")
            if len(tails) < 2:
                raise self.error(key_node, f"relation '{name}' has only one distinct tail ('{tails[0]}'); "
                                 "questions and probes need wrong answers from other tails of the same relation, "
                                 "so add facts with at least one other tail")

    def two_hop(self, node, relations: dict) -> tuple[TwoHop, ...]:
        out: dict[tuple[str, str], TwoHop] = {}
        for item in self.sequence(node, "two_hop", allow_empty=True):
            keys = self.mapping(item, "a two_hop entry", ("relations", "question"))
            if "relations" not in keys or "question" not in keys:
                raise self.error(item, "a two_hop entry needs `relations: [first, second]` and `question:`")
            pair = self.strings(keys["relations"][1], "relations of a two_hop entry")
            if len(pair) != 2:
                raise self.error(keys["relations"][1], f"two_hop relations has {len(pair)} names; give two: "
                                 "[first, second] (first's tail is second's head)")
            for name in pair:
                if name not in relations:
                    raise self.error(keys["relations"][1], f"two_hop names relation '{name}', which is not "
                                     f"declared (declared: {', '.join(relations)}); fix the spelling")
            if pair in out:
                raise self.error(item, f"two_hop has the pair {list(pair)} twice; keep one")
            out[pair] = TwoHop(*pair, self.template(keys["question"][1], "two_hop", f"two_hop {list(pair)}"))
        return tuple(out.values())


# --- derived wording -----------------------------------------------------------------------------------

def pluralize(noun: str) -> str:
    """English plural of a simple noun ("city" -> "cities", "box" -> "boxes"); `plural:` overrides it."""
    if re.search(r"[^aeiou]y$", noun):
        return noun[:-1] + "ies"
    if re.search(r"(s|x|z|ch|sh)$", noun):
        return noun + "es"
    return noun + "s"


def probes_from_statements(statements: tuple[str, ...]) -> tuple[str, ...]:
    """Probe prompts from statements that end in {tail}: the text before it, its last "is" made {is}.

    "The employer of {head} is {tail}." -> "The employer of {head} {is}"; statements without such an
    "is", or with {head} after the tail, give none.
    """
    out = []
    for s in statements:
        body = s.rstrip(" .!")
        if not body.endswith("{tail}"):
            continue
        prefix = body[: -len("{tail}")].rstrip()
        hits = list(_IS.finditer(prefix))
        if "{head}" not in prefix or "{tail}" in prefix or not hits:
            continue
        last = hits[-1]
        out.append(prefix[: last.start()] + "{is}" + prefix[last.end():])
    return tuple(dict.fromkeys(out))
