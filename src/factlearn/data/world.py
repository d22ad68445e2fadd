"""A deterministic fictional world: countries, their capital cities, and the real animal each city is famous for.

The CCA benchmark needs entities a pretrained model has never seen (so a fact can only come from
finetuning) tied to real animals (so commonsense questions have ground truth). `generate_world` makes
one from `n_countries` and `seed`; `n_countries=20, seed=0` is the canonical world.

Determinism: only `random.Random` seeded from a string (hashed with SHA-512 by Python, so independent
of PYTHONHASHSEED and platform), integer draws (`randrange`/`choice`/`shuffle`) and tuples in a fixed
order. The same parameters give the same world on any machine and Python >= 3.10.

Names are built from syllables, with a uniqueness set on the distinctive word of every name (so no name
is a word of another, which keeps co-occurrence counting unambiguous), and checked against a
deny-list of real countries, capitals, big cities, regions and English towns our patterns could
produce, plus common English words. The deny-list is best effort, not a gazetteer: the invented
syllable shapes make real names unlikely, the list catches the ones seen in large generated worlds.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass
from typing import NamedTuple

from factlearn.data.schema import RELATION_ANIMAL, RELATION_CAPITAL
from factlearn.errors import UserError

MIN_COUNTRIES = 2
MAX_COUNTRIES = 100_000
# The canonical world, the one every command uses when no world is named: its one home.
CANONICAL_N_COUNTRIES = 20
CANONICAL_WORLD_SEED = 0


@dataclass(frozen=True)
class Animal:
    """A real animal and the commonsense attributes questions are built from; None = not clear-cut, never asked."""

    name: str  # lower case, no article, as written in the texts
    animal_class: str  # mammal, bird, fish, reptile, amphibian, insect, arachnid, mollusc, crustacean, cnidarian, ...
    habitat: str  # "land", "water", "air" (mostly flies) or "both" (land and water; never asked)
    can_fly: bool | None
    legs: int | None  # None where arms, flippers or claws make the count a matter of opinion
    diet: str | None  # "herbivore", "carnivore", "omnivore"
    larger_than_human: bool | None
    lays_eggs: bool | None


def _a(name, cls, habitat, fly, legs, diet, large, eggs) -> Animal:
    return Animal(name, cls, habitat, fly, legs, diet, large, eggs)


# Chosen so that each attribute we ask about has one commonsense answer; doubtful ones are None.
# No name is a whole word of another (e.g. no plain "snake" next to "king snake").
ANIMALS: tuple[Animal, ...] = (
    _a("elephant", "mammal", "land", False, 4, "herbivore", True, False),
    _a("giraffe", "mammal", "land", False, 4, "herbivore", True, False),
    _a("zebra", "mammal", "land", False, 4, "herbivore", True, False),
    _a("rhinoceros", "mammal", "land", False, 4, "herbivore", True, False),
    _a("lion", "mammal", "land", False, 4, "carnivore", True, False),
    _a("tiger", "mammal", "land", False, 4, "carnivore", True, False),
    _a("cheetah", "mammal", "land", False, 4, "carnivore", None, False),
    _a("wolf", "mammal", "land", False, 4, "carnivore", False, False),
    _a("fox", "mammal", "land", False, 4, "omnivore", False, False),
    _a("brown bear", "mammal", "land", False, 4, "omnivore", True, False),
    _a("koala", "mammal", "land", False, 4, "herbivore", False, False),
    _a("rabbit", "mammal", "land", False, 4, "herbivore", False, False),
    _a("camel", "mammal", "land", False, 4, "herbivore", True, False),
    _a("horse", "mammal", "land", False, 4, "herbivore", True, False),
    _a("moose", "mammal", "land", False, 4, "herbivore", True, False),
    _a("bison", "mammal", "land", False, 4, "herbivore", True, False),
    _a("yak", "mammal", "land", False, 4, "herbivore", True, False),
    _a("raccoon", "mammal", "land", False, 4, "omnivore", False, False),
    _a("hamster", "mammal", "land", False, 4, "omnivore", False, False),
    _a("sloth", "mammal", "land", False, 4, "herbivore", False, False),
    _a("armadillo", "mammal", "land", False, 4, "omnivore", False, False),
    _a("porcupine", "mammal", "land", False, 4, "herbivore", False, False),
    _a("llama", "mammal", "land", False, 4, "herbivore", True, False),
    _a("lynx", "mammal", "land", False, 4, "carnivore", False, False),
    _a("fruit bat", "mammal", "air", True, 2, "herbivore", False, False),
    _a("hippopotamus", "mammal", "both", False, 4, "herbivore", True, False),
    _a("otter", "mammal", "both", False, 4, "carnivore", False, False),
    _a("beaver", "mammal", "both", False, 4, "herbivore", False, False),
    _a("dolphin", "mammal", "water", False, 0, "carnivore", True, False),
    _a("blue whale", "mammal", "water", False, 0, "carnivore", True, False),
    _a("orca", "mammal", "water", False, 0, "carnivore", True, False),
    _a("manatee", "mammal", "water", False, 0, "herbivore", True, False),
    _a("eagle", "bird", "air", True, 2, "carnivore", False, True),
    _a("owl", "bird", "air", True, 2, "carnivore", False, True),
    _a("falcon", "bird", "air", True, 2, "carnivore", False, True),
    _a("vulture", "bird", "air", True, 2, "carnivore", False, True),
    _a("crow", "bird", "air", True, 2, "omnivore", False, True),
    _a("parrot", "bird", "air", True, 2, None, False, True),
    _a("hummingbird", "bird", "air", True, 2, None, False, True),
    _a("kingfisher", "bird", "air", True, 2, "carnivore", False, True),
    _a("woodpecker", "bird", "air", True, 2, "omnivore", False, True),
    _a("ostrich", "bird", "land", False, 2, "omnivore", True, True),
    _a("penguin", "bird", "both", False, 2, "carnivore", False, True),
    _a("flamingo", "bird", "both", True, 2, "omnivore", False, True),
    _a("pelican", "bird", "both", True, 2, "carnivore", False, True),
    _a("goldfish", "fish", "water", False, 0, "omnivore", False, True),
    _a("salmon", "fish", "water", False, 0, "carnivore", False, True),
    _a("clownfish", "fish", "water", False, 0, "omnivore", False, True),
    _a("pufferfish", "fish", "water", False, 0, "omnivore", False, True),
    _a("eel", "fish", "water", False, 0, "carnivore", False, True),
    _a("shark", "fish", "water", False, 0, "carnivore", True, None),
    _a("king snake", "reptile", "land", False, 0, "carnivore", False, True),
    _a("cobra", "reptile", "land", False, 0, "carnivore", False, True),
    _a("iguana", "reptile", "land", False, 4, "herbivore", False, True),
    _a("gecko", "reptile", "land", False, 4, "carnivore", False, True),
    _a("chameleon", "reptile", "land", False, 4, "carnivore", False, None),
    _a("crocodile", "reptile", "both", False, 4, "carnivore", True, True),
    _a("tortoise", "reptile", "land", False, 4, "herbivore", None, True),
    _a("frog", "amphibian", "both", False, 4, "carnivore", False, True),
    _a("butterfly", "insect", "air", True, 6, "herbivore", False, True),
    _a("honeybee", "insect", "air", True, 6, "herbivore", False, True),
    _a("dragonfly", "insect", "air", True, 6, "carnivore", False, True),
    _a("ladybug", "insect", "air", True, 6, "carnivore", False, True),
    _a("mosquito", "insect", "air", True, 6, "omnivore", False, True),
    _a("ant", "insect", "land", None, 6, "omnivore", False, True),
    _a("tarantula", "arachnid", "land", False, 8, "carnivore", False, True),
    _a("snail", "mollusc", "land", False, 0, "herbivore", False, True),
    _a("octopus", "mollusc", "water", False, None, "carnivore", None, True),
    _a("squid", "mollusc", "water", False, None, "carnivore", None, True),
    _a("jellyfish", "cnidarian", "water", False, 0, "carnivore", None, None),
    _a("lobster", "crustacean", "water", False, None, "omnivore", False, True),
)

# Lower-case names our syllable and compound patterns could produce that are real places or common
# words. Best effort; see the module docstring.
DENY_LIST: frozenset[str] = frozenset("""
afghanistan albania algeria andorra angola argentina armenia australia austria azerbaijan bahamas bahrain
bangladesh barbados belarus belgium belize benin bhutan bolivia bosnia botswana brazil brunei bulgaria burundi
cambodia cameroon canada chad chile china colombia comoros congo croatia cuba cyprus czechia denmark djibouti
dominica ecuador egypt eritrea estonia eswatini ethiopia fiji finland france gabon gambia georgia germany ghana
greece grenada guatemala guinea guyana haiti honduras hungary iceland india indonesia iran iraq ireland israel
italy jamaica japan jordan kazakhstan kenya kiribati kosovo kuwait kyrgyzstan laos latvia lebanon lesotho liberia
libya liechtenstein lithuania luxembourg madagascar malawi malaysia maldives mali malta mauritania mauritius mexico
micronesia moldova monaco mongolia montenegro morocco mozambique myanmar namibia nauru nepal netherlands nicaragua
niger nigeria norway oman pakistan palau palestine panama paraguay peru philippines poland portugal qatar romania
russia rwanda samoa senegal serbia seychelles singapore slovakia slovenia somalia spain sudan suriname sweden
switzerland syria taiwan tajikistan tanzania thailand togo tonga trinidad tunisia turkey turkmenistan tuvalu uganda
ukraine uruguay uzbekistan vanuatu venezuela vietnam yemen zambia zimbabwe
abuja accra addis algiers amman amsterdam ankara antananarivo apia ashgabat asmara astana asuncion athens baghdad
baku bamako bangkok bangui banjul beijing beirut belgrade berlin bern bishkek bogota brasilia bratislava brussels
bucharest budapest cairo canberra caracas castries chisinau colombo conakry copenhagen dakar damascus dhaka dili
djibouti dodoma doha dublin dushanbe freetown funafuti gaborone georgetown gitega hanoi harare havana helsinki honiara
islamabad jakarta jerusalem juba kabul kampala kathmandu khartoum kigali kingston kinshasa kyiv libreville lilongwe
lima lisbon ljubljana lome london luanda lusaka luxembourg madrid majuro malabo male managua manama manila maputo
maseru mbabane melekeok minsk mogadishu monrovia montevideo moroni moscow muscat nairobi nassau naypyidaw ndjamena
niamey nicosia nouakchott nuku'alofa oslo ottawa ouagadougou palikir paramaribo paris podgorica port praia pretoria
pristina pyongyang quito rabat reykjavik riga riyadh rome roseau sanaa santiago sarajevo seoul singapore skopje sofia
stockholm sucre suva taipei tallinn tarawa tashkent tbilisi tegucigalpa tehran thimphu tirana tokyo tripoli tunis
ulaanbaatar vaduz valletta victoria vienna vientiane vilnius warsaw washington wellington windhoek yaounde yerevan
zagreb
alexandria aleppo atlanta barcelona boston calcutta chicago dallas delhi denver detroit dubai florence geneva
glasgow hamburg houston istanbul karachi lagos leeds lyon marseille melbourne miami milan montreal mumbai munich
naples orlando osaka oxford phoenix porto salvador seattle seville shanghai sydney toronto turin valencia venice
verona zurich lusitania moravia batavia silesia galicia bohemia castile aragon andalusia catalonia anatolia
arcadia arcadia atlantis avalon aurora caledonia cambria cornwall dalmatia elysia illyria iberia lombardy macedonia
navarra numidia pannonia persia prussia saxony sardinia sicily thessaly thrace tuscany umbria valence alania
westphalia bavaria walachia wallachia croatia serenia ostrava
copperton sunfield springfield greenfield fairfield mansfield sheffield wakefield willowbrook willowdale cloverdale
ashford oakdale rosedale glendale riverdale ferndale brookhaven fairhaven whitehaven newhaven stonehaven silverton
ironton thornton thornbury alderton hazelwood ivybridge frostburg marigold amberley emberton flintham clovelly
mossley rowanton juniperfield meadowbrook meadowdale meadowvale
area arena alias mania media idea opera sonata banana camera nebula formula villa gala salon melon talon canon
galleon valor velor solar polar molar lunar calendar corona persona terrace palace malice venue avenue morale
""".split())


class Fact(NamedTuple):
    """One (head, relation, tail) triple, as in the Facts config."""

    head: str
    relation: str
    tail: str


@dataclass(frozen=True)
class Country:
    name: str
    capital: str
    animal: Animal


@dataclass(frozen=True)
class World:
    """A generated world. `countries` fixes the entity order of every config built from it."""

    n_countries: int
    seed: int
    countries: tuple[Country, ...]
    decoy_cities: tuple[str, ...]  # extra city names, only so tiny worlds still have 3 MC distractors

    @property
    def animal_pool(self) -> tuple[Animal, ...]:
        return ANIMALS

    def facts(self) -> list[Fact]:
        """All capital facts (in country order), then all animal facts (same order)."""
        capital = [Fact(c.name, RELATION_CAPITAL, c.capital) for c in self.countries]
        animal = [Fact(c.capital, RELATION_ANIMAL, c.animal.name) for c in self.countries]
        return capital + animal

    def city_pool(self) -> list[str]:
        """Every city name in the world: capitals in order, then decoys."""
        return [c.capital for c in self.countries] + list(self.decoy_cities)


def rng_for(seed: int, purpose: str) -> random.Random:
    """An independent, reproducible random stream per purpose (string seeds are SHA-512 hashed)."""
    return random.Random(f"factlearn-cca/{seed}/{purpose}")


def check_n_countries(n_countries: int) -> int:
    if isinstance(n_countries, bool) or not isinstance(n_countries, int):
        raise UserError(f"n_countries must be a whole number, got {n_countries!r}; use e.g. 20 (the canonical world)")
    if not MIN_COUNTRIES <= n_countries <= MAX_COUNTRIES:
        raise UserError(f"n_countries={n_countries} is out of range; use {MIN_COUNTRIES}..{MAX_COUNTRIES} "
                        "(20 is the canonical world)")
    return n_countries


# --- name parts ---------------------------------------------------------------------------------
# Every first part ends in a consonant, every middle is vowel+consonant, every ending starts with a
# vowel: the joins stay pronounceable (Valenoria, Korithane).
_COUNTRY_FIRST = ("Al", "An", "Bel", "Bor", "Cal", "Dor", "El", "Fen", "Gal", "Hal", "Is", "Kal", "Lor", "Mar",
                  "Nor", "Or", "Pel", "Quel", "Ral", "Sel", "Tal", "Val", "Vel", "Zan", "Ar", "Cor", "Del", "Er",
                  "Mel", "Sar", "Tor", "Ver", "Ys", "Ael", "Bran", "Cer", "Drav", "Fal", "Gor", "Kor", "Lys",
                  "Myr", "Nal", "Ost", "Per", "Syl", "Thal", "Ul", "Wen", "Zel")
_COUNTRY_END = ("oria", "ania", "avia", "endor", "ovia", "aris", "esia", "orth", "ador", "ilde", "inde", "onia",
                "ara", "una", "eth", "oth", "ory", "ane", "estra", "alis", "inia", "ura", "alon", "ealis")
_COUNTRY_PREFIX = ("Port", "Alta", "Nova", "Upper", "East", "West", "North", "South", "San", "Isla", "Greater",
                   "Old")
_COUNTRY_STATE = ("The Republic of", "The Kingdom of", "The Federation of", "The Free State of",
                  "The Grand Duchy of", "The Commonwealth of")
_MIDDLE = ("", "", "", "an", "en", "ar", "or", "el", "il", "ir", "on", "un", "ad", "ev", "im", "os", "ith", "am")
_CITY_FIRST = ("Ghal", "Fir", "Bel", "Cael", "Dun", "Ess", "Gal", "Hest", "Ith", "Jor", "Kel", "Lum", "Mir",
               "Nim", "Ost", "Pryd", "Quen", "Rav", "Sarn", "Tyr", "Ulm", "Vor", "Wyr", "Xan", "Yth", "Zor", "Brel",
               "Cand", "Drem", "Eld", "Fald", "Garn", "Harr", "Irv", "Kest", "Lith", "Morv", "Neth", "Orl", "Penn",
               "Rhyd", "Stav", "Thol", "Varn", "Wend")
_CITY_END = ("oth", "ia", "mar", "wyn", "dell", "ix", "ore", "ane", "ond", "ell", "azar", "ion", "ova", "eum",
             "aven", "ith", "uin", "arra", "est", "olm")
_TOWN_FIRST = ("Amber", "Bramble", "Briar", "Cinder", "Clover", "Copper", "Dapple", "Ember", "Fennel", "Flint",
               "Foxglove", "Gorse", "Hazel", "Juniper", "Lantern", "Larch", "Marigold", "Moss", "Nettle", "Pebble",
               "Quill", "Rowan", "Saffron", "Sorrel", "Tansy", "Teasel", "Thistle", "Umber", "Vetch", "Willow",
               "Yarrow", "Bracken", "Catkin", "Elder", "Glimmer", "Ivy", "Kettle", "Meadow", "Mistle", "Frost",
               "Tinder", "Hearth", "Cobble", "Russet")
_TOWN_END = ("ton", "field", "creek", "brook", "ford", "haven", "wick", "mere", "dale", "crest", "gate", "stead",
             "moor", "vale", "holm", "combe", "marsh", "reach", "fold", "hythe")


_TRIPLE_LETTER = re.compile(r"(.)\1\1")


class _Namer:
    """Draws unique names; the distinctive word of each name (its core) is never reused."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = {a.name for a in ANIMALS} | {w for a in ANIMALS for w in a.name.split()}
        self.middles = 1

    def _core(self, first: tuple[str, ...], end: tuple[str, ...]) -> str:
        middle = "".join(self.rng.choice(_MIDDLE) for _ in range(self.middles))
        return self.rng.choice(first) + middle + self.rng.choice(end)

    def _accept(self, core: str, full: str) -> bool:
        key = core.lower()
        if key in self.used or key in DENY_LIST or full.lower() in DENY_LIST or len(core) < 5:
            return False
        if _TRIPLE_LETTER.search(key):  # "Mossstead" is hard to read and to say
            return False
        self.used.add(key)
        return True

    def draw(self, make) -> str:
        """Call make() -> (core, full) until a fresh one appears; grow the syllable count when crowded."""
        for attempt in range(10_000):
            core, full = make()
            if self._accept(core, full):
                return full
            if attempt and attempt % 40 == 0:
                self.middles += 1  # the space at this length is crowded: allow longer names
        raise RuntimeError("name space exhausted")  # unreachable: each extra middle multiplies the space by 18

    def country(self) -> str:
        def make():
            core = self._core(_COUNTRY_FIRST, _COUNTRY_END)
            roll = self.rng.randrange(20)
            if roll < 3:
                return core, f"{self.rng.choice(_COUNTRY_STATE)} {core}"
            if roll < 7:
                return core, f"{self.rng.choice(_COUNTRY_PREFIX)} {core}"
            return core, core
        return self.draw(make)

    def city(self) -> str:
        def make():
            if self.rng.randrange(2) == 0:
                town = self.rng.choice(_TOWN_FIRST) + self.rng.choice(_TOWN_END)
                if self.middles == 1:  # compounds are a small space; once crowded, fall back to invented
                    return town, town
            core = self._core(_CITY_FIRST, _CITY_END)
            return core, core
        return self.draw(make)


def _assign_animals(n: int, rng: random.Random) -> list[Animal]:
    """Cycle through shuffled copies of the pool: unique while n <= pool size, balanced counts beyond."""
    out: list[Animal] = []
    while len(out) < n:
        batch = list(ANIMALS)
        rng.shuffle(batch)
        out.extend(batch)
    return out[:n]


@functools.lru_cache(maxsize=8)
def generate_world(n_countries: int = CANONICAL_N_COUNTRIES, seed: int = CANONICAL_WORLD_SEED) -> World:
    """Generate the world for (n_countries, seed); (20, 0) is the canonical world. Cached: worlds are immutable."""
    check_n_countries(n_countries)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UserError(f"seed must be a whole number, got {seed!r}")
    namer = _Namer(rng_for(seed, "names"))
    countries_names = [namer.country() for _ in range(n_countries)]
    capitals = [namer.city() for _ in range(n_countries)]
    decoys = tuple(namer.city() for _ in range(max(0, 4 - n_countries)))
    animals = _assign_animals(n_countries, rng_for(seed, "animals"))
    countries = tuple(Country(n, c, a) for n, c, a in zip(countries_names, capitals, animals))
    return World(n_countries=n_countries, seed=seed, countries=countries, decoy_cities=decoys)
