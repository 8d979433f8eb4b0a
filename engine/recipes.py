"""The augmentation recipe in use: the one the next training run takes, kept in the workspace.

A small JSON file, ``<workspace>/recipe-in-use.json``: ``{"name": ..., "recipe": {...}, "start": ...}``
(``start``: the preset or saved recipe it was made from, for the dashboard's editor). Every tab,
session and restart sees the same recipe; without the file the recipe is ``none`` (no augmentation).
This module stays light (no torch): the dashboard reads it on every page.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Mapping

from engine import workspace

FILE_NAME = "recipe-in-use.json"
NONE = {"name": "none", "recipe": {}, "start": "preset:none"}


def recipe_in_use_path():
    return workspace.home() / FILE_NAME


def recipe_in_use() -> dict:
    """{"name", "recipe", "start"} of the recipe in use; ``NONE`` when none was chosen yet. A file
    that cannot be read gives ``NONE`` plus "problem" (the reason), never an exception."""
    p = recipe_in_use_path()
    if not p.is_file():
        return dict(NONE)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(d, dict) or not isinstance(d.get("recipe"), dict):
            raise ValueError("not a recipe")
    except (OSError, ValueError) as e:
        return {**NONE, "problem": f"{p} cannot be read ({e}); training uses no augmentation until "
                                   "a recipe is chosen again."}
    return {"name": str(d.get("name") or "unnamed"), "recipe": d["recipe"],
            "start": str(d.get("start") or NONE["start"])}


def save_recipe_in_use(recipe: Mapping, name: str | None = None, start: str | None = None) -> dict:
    """Validate ``recipe`` (an AugmentConfig dict; ConfigError lists what is wrong) and make it the
    workspace's recipe in use, atomically (a reader sees the old file or the new one). Returns
    what was written."""
    from engine.augment import AugmentConfig  # torch: only when writing

    d = {"name": (name or "").strip() or "unnamed", "recipe": AugmentConfig.from_dict(recipe).to_dict(),
         "start": start or NONE["start"]}
    p = recipe_in_use_path()
    fd, tmp = tempfile.mkstemp(prefix=".recipe-", suffix=".json", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(d, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return d
