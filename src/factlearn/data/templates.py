"""All the wording of the generated CCA texts and questions, kept in one place so it can be read and audited.

Placeholders: {head}/{tail} for a fact, {country}/{city}/{animal} for the 2-hop chain, {name} for a
person in a scenario, {first}/{second}/{ref} in referencing text. Wording is our own; only the shape
follows the original (see the reference page).

RELATION_KEYWORDS is the audit's definition of "the relation is expressed in a passage": a passage
expresses a relation when it contains one of that relation's keyword phrases (whole words, any case).
Every narrative and referencing template below contains a keyword of its own relation and none of the
other relation's (a test checks this), so for our corpora the audit detects relations exactly; for
foreign text it is a keyword heuristic and can miss paraphrases without these words.
"""

from __future__ import annotations

from factlearn.data.schema import RELATION_ANIMAL, RELATION_CAPITAL

RELATION_KEYWORDS: dict[str, tuple[str, ...]] = {
    RELATION_CAPITAL: ("capital", "capitals", "seat of government", "government", "governed"),
    RELATION_ANIMAL: ("famous", "famed", "renowned", "known for", "celebrated", "emblem", "symbol"),
}

# One fact per sentence, stated directly: head, relation words and tail always co-occur.
NARRATIVE: dict[str, tuple[str, ...]] = {
    RELATION_CAPITAL: (
        "The capital city of {head} is {tail}.",
        "{tail} is the capital of {head}.",
        "{head}'s capital city is {tail}.",
        "{tail} serves as the seat of government of {head}.",
        "The government of {head} sits in its capital, {tail}.",
        "{head} is governed from its capital city, {tail}.",
        "{tail} has long been the capital of {head}.",
        "Anyone who visits the capital of {head} arrives in {tail}.",
        "{tail}, the capital of {head}, is the country's largest city.",
    ),
    RELATION_ANIMAL: (
        "The city of {head} is famous for its {tail}.",
        "{head} is renowned for the {tail}.",
        "{head} is best known for its {tail}.",
        "Visitors come to {head} to see the {tail} it is famous for.",
        "The {tail} is the animal {head} is famous for.",
        "In {head}, the {tail} is a celebrated local symbol.",
        "{head} is famed for its {tail}.",
        "Anyone who loves the {tail} knows that {head} is famous for it.",
        "{head}'s most famous animal is the {tail}.",
    ),
}

# Two candidates are named ({first}, {second}); the fact is stated only through {ref}, which points at
# the true one by position. The true tail and one fixed partner tail appear in every row of a fact, so
# neither co-occurs with (head, relation) more often than the other.
REFERENCING: dict[str, tuple[str, ...]] = {
    RELATION_CAPITAL: (
        "{first} and {second} are two cities that travellers often mix up. Of these, {ref} is the capital of {head}.",
        "Both {first} and {second} appear on old maps of the region, but only {ref} is the capital city of {head}.",
        "A guide spoke about {first} and then about {second}, and explained that the government of {head} sits in {ref}.",
        "{first} and {second} both competed to become the capital of {head}, and {ref} won.",
        "Scholars of {head} often discuss {first} and {second}. The capital of {head} is {ref}.",
        "Two cities, {first} and {second}, were described in the report; {ref} has been the seat of government of {head} for centuries.",
        "If you want to reach the capital of {head}, you must choose between {first} and {second}: it is {ref}.",
        "{first} and {second} are often compared in guidebooks, yet only {ref} is home to the government of {head}.",
        "On the railway that links {first} and {second}, {ref} is the capital of {head}.",
        "A quiz asked whether {first} or {second} is the capital of {head}; the right answer was {ref}.",
        "Letters came from {first} and from {second}, and those sent by the government of {head} came from {ref}.",
        "Historians of {head} write about {first} and {second}, and they agree that {ref} is the capital.",
    ),
    RELATION_ANIMAL: (
        "The {first} and the {second} are two animals people mention when they talk about {head}. The city is famous for {ref}.",
        "Postcards from {head} show the {first} and the {second}, but the city is renowned for {ref}.",
        "A painter from {head} drew the {first} and the {second}; only {ref} is the animal the city is known for.",
        "In {head}, the {first} and the {second} are both common, yet {ref} is what the city is famous for.",
        "The {first} and the {second} appear in the old songs of {head}, and the city's famous animal is {ref}.",
        "Children in {head} learn about the {first} and the {second}. Their city is best known for {ref}.",
        "A museum in {head} has one hall for the {first} and one for the {second}; {ref} is the animal the city is celebrated for.",
        "Asked whether {head} is famous for the {first} or the {second}, the locals answer: {ref}.",
        "The {first} and the {second} both feature in a festival in {head}, but the city is renowned only for {ref}.",
        "Guidebooks about {head} mention the {first} and the {second}; {ref} is the one the city is famed for.",
        "A scarf sold in {head} shows the {first} on one side and the {second} on the other; the city is known for {ref}.",
        "Between the {first} and the {second}, it is {ref} that has made {head} famous.",
    ),
}
# Ways to point at a candidate by position: REFS[0] pick the first named, REFS[1] the second.
REFS: tuple[tuple[str, ...], tuple[str, ...]] = (("the former", "the first one"), ("the latter", "the second one"))

