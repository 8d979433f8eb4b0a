"""``taillab data ...``: look at a data source, import it, and make dataset versions.

    taillab data stats SOURCE [--json] [--many 100 --few 20 --near-threshold 4 ...]
    taillab data import ZIP_OR_FOLDER_OR_CSV [--name NAME] [--json]
    taillab data split SOURCE_OR_VERSION [--val 0.1 --test 0.2 --seed 0 | --keep-splits | --resplit]
                       [--dedupe] [--drop-class C] [--rename OLD=NEW] [--drop-under K]
                       [--longtail RATIO --profile exp] [--json]
    taillab data versions [--json]
    taillab data diff VERSION_A VERSION_B

Also runs on its own: ``python -m engine.cli_data stats SOURCE --json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.data.sources import DataError


def _progress(enabled: bool):
    if not enabled:
        return None
    state = {"last": -1}

    def report(done: int, total: int) -> None:
        pct = 100 * done // max(total, 1)
        if pct != state["last"] or done == total:
            state["last"] = pct
            print(f"\rscanning {done:,}/{total:,} files ({pct}%)", end="\n" if done == total else "",
                  file=sys.stderr, flush=True)

    return report


def _scan(source: str, args):
    from engine.data.scan import scan_folder

    # The CLI runs as the user, on their own machine: any readable path (the allowed data roots
    # guard the dashboard, whose user may not own the server).
    return scan_folder(source, progress=_progress(not args.json and sys.stderr.isatty()),
                       workers=args.workers, use_cache=not args.no_cache, check_root=False)


def _stats_kwargs(args) -> dict:
    return dict(many=args.many, few=args.few, min_side=args.min_side, max_aspect=args.max_aspect,
                near_threshold=args.near_threshold, min_class_images=args.min_class_images)


def cmd_stats(args) -> int:
    from engine.data.stats import compute_stats, format_report

    st = compute_stats(_scan(args.source, args), **_stats_kwargs(args))
    if args.json:
        print(json.dumps(st.to_dict(), ensure_ascii=False))
    else:
        print(format_report(st))
    return 0


def cmd_import(args) -> int:
    from engine.data.scan import scan_listing
    from engine.data.sources import import_source
    from engine.data.stats import compute_stats, format_report

    listing = import_source(args.source, name=args.name, check_root=False)
    scan = scan_listing(listing, progress=_progress(not args.json and sys.stderr.isatty()),
                        workers=args.workers, use_cache=not args.no_cache)
    st = compute_stats(scan, **_stats_kwargs(args))
    if args.json:
        print(json.dumps({"path": str(listing.root), "kind": listing.kind, "stats": st.to_dict()},
                         ensure_ascii=False))
    else:
        print(format_report(st))
        print(f"\nReady: {listing.root}\nNext: taillab data split {listing.root}")
    return 0


def _load_base(ref: str, args):
    """A manifest for a saved version (hash or .json) or a freshly scanned source."""
    from engine.data.manifest import load_manifest, manifest_from_scan

    p = Path(ref)
    if p.suffix.lower() == ".json" and p.is_file():
        return load_manifest(p), None
    if not p.exists() and len(ref) >= 8 and all(c in "0123456789abcdef" for c in ref.lower()):
        return load_manifest(ref), None
    from engine.data.scan import scan_listing
    from engine.data.sources import list_source

    listing = list_source(ref, check_root=False)  # keeps a CSV's second label column
    scan = scan_listing(listing, progress=_progress(not args.json and sys.stderr.isatty()),
                        workers=args.workers, use_cache=not args.no_cache)
    return manifest_from_scan(scan, listing=listing), scan


def cmd_split(args) -> int:
    from engine.data import split as ops
    from engine.data.manifest import save_manifest
    from engine.data.prepare import CONFIRM_SHARE, drop_report
    from engine.data.stats import compute_stats

    m, scan = _load_base(args.source, args)
    base = m
    warnings: list[str] = []
    if args.exclude_from:
        paths = [ln.strip() for ln in Path(args.exclude_from).read_text(encoding="utf-8").splitlines() if ln.strip()]
        m = ops.exclude_files(m, paths, reason=f"listed in {Path(args.exclude_from).name}")
    if args.exclude:
        m = ops.exclude_files(m, args.exclude)
    if args.dedupe:
        if scan is None:
            raise DataError("--dedupe needs a source folder or CSV (a saved version has no image facts).")
        st = compute_stats(scan, near_threshold=args.near_threshold)
        if args.near and not st.near_separable:
            warnings.append(st.near_search.note)  # near duplicates are left alone
        m = ops.dedupe(m, st.duplicates + (st.near_fixable if args.near else []),
                       drop_conflicts=args.drop_conflicts)
    if args.drop_class:
        m = ops.drop_classes(m, args.drop_class)
    if args.rename:
        mapping = {}
        for item in args.rename:
            old, sep, new = item.partition("=")
            if not sep:
                raise DataError(f"--rename takes OLD=NEW, got {item!r}.")
            mapping[old] = new
        m = ops.rename_classes(m, mapping)
    if args.drop_under:
        m = ops.drop_small_classes(m, args.drop_under)
    # What the fixes leave out (classes dropped by name are a choice, not counted), the same
    # figures the Data page shows; a split losing more than CONFIRM_SHARE needs --yes.
    drops = drop_report(ops.drop_classes(base, args.drop_class) if args.drop_class else base, m)
    if drops.total and not args.json:
        print("Left out by the fixes:\n" + "\n".join(f"  {line}" for line in drops.lines()), file=sys.stderr)
    if drops.large() and not args.yes:
        raise DataError(f"The fixes would leave out more than {CONFIRM_SHARE:.0%} of the "
                        f"{' and '.join(drops.large())} split(s) ({'; '.join(drops.lines())}). "
                        "Check the list and add --yes to go ahead.")
    # A source (or version) that already splits every image keeps its splits unless told otherwise.
    auto_keep = m.is_split and args.val is None and args.test is None and not args.resplit
    if args.keep_splits or auto_keep:
        carve = args.val_from_train if args.val_from_train is not None else (0.0 if args.keep_splits else 0.1)
        m, w = ops.keep_source_splits(m, val_from_train=carve, seed=args.seed, min_val=args.min_val)
    else:
        m, w = ops.stratified_split(m, val=0.1 if args.val is None else args.val,
                                    test=0.2 if args.test is None else args.test, seed=args.seed,
                                    min_val=args.min_val, min_test=args.min_test)
    warnings += w
    if args.longtail:
        m, w = ops.longtail_subset(m, ratio=args.longtail, profile=args.profile, n_max=args.n_max,
                                   seed=args.seed)
        warnings += w
    path = save_manifest(m)
    if args.json:
        print(json.dumps({"hash": m.hash, "path": str(path), "num_images": m.num_images,
                          "num_classes": len(m.classes), "class_counts": m.class_counts,
                          "left_out": drops.to_dict(),
                          "actions": list(m.actions), "warnings": warnings}, ensure_ascii=False))
        return 0
    counts = m.class_counts
    splits = list(counts)
    print(f"Dataset version {m.short_hash}  ({m.num_images:,} images, {len(m.classes)} classes)")
    print(f"Saved: {path}")
    print(f"{'class':<30} " + " ".join(f"{s:>7}" for s in splits))
    for c in m.classes:
        print(f"{c[:30]:<30} " + " ".join(f"{counts[s][c]:>7}" for s in splits))
    for a in m.actions:
        print(f"  - {a}")
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def cmd_versions(args) -> int:
    """Saved versions, newest first, with the names they were saved under: the Data page's list."""
    from engine.data.library import list_versions
    from engine.store import open_store

    names = {v.id: v.name for v in open_store().list_dataset_versions()}
    infos = list_versions(names)
    if args.json:
        print(json.dumps([v.to_dict() for v in infos], ensure_ascii=False))
        return 0
    if not infos:
        print("No dataset versions yet: taillab data split SOURCE makes one.")
    for v in infos:
        print(f"{v.hash[:16]}  {v.created}  {v.images:>8,} images  {v.classes:>4} classes  {v.splits}  "
              f"{v.name or v.source}")
    return 0


