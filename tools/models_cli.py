"""`ideud-video models list|fetch NAME|verify [NAME] [--models-dir DIR]`.

Errors are one line on stderr and a non-zero exit; never a traceback.
Exit codes: 0 ok, 1 a model is missing/corrupt/unavailable, 2 bad usage.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from ideud.models import registry
from ideud.stream.errors import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ideud-video models", description="Manage downloadable model weights.")
    p.add_argument("--models-dir", default=None, help="models directory (default: $IDEUD_MODELS_DIR or the user cache)")
    sub = p.add_subparsers(dest="cmd", parser_class=_Parser)
    sub.add_parser("list", help="list known models and whether they are present")
    f = sub.add_parser("fetch", help="download and verify a model")
    f.add_argument("name")
    f.add_argument("--force", action="store_true", help="download even if a verified copy exists")
    f.add_argument("--no-progress", action="store_true")
    v = sub.add_parser("verify", help="check size and SHA-256 of present models")
    v.add_argument("name", nargs="?", help="one model (default: every model present)")
    # --models-dir is accepted after the subcommand too
    for sp in (sub.choices["list"], f, v):
        sp.add_argument("--models-dir", dest="models_dir_sub", default=None, help=argparse.SUPPRESS)
    return p


def _human(n: Optional[int]) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _cmd_list(models_dir) -> int:
    root = registry.resolve_models_dir(models_dir)
    print(f"models dir: {root}")
    rows = []
    for name in sorted(registry.REGISTRY):
        e = registry.REGISTRY[name]
        path = root / e.filename
        state = "present" if path.is_file() else "absent"
        rows.append((name, _human(e.size), state, e.licence))
    w = [max(len(r[i]) for r in rows + [("NAME", "SIZE", "STATE", "LICENCE")]) for i in range(3)]
    print(f"{'NAME':<{w[0]}}  {'SIZE':>{w[1]}}  {'STATE':<{w[2]}}  LICENCE")
    for r in rows:
        print(f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:<{w[2]}}  {r[3]}")
    return 0


def _cmd_fetch(name, models_dir, force, progress) -> int:
    path = registry.fetch(name, models_dir, force=force, progress=progress)
    res = registry.verify(name, models_dir)
    print(res.message if res.usable else f"{name}: fetched to {path}")
    return 0 if res.usable else 1


def _cmd_verify(name, models_dir) -> int:
    root = registry.resolve_models_dir(models_dir)
    if name:
        registry.get_entry(name)
        names = [name]
    else:
        names = [n for n in sorted(registry.REGISTRY) if (root / registry.REGISTRY[n].filename).is_file()]
        if not names:
            print(f"no models in {root}; run `ideud-video models fetch {registry.DEFAULT_GAN}`")
            return 1
    bad = 0
    for n in names:
        res = registry.verify(n, models_dir)
        print(res.message)
        bad += res.status not in ("ok", "unverified")
    return 1 if bad else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        if args.cmd is None:
            raise UsageError("choose a command: list, fetch NAME, verify [NAME]")
        models_dir = args.models_dir_sub or args.models_dir
        if args.cmd == "list":
            return _cmd_list(models_dir)
        if args.cmd == "fetch":
            return _cmd_fetch(args.name, models_dir, args.force, not args.no_progress)
        return _cmd_verify(args.name, models_dir)
    except UsageError as e:
        print(f"ideud-video models: error: {e}", file=sys.stderr)
        return 2
    except registry.ModelUnavailable as e:
        print(f"ideud-video models: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"ideud-video models: {e.strerror or e}: {getattr(e, 'filename', '') or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ideud-video models: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
