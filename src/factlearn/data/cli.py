"""`factlearn data`: generate, show and audit CCA data or a world from a facts file. Heavy imports stay inside functions."""

from __future__ import annotations

import argparse
import json
import sys

from factlearn.data.schema import CONFIGS, SPLIT_OF
from factlearn.data.export import check_formats, export
from factlearn.data.world import generate_world
from factlearn.data.custom import FactsWorld, read_spec
from factlearn.errors import UserError
from factlearn.data.load import load_cca, audit_corpus
from factlearn.atomic import atomic_write_json, check_output_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="generate, show and audit Country-city-animals (CCA) data",
                       description="The CCA benchmark: a generated fictional world (default: the canonical 20 "
                       "countries), the hub dataset, or a local folder; export it, print it, audit it.")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", parser_class=type(p))
    p.set_defaults(func=lambda args: _no_action(p))

    g = data_sub.add_parser("generate", help="generate a world and export every config (jsonl, parquet, arrow)",
                            description="Generate a world (CCA, or your own from --facts) and write "
                            "OUT/{jsonl,parquet,arrow}/<Config> plus a dataset card OUT/README.md. Same parameters, "
                            "same bytes.")
    g.add_argument("out", metavar="OUT", help="output folder (must not exist or be empty, unless --overwrite)")
    g.add_argument("--facts", metavar="FILE", default=None,
                   help="a facts file (YAML or JSON; format: docs/facts-file.md) to build the world from instead "
                   "of the CCA generator")
    g.add_argument("--n-countries", type=int, default=None,
                   help="countries in the generated CCA world (default 20, canonical; not with --facts)")
    g.add_argument("--seed", type=int, default=0, help="generator seed (default 0, canonical)")
    g.add_argument("--formats", nargs="+", default=["jsonl", "parquet", "arrow"], metavar="FMT",
                   help="any of jsonl parquet arrow (default: all three)")
    g.add_argument("--overwrite", action="store_true", help="replace OUT once the new export is complete")
    g.set_defaults(func=run_generate)

    s = data_sub.add_parser("show", help="print a config's rows as JSON lines (no CONFIG: a table of all configs)",
                            description="Print rows of one CCA config, one JSON object a line, or without CONFIG "
                            "a table of configs and row counts.")
    s.add_argument("config", metavar="CONFIG", nargs="?", default=None, help=f"one of: {', '.join(CONFIGS)}")
    _source_args(s)
    s.add_argument("--limit", type=int, default=10, help="rows to print (default 10; 0 = all)")
    s.set_defaults(func=run_show)

    a = data_sub.add_parser("audit", help="co-occurrence audit: share of facts stated by statistical co-occurrence",
                            description="Per fact, count passages where the true tail co-occurs with (head, "
                            "relation words) vs the most frequent wrong tail; print the share of facts with "
                            "statistical co-occurrence (true count > best wrong count).")
    a.add_argument("corpus", metavar="CORPUS",
                   help="Corpus_narrative, Corpus_referencing (from --source), or a path / hub id with a text column")
    _source_args(a)
    a.add_argument("--json", metavar="OUT", default=None, help="also write the per-fact counts to this JSON file")
    a.set_defaults(func=run_audit)


def _no_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def add_model_world_flags(p: argparse.ArgumentParser) -> None:
    """--data/--n-countries/--seed for commands that evaluate a model: by default the world it was trained on."""
    p.add_argument("--data", default=None, metavar="SRC",
                   help="where the world comes from: built-in CCA generator (default), 'hub', a local folder, or "
                        "a facts file (docs/facts-file.md); "
                        "default for a training output folder: the world it was trained on (its config.yaml)")
    p.add_argument("--n-countries", type=int, default=None, metavar="N",
                   help="size of a generated world (default: the training run's, else 20)")
    p.add_argument("--seed", type=int, default=None, help="seed of a generated world (default: the training run's, else 0)")


def _world_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-countries", type=int, default=20, help="countries in the generated world (default 20, canonical)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0, canonical)")


