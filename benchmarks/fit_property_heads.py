"""Fit the property heads shipped with the pretrained models (``dpcdvae/weights/heads/<name>.pt`` + card).

    OMP_NUM_THREADS=1 python benchmarks/fit_property_heads.py perov_5 carbon_24 [--out dpcdvae/weights/heads]

Each head is :func:`dpcdvae.workflows.optimize.fit_property_head` on the model's own training split (Carbon-24: its
validation split, every 10th crystal held out), seed 0. Prints one JSON line per model (the card) and a final line.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import subprocess
from pathlib import Path

from dpcdvae.models import list_pretrained, load_model
from dpcdvae.workflows.optimize import HEADS_DIR, fit_property_head, save_head


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="+")
    ap.add_argument("--out", default=str(HEADS_DIR))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    cards = {}
    for name in a.names:
        model = load_model(f"pretrained:{name}")
        split = model.card.get("train_split", "train")
        head, rep = fit_property_head(model, model.card["dataset"], split=split,
                                      val_split="val" if split == "train" else split, seed=a.seed, progress=False)
        save_head(head, Path(a.out) / f"{name}.pt")
        # the weights the head was fitted on: tests/workflows/test_optimize.py checks it against the shipped file
        weights = next(c["file"] for c in list_pretrained() if c["name"] == name)
        sha = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
        rep.update({"model": f"pretrained:{name}", "model_sha256": sha, "commit": commit,
                    "date": datetime.date.today().isoformat(),
                    "command": f"python benchmarks/fit_property_heads.py {name} --seed {a.seed}"})
        (Path(a.out) / f"{name}.json").write_text(json.dumps(rep, indent=1) + "\n")
        cards[name] = rep
        print(json.dumps(rep), flush=True)
    print(json.dumps({"heads": {k: {"val_mae": v["val_mae"], "val_r2": v["val_r2"]} for k, v in cards.items()}}))


if __name__ == "__main__":
    main()