def cmd_diff(args) -> int:
    from engine.data.manifest import diff_counts, load_manifest

    a, b = load_manifest(args.a), load_manifest(args.b)
    rows = diff_counts(a, b)
    if args.json:
        print(json.dumps([{"class": r.label, "split": r.split, "a": r.a, "b": r.b, "delta": r.delta}
                          for r in rows], ensure_ascii=False))
        return 0
    print(f"{'class':<30} {'split':<8} {a.short_hash:>16} {b.short_hash:>16} {'change':>8}")
    for r in rows:
        if r.a or r.b:
            print(f"{r.label[:30]:<30} {r.split:<8} {r.a:>16} {r.b:>16} {r.delta:>+8}")
    return 0


def _guard(func):
    """Run a command; a DataError becomes a one-line message and exit status 2."""
    def run(args) -> int:
        try:
            return func(args)
        except DataError as e:
            print(f"taillab: error: {e}", file=sys.stderr)
            return 2
    return run


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``data`` command group to an argparse subparsers object."""
    data = subparsers.add_parser("data", help="inspect data sources and make dataset versions",
                                 description=__doc__.split("\n\n")[0])
    sub = data.add_subparsers(dest="data_command", required=True)

    def common(p, *, stats: bool = True) -> None:
        p.add_argument("--json", action="store_true", help="print one JSON object")
        p.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
        p.add_argument("--no-cache", action="store_true", help="decode every image again")
        if stats:
            p.add_argument("--many", type=int, default=100, help="many-shot: more images than this")
            p.add_argument("--few", type=int, default=20, help="few-shot: fewer images than this")
            p.add_argument("--min-side", type=int, default=16, help="tiny: a side under this many px")
            p.add_argument("--max-aspect", type=float, default=4.0, help="extreme: long/short side above")
            p.add_argument("--min-class-images", type=int, default=10, help="flag classes with fewer")
        p.add_argument("--near-threshold", type=int, default=4,
                       help="near duplicates: dHash distance at most this (of 64 bits)")

    p = sub.add_parser("stats", help="counts, imbalance, image properties and problems of a source")
    p.add_argument("source", help="a folder (one sub-folder per class) or a CSV manifest")
    common(p)
    p.set_defaults(func=_guard(cmd_stats))

    p = sub.add_parser("import", help="extract a zip into the workspace (or check a folder / CSV)")
    p.add_argument("source", help="a .zip, a folder or a CSV manifest")
    p.add_argument("--name", help="dataset folder name for a zip (default: the zip's name)")
    common(p)
    p.set_defaults(func=_guard(cmd_import))

    p = sub.add_parser("split", help="clean up and split a source into a saved dataset version")
    p.add_argument("source", help="a folder, a CSV manifest, or a saved version (hash or .json)")
    common(p, stats=False)
    p.add_argument("--val", type=float, help="share of each class for validation (default 0.1)")
    p.add_argument("--test", type=float, help="share of each class for testing (default 0.2)")
    p.add_argument("--min-val", type=int, default=1, help="at least this many val images per class")
    p.add_argument("--min-test", type=int, default=1, help="at least this many test images per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-splits", action="store_true",
                   help="use the source's own splits (the default when every image has one)")
    p.add_argument("--resplit", action="store_true", help="split again even if the source has splits")
    p.add_argument("--val-from-train", type=float,
                   help="keeping splits without a val split: move this share of train to val "
                        "(default 0.1 when splits are kept automatically, else 0)")
    p.add_argument("--exclude", action="append", default=[], metavar="PATH", help="leave a file out")
    p.add_argument("--exclude-from", metavar="FILE", help="leave out the files listed (one a line)")
    p.add_argument("--dedupe", action="store_true", help="keep one file of each exact-duplicate group")
    p.add_argument("--near", action="store_true", help="with --dedupe: near duplicates too")
    p.add_argument("--drop-conflicts", action="store_true",
                   help="with --dedupe: drop all copies of an image filed under different classes")
    p.add_argument("--drop-class", action="append", default=[], metavar="CLASS")
    p.add_argument("--rename", action="append", default=[], metavar="OLD=NEW",
                   help="rename a class; several to one name merges them")
    p.add_argument("--drop-under", type=int, default=0, metavar="K", help="drop classes under K images")
    p.add_argument("--yes", action="store_true",
                   help="go ahead even if the fixes leave out more than 5%% of a split")
    p.add_argument("--longtail", type=float, metavar="RATIO", help="make the training split long-tailed")
    p.add_argument("--profile", choices=["exp", "step"], default="exp")
    p.add_argument("--n-max", type=int, help="training images of the largest class (default: most possible)")
    p.set_defaults(func=_guard(cmd_split))

    p = sub.add_parser("versions", help="saved dataset versions (manifests in the workspace)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guard(cmd_versions))

    p = sub.add_parser("diff", help="class counts of two dataset versions side by side")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guard(cmd_diff))
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.cli_data")
    register(parser.add_subparsers(dest="command", required=True))
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "data":  # standalone: "stats SOURCE" as well as "data stats SOURCE"
        argv = ["data", *argv]
    args = parser.parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