def _source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", default=None,
                   help="where the data comes from: the generator (default), 'hub' (xiaozeroone/Country-city-animals), "
                   "a hub id, a local folder, or a facts file (docs/facts-file.md)")
    _world_args(p)


def run_generate(args: argparse.Namespace) -> int:
    formats = check_formats(" ".join(args.formats))
    if args.facts is not None:
        return _generate_facts(args, formats)
    n_countries = 20 if args.n_countries is None else args.n_countries
    world = generate_world(n_countries, args.seed)
    out = export(world, args.out, formats=formats, overwrite=args.overwrite)
    print(f"wrote {out}: {n_countries} countries, seed {args.seed}, formats {', '.join(formats)}")
    return 0


def _generate_facts(args: argparse.Namespace, formats: tuple[str, ...]) -> int:
    """`data generate OUT --facts FILE`: the whole world is built (and checked) before anything is written."""
    from pathlib import Path

    if args.n_countries is not None:
        raise UserError("--n-countries sizes the generated CCA world; a facts file brings its own facts, so drop "
                        "--n-countries (or --facts)")
    path = Path(args.facts).expanduser()
    if not path.is_file():
        raise UserError(f"facts file {path} does not exist or is not a file; pass a YAML or JSON facts file "
                        "(see docs/facts-file.md and examples/people.yaml)")
    world = FactsWorld(read_spec(path), args.seed)
    world.tables  # noqa: B018 - build and check every config before the export starts writing
    out = export(world, args.out, formats=formats, overwrite=args.overwrite)
    spec = world.spec
    print(f"wrote {out}: {len(spec.facts)} facts, {len(spec.relations)} relations "
          f"({', '.join(r.name for r in spec.relations)}), seed {args.seed}, formats {', '.join(formats)}")
    for config in world.configs:
        print(f"  {config:<28} {len(world.rows(config)):>7} rows")
    for note in world.notes:
        print(f"note: {note}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise UserError(f"--limit must be >= 0 (0 = all rows), got {args.limit}")
    if args.config is None:
        data = load_cca(None, args.source, args.n_countries, args.seed)
        width = max(len(c) for c in data)
        for config, ds in data.items():
            print(f"{config:<{width}}  {SPLIT_OF[config]:<5}  {len(ds):>7} rows  {', '.join(ds.column_names)}")
        return 0
    ds = load_cca(args.config, args.source, args.n_countries, args.seed)
    n = len(ds) if args.limit == 0 else min(args.limit, len(ds))
    for row in ds.select(range(n)).to_list():
        print(json.dumps(row, ensure_ascii=False))
    if n < len(ds):
        print(f"({n} of {len(ds)} rows; --limit 0 prints all)", file=sys.stderr)
    return 0


def run_audit(args: argparse.Namespace) -> int:
    if args.json:
        check_output_path(args.json)  # before the audit, not after it
    result = audit_corpus(args.corpus, source=args.source, n_countries=args.n_countries, seed=args.seed)
    summary = result.summary()
    print(f"{args.corpus}: {result.n_passages} passages, {len(result.facts)} facts")
    print(f"{'relation':<14} {'facts':>6} {'statistical':>12} {'coverage':>9} {'true/fact':>10} {'wrong/fact':>11}")
    for name, s in summary.items():
        print(f"{name:<14} {s['facts']:>6} {s['share_statistical']:>11.1%} {s['coverage']:>9.1%} "
              f"{s['mean_true_count']:>10.2f} {s['mean_best_wrong_count']:>11.2f}")
    print("tail-slot fillers that are no entity (reference phrases beside head and relation words):")
    for name, f in result.fillers.items():
        top = ", ".join(f'"{p}" {n}' for p, n in f["top_fillers"]) or "none"
        print(f"{name:<14} {f['filled_by_reference']}/{f['passages']} passages "
              f"({f['share_filled_by_reference']:.1%}); most frequent: {top}")
    if args.json:
        atomic_write_json(args.json, {"corpus": args.corpus, "source": args.source or "generator",
                                      "n_countries": args.n_countries, "seed": args.seed, **result.to_dict()})
        print(f"wrote {args.json}")
    return 0
