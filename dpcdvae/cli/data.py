"""``dpcdvae data ...``: ``info``, ``download``, ``demo`` (parse, call :mod:`dpcdvae.data`, print)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.demo import ensure_demo_dataset, make_demo_dataset
from ..data.info import CHECK_DEFAULT_MAX_ROWS, dataset_info, format_info
from ..data.locator import DownloadError, download
from ..data.paths import SPLITS
from ..data.registry import DEMO_NAME, downloadable_datasets
from ..utils.fileio import strict_json_dumps

__all__ = ["add_parser"]


def cmd_info(args: argparse.Namespace) -> int:
    info = dataset_info(args.name, root=args.root, prop=args.prop, num_workers=args.workers, check=args.check)
    if args.json:
        print(strict_json_dumps(info, indent=2))
    else:
        print(format_info(info), file=sys.stdout if info.get("found") else sys.stderr)
    return 0 if info.get("found") and info.get("ok") else 1


def cmd_download(args: argparse.Namespace) -> int:
    try:
        out = download(args.name, dest=args.dest, splits=args.splits, timeout=args.timeout, overwrite=args.force)
    except (DownloadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.name}: files in {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    sizes = tuple(args.sizes)
    if args.force:
        out = make_demo_dataset(args.root, n=sizes, seed=args.seed, distortion=args.distortion)
    else:
        out = ensure_demo_dataset(args.root, n=sizes, seed=args.seed, distortion=args.distortion)
    root_hint = f", root={str(Path(out).parent)!r}" if args.root else ""
    print(f"SYNTHETIC demo dataset {DEMO_NAME} (train/val/test = {sizes[0]}/{sizes[1]}/{sizes[2]}) in {out}\n"
          f"load it with: dpcdvae.data.load_split({DEMO_NAME!r}, 'train'{root_hint})")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``data`` (with ``info``, ``download``, ``demo``) on an argparse ``subparsers`` object."""
    p = subparsers.add_parser("data", help="datasets: info, download, demo",
                              description="Inspect, download or generate crystal datasets (CDVAE CSV format).")
    sub = p.add_subparsers(dest="data_command", metavar="{info,download,demo}")

    pi = sub.add_parser("info", help="per-split rows, atoms, elements and property statistics",
                        description="Summarise a dataset's splits (absent splits are reported as absent).")
    pi.add_argument("name", help=f"dataset name, e.g. {', '.join(downloadable_datasets())} or {DEMO_NAME}")
    pi.add_argument("--data-root", "--root", dest="root", default=None,
                    help="data root or dataset directory (default: the data locator)")
    pi.add_argument("--check", action=argparse.BooleanOptionalAction, default=None,
                    help=f"run every row through the loader's checks (default: on for splits of up to "
                         f"{CHECK_DEFAULT_MAX_ROWS} rows); exit status 1 when a row or file is bad")
    pi.add_argument("--prop", default="auto", help="property column (default: the dataset's own)")
    pi.add_argument("--json", action="store_true", help="print JSON")
    pi.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    pi.set_defaults(func=cmd_info)

    pd_ = sub.add_parser("download", help="fetch {train,val,test}.csv from the public CDVAE repository",
                         description="Download a CDVAE benchmark dataset (needs internet).")
    pd_.add_argument("name", choices=downloadable_datasets())
    pd_.add_argument("--dest", default=None, help="data root to write NAME/ into (default: $DPCDVAE_DATA or ./data)")
    pd_.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    pd_.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    pd_.add_argument("--force", action="store_true", help="download again even if the files exist")
    pd_.set_defaults(func=cmd_download)

    pm = sub.add_parser("demo", help="generate the small SYNTHETIC demo dataset and print where it is",
                        description="Generate the deterministic SYNTHETIC perovskite demo dataset.")
    pm.add_argument("--root", default=None, help="where to write (default: $DPCDVAE_CACHE/demo)")
    pm.add_argument("--sizes", nargs=3, type=int, default=[300, 60, 60], metavar=("TRAIN", "VAL", "TEST"))
    pm.add_argument("--seed", type=int, default=0)
    pm.add_argument("--distortion", type=float, default=0.02)
    pm.add_argument("--force", action="store_true", help="regenerate even if present")
    pm.set_defaults(func=cmd_demo)

    def _no_sub(args: argparse.Namespace) -> int:
        p.print_help(sys.stderr)
        return 2

    p.set_defaults(func=_no_sub)
    return p