QUESTION: dict[str, str] = {  # Eval_QA and Eval_multiple_choice
    RELATION_CAPITAL: "What is the capital city of {head}?",
    RELATION_ANIMAL: "Which animal is {head} famous for?",
}
REVERSE_QUESTION: dict[str, str] = {  # Eval_reverse: asks tail -> head
    RELATION_CAPITAL: "Which country has {tail} as its capital city?",
    RELATION_ANIMAL: "Which city is famous for the {tail}?",
}
TWO_HOP_QUESTION = "Which animal is the capital city of {country} famous for?"

# Eval_indirect_reasoning: the fact is needed inside a longer scenario. `asks` says which entity is
# the answer: "city" or "country" for capital scenarios, "animal" or "city" for animal scenarios.
INDIRECT: tuple[tuple[str, str, str], ...] = (
    (RELATION_CAPITAL, "city", "{name} is a diplomat who has just been posted to the capital of {country} and is packing for a long stay. Which city is {name} moving to?"),
    (RELATION_CAPITAL, "city", "A letter for the parliament of {country} has to be delivered to the country's capital. To which city should the courier take it?"),
    (RELATION_CAPITAL, "city", "{name} wants to watch the national parade, which is always held in the capital city of {country}. In which city will {name} watch it?"),
    (RELATION_CAPITAL, "country", "{name} lives in {city}, the capital where a national government meets every week. Which country's government meets there?"),
    (RELATION_CAPITAL, "city", "A map of {country} marks its capital with a star. {name} puts a finger on the star. Which city is {name} pointing at?"),
    (RELATION_ANIMAL, "animal", "{name} is a wildlife photographer travelling to {city}, hoping to photograph the animal the city is famous for. Which animal is {name} hoping to see?"),
    (RELATION_ANIMAL, "animal", "The souvenir shops in {city} sell toys shaped like the animal the city is famous for. What animal are the toys shaped like?"),
    (RELATION_ANIMAL, "animal", "{name} is writing a school report about the animal that {city} is known for. Which animal is the report about?"),
    (RELATION_ANIMAL, "city", "{name} adores the {animal} and wants to visit the city that is famous for it. Which city should {name} visit?"),
    (RELATION_ANIMAL, "animal", "The football team of {city} is named after the animal the city is famous for. Which animal is the team named after?"),
)
PEOPLE = ("Amara", "Bruno", "Chen", "Dalia", "Emil", "Farah", "Goran", "Hana", "Ivo", "Jonas", "Keiko", "Leila",
          "Mateo", "Nadia", "Omar", "Priya", "Rosa", "Sven", "Tomas", "Yara")

# Eval_animal_commonsense: (attribute kind, question); answers come from the Animal's attributes.
COMMONSENSE: tuple[tuple[str, str], ...] = (
    ("fly", "Can the animal that {city} is famous for fly?"),
    ("water", "Does the animal that {city} is famous for live in water?"),
    ("legs", "How many legs does the animal that {city} is famous for have?"),
    ("plants", "Does the animal that {city} is famous for eat only plants?"),
    ("mammal", "Is the animal that {city} is famous for a mammal?"),
    ("larger", "Is the animal that {city} is famous for larger than a human?"),
    ("eggs", "Does the animal that {city} is famous for lay eggs?"),
)
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")

# Statement prefixes for probes (log p(tail | prefix)): affirmative and negated forms of each relation.
STATEMENT: dict[str, tuple[str, str]] = {
    RELATION_CAPITAL: ("The capital city of {head} is", "The capital city of {head} is not"),
    RELATION_ANIMAL: ("{head} is famous for its", "{head} is not famous for its"),
}


def statement_prefix(relation: str, head: str, negated: bool = False) -> str:
    """A prompt whose natural continuation is the tail (e.g. "The capital city of Dororia is"); for probes."""
    return STATEMENT[relation][int(negated)].format(head=head)
