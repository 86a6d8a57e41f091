"""Command line: ``python -m dfa_lib.data.corpus build --root data --seed 0 [--smoke]``.

``install-fargan`` builds the FARGAN vocoder from Debian's opus source into an environment (``make setup`` runs it).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from dfa_lib.data.corpus.build import build_offline_corpus
from dfa_lib.data.corpus.fargan import FarganUnavailableError, install_fargan


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, build the corpora and print where their manifests are."""
    parser = argparse.ArgumentParser(prog="python -m dfa_lib.data.corpus", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build offline-main and offline-cross")
    build.add_argument("--root", default="data", help="folder that receives the corpora")
    build.add_argument("--seed", type=int, default=0, help="seed of splits and voice choices")
    build.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    build.add_argument("--smoke", action="store_true", help="a tiny corpus for CI (seconds)")
    build.add_argument("--no-cross", action="store_true", help="skip the cross-source set")
    build.add_argument(
        "--verify",
        action="store_true",
        help="check every clip's SHA-256 against the manifest and rebuild what differs",
    )
    fargan = sub.add_parser("install-fargan", help="build the FARGAN vocoder program")
    fargan.add_argument("--prefix", default=None, help="environment folder (default: this one)")
    args = parser.parse_args(argv)

    if args.command == "install-fargan":
        try:
            print(f"installed {install_fargan(args.prefix)}")
        except FarganUnavailableError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0

    start = time.perf_counter()
    manifest = build_offline_corpus(
        args.root,
        seed=args.seed,
        workers=args.workers,
        smoke=args.smoke,
        include_cross=not args.no_cross,
        verify=args.verify,
    )
    print(f"{manifest} ready in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
