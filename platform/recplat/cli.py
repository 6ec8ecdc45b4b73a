"""The `recplat` command line.

    recplat prepare --config jobs/data/spiao.yaml [--out DIR] [key=value ...]
    recplat data download amazon2018 --domains Office_Products Prime_Pantry --to data/raw
"""

from __future__ import annotations

import argparse
import sys

from recplat.errors import RecplatError


def _add_prepare(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="turn raw multi-domain dumps into a prepared dataset directory (Ray Data)",
        description="Run the preprocessing pipeline (titles, dedupe, k-core, sequences, splits, "
        "candidates, render, stats) on Ray Data and write one dataset directory atomically.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", "-c", help="a prepare YAML (every key: platform/recplat/data/defaults/prepare.yaml)")
    src.add_argument(
        "--preset",
        help="a packaged config: " + ", ".join(_presets()) + " (default: prepare, the offline MovieLens-100K)",
    )
    p.add_argument("--out", "-o", required=True, help="the dataset directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset directory")
    p.add_argument("--strict", action="store_true", help="the first malformed input line is an error")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--num-cpus", type=int, help="logical CPUs for a local Ray")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. kcore.user=3")
    p.set_defaults(func=_run_prepare)


def _run_prepare(args) -> int:
    from recplat.config import load_config
    from recplat.data.config import PrepareConfig
    from recplat.data.pipeline import prepare
    from recplat.runtime import init_ray

    overrides = list(args.overrides) + (["strict=true"] if args.strict else [])
    path = args.config or preset_path(args.preset or "prepare")
    cfg = load_config(PrepareConfig, path, overrides)
    init_ray(args.address, num_cpus=args.num_cpus)
    prepare(cfg, args.out, overwrite=args.overwrite, show_progress=True)
    return 0


def _presets() -> list[str]:
    from importlib import resources

    folder = resources.files("recplat.data") / "defaults"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_path(name: str):
    from importlib import resources

    from recplat.errors import ConfigError

    if name not in _presets():
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(_presets())}")
    return resources.files("recplat.data") / "defaults" / f"{name}.yaml"


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="raw data: download the official dumps")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    d = data_sub.add_parser(
        "download",
        help="download official dumps (resumable, size/checksum verified)",
        description="Download a source's official files for the given domains into a directory. "
        "Interrupted downloads resume; sizes and published checksums are verified.",
    )
    d.add_argument("source", choices=["amazon2018", "amazon2014", "amazon2023", "movielens"])
    d.add_argument("--domains", nargs="+", default=[], help="domains (Amazon) or variants (MovieLens: ml-1m ...)")
    d.add_argument("--to", required=True, dest="dest", help="target directory")
    d.add_argument("--base-url", help="a mirror to use instead of the publisher's URL")
    d.add_argument(
        "--ratings", choices=["csv", "reviews"], default="csv", help="amazon2018: ratings CSV or 5-core reviews"
    )
    d.set_defaults(func=_run_download)


def _run_download(args) -> int:
    from recplat.data.download import download

    paths = download(args.source, args.domains, args.dest, base_url=args.base_url, ratings=args.ratings)
    for path in paths:
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recplat",
        description="recplat: reproduce and sweep LLM-based multi-domain recommenders on Ray.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_prepare(sub)
    _add_data(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RecplatError as exc:
        print(f"recplat: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("recplat: interrupted; nothing partial was left behind", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
