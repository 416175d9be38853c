"""Your own classes: task heads fitted on the device from k examples per class, against what a
user could do instead.

Two runs of the same data set and preset: one trained with `--hold-out-classes` (it never saw
those classes; its bundle carries none of them) and one trained on every class (the ceiling a
user who could retrain would get). Both are exported as default bundles and used through the
device's own code (runtime/adapt.py, runtime/head_fit.py), numpy engine, BN on the bundle's
all-class images.

- New-class tasks: `--tasks` tasks of 2-5 classes with at least one held-out class: every task
  inside one superclass that holds its held-out class (13 on Fashion with Coat, Sneaker and Bag
  held out, one per superclass), the rest across superclasses. Methods: nearest class mean on raw pixels; imprinting only; the fitted head
  (held-out run, task vector by the "all" rule; the "nearest" rule at k=10 too); the masked head
  of the full-data run on the same task at the same budget (the ceiling).
- Known-class tasks: `--tasks` tasks of known classes; the fitted head against the masked head,
  both on the full-data run.
- k = 5, 10, 20 shots per class, `--draws` draws of the shots from the train split (nested: the
  5 are the first 5 of the 10); accuracy on every image of the task's classes in `--split`.
  A task's figure is its mean over draws; differences are paired by task, 95 % bootstrap CIs.
- Cost: features plus fit for 10 classes x 20 shots at 1 thread (median of 5), peak extra memory
  by tracemalloc.

`--split val` chooses the fit's settings (`--pulls KNOWN:NEW,...`): the pair with the best mean
accuracy over new- and known-class tasks at k=10. The test split only reports, with the settings
fixed in HeadFitConfig.

    python -m benchmarks.fewshot --held-out-run RUN_H --full-run RUN_F [--split test]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import RESULTS, add_allow_dirty, paired, require_clean_tree, save_result
from edge_eas.data import load_dataset
from edge_eas.host.bundle import export_bundle
from edge_eas.host.rundir import RunDir
from edge_eas.runtime import Runtime
from edge_eas.runtime.adapt import features, fit_examples, mean_feature
from edge_eas.runtime.examples import load_examples
from edge_eas.runtime.head_fit import HeadFitConfig, accuracy, fit_head, start_head

SHOTS = (5, 10, 20)
RULE_SHOTS = 10
BULK_BATCH = 256  # the benchmark's own feature pass over every image (the device adapts 16 at a time)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--held-out-run", type=Path, required=True)
    p.add_argument("--full-run", type=Path, required=True)
    p.add_argument("--split", choices=["val", "test"], default="test")
    p.add_argument("--tasks", type=int, default=30)
    p.add_argument("--draws", type=int, default=10)
    p.add_argument("--pulls", default="", help="comma-separated KNOWN:NEW pulls to compare (selection on --split val)")
    p.add_argument("--seed", type=int, default=0)
    add_allow_dirty(p)
    args = p.parse_args()
    require_clean_tree(args.allow_dirty)
    meta_h, meta_f = RunDir(args.held_out_run).meta(), RunDir(args.full_run).meta()
    held = [int(c) for c in meta_h["config"].get("hold_out_classes") or ()]
    if not held:
        raise SystemExit(f"{args.held_out_run} holds out no classes (train it with --hold-out-classes)")
    data = load_dataset(meta_f["data"], seed=meta_f["config"]["seed"])  # every class, the full run's splits
    if meta_h["config"]["seed"] != meta_f["config"]["seed"]:
        raise SystemExit("the two runs split the data with different seeds: their images would not be comparable")
    default = HeadFitConfig()
    pulls = [tuple(float(x) for x in v.split(":")) for v in args.pulls.split(",") if v] or \
        [(default.pull, default.pull_new)]
    with tempfile.TemporaryDirectory(prefix="eas-fewshot-") as tmp:
        rts = {}
        for name, run in (("held_out", args.held_out_run), ("full", args.full_run)):
            export_bundle(run, Path(tmp) / f"{name}.eas")
            rts[name] = Runtime.load(Path(tmp) / f"{name}.eas", trusted_keys=[])
        result = Bench(rts["held_out"], rts["full"], data, held, args).run(pulls)
    result.update({"held_out_run": str(args.held_out_run), "full_run": str(args.full_run),
                   "held_out_run_commit": meta_h.get("commit"), "full_run_commit": meta_f.get("commit")})
    name = f"fewshot_{meta_f['data'].split(':')[0]}"
    val = RESULTS / f"{name}_val.json"
    if args.split == "test" and val.is_file():  # where the settings came from
        doc = json.loads(val.read_text())
        result["selection_from_val"] = {"file": val.name, "commit": doc.get("commit"), **doc["selection"]}
    save_result(name if args.split == "test" else f"{name}_val", result, args.allow_dirty)


class Bench:
    """Features per arch are computed once for every image the benchmark can touch (the split's
    images and the shot pool), then every head is fitted on them."""

    def __init__(self, rt_h: Runtime, rt_f: Runtime, data: Any, held: list[int], args: argparse.Namespace) -> None:
        self.rt_h, self.rt_f, self.data, self.held, self.args = rt_h, rt_f, data, held, args
        self.names = list(data.class_names)
        self.h_id = {n: i for i, n in enumerate(rt_h.classes)}  # full id -> held-out run id via the name
        x_eval, y_eval = data.split(args.split)
        x_train, y_train = data.split("train")
        rng = np.random.default_rng(args.seed)
        pool = {c: rng.permutation(np.where(y_train == c)[0])[:args.draws * max(SHOTS)] for c in range(len(self.names))}
        self.shot_idx = {c: pool[c].reshape(args.draws, max(SHOTS)) for c in pool}  # draw -> nested shots
        self.images = np.concatenate([x_eval, x_train[np.concatenate([pool[c] for c in pool])]])
        self.n_eval = len(x_eval)
        self.y_eval = y_eval
        offsets = np.cumsum([0] + [len(pool[c]) for c in pool])
        self.pool_at = {c: self.n_eval + offsets[i] + np.arange(len(pool[c])).reshape(args.draws, -1)
                        for i, c in enumerate(pool)}
        # the middle of the space (geometric mean of its smallest and largest arch's MFLOPs), the same for every method
        space = rt_h.space
        self.budget = float(np.sqrt(rt_h.generator.cost(space.smallest()) * rt_h.generator.cost(space.largest())))
        self._cache: dict[tuple[str, str], tuple[Any, np.ndarray, np.ndarray]] = {}

    # ---- features ------------------------------------------------------------------------------
    def network(self, which: str, classes: list[int]) -> tuple[Any, np.ndarray, np.ndarray]:
        """(the all-class folded net of the arch the generator picks for `classes` at the budget,
        features of every image, the mean feature of the bundle's calibration images) for run `which`."""
        rt = self.rt_h if which == "held_out" else self.rt_f
        arch = rt.specialize(classes=classes, budget_mflops=self.budget, engine="numpy").arch
        key = (which, arch.to_json())
        if key not in self._cache:
            folded = rt.specialize(classes=list(range(rt.num_classes)), arch=arch, engine="numpy").folded
            t = time.perf_counter()
            centre = mean_feature(folded, rt.preprocess(rt.bundle.calibration()[0]))
            self._cache[key] = (folded, features(folded, rt.preprocess(self.images), batch=BULK_BATCH), centre)
            print(f"  features of {len(self.images)} images on {which} arch {arch.to_json()} "
                  f"({time.perf_counter() - t:.1f} s)", flush=True)
        return self._cache[key]

    def eval_rows(self, task: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the task's evaluation images and their label index in the task."""
        sel = np.where(np.isin(self.y_eval, task))[0]
        row = np.full(len(self.names), -1)
        row[task] = np.arange(len(task))
        return sel, row[self.y_eval[sel]]

    def shots(self, task: list[int], draw: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        idx = np.concatenate([self.pool_at[c][draw, :k] for c in task])
        return idx, np.repeat(np.arange(len(task)), k)

    # ---- methods -------------------------------------------------------------------------------
    def head_scores(self, net: tuple[Any, np.ndarray, np.ndarray], task: list[int], known_rows: list[int | None],
                    pulls: list[tuple[float, float]]) -> dict[str, dict[int, list[float]]]:
        """imprint / fitted (per pull pair) accuracy per k, one value per draw."""
        folded, feats, centre = net
        ev, ev_y = self.eval_rows(task)
        shared = folded.classifier()
        new = np.array([r is None for r in known_rows])
        out: dict[str, dict[int, list[float]]] = {"imprint": {k: [] for k in SHOTS}}
        out.update({fit_key(p): {k: [] for k in SHOTS} for p in pulls})
        for k in SHOTS:
            for d in range(self.args.draws):
                idx, y = self.shots(task, d, k)
                w0, b0 = start_head(feats[idx], y, shared.weight, shared.bias, known_rows, centre)
                out["imprint"][k].append(accuracy(feats[ev], ev_y, w0, b0))
                for p in pulls:
                    fitted = fit_head(feats[idx], y, w0, b0, HeadFitConfig(pull=p[0], pull_new=p[1]), new)
                    out[fit_key(p)][k].append(accuracy(feats[ev], ev_y, fitted.weight, fitted.bias))
        return out

    def pixel_ncm(self, task: list[int]) -> dict[int, list[float]]:
        ev, ev_y = self.eval_rows(task)
        flat = self.images.reshape(len(self.images), -1).astype(np.float32) / 255.0
        out: dict[int, list[float]] = {k: [] for k in SHOTS}
        for k in SHOTS:
            for d in range(self.args.draws):
                idx, y = self.shots(task, d, k)
                means = np.stack([flat[idx[y == r]].mean(0) for r in range(len(task))])
                dist = (flat[ev] ** 2).sum(1)[:, None] - 2 * flat[ev] @ means.T + (means ** 2).sum(1)[None]
                out[k].append(float(np.mean(dist.argmin(1) == ev_y)))
        return out

    def masked(self, task: list[int]) -> float:
        """The full-data run's own head for the task (its arch at the budget): the ceiling."""
        folded, feats, _ = self.network("full", task)
        ev, ev_y = self.eval_rows(task)
        shared = folded.classifier()
        return accuracy(feats[ev], ev_y, shared.weight[task], shared.bias[task])

    def nearest_rule(self, task: list[int], known_rows: list[int | None], pull: tuple[float, float]) -> list[float]:
        """The fitted head at RULE_SHOTS with the arch the "nearest" rule picks, per draw."""
        folded_all, feats_all, _ = self.network("held_out", list(range(self.rt_h.num_classes)))
        shared = folded_all.classifier()
        ev, ev_y = self.eval_rows(task)
        out = []
        for d in range(self.args.draws):
            idx, y = self.shots(task, d, RULE_SHOTS)
            logits = feats_all[idx] @ shared.weight.T + shared.bias
            prob = np.exp(logits - logits.max(1, keepdims=True))
            prob /= prob.sum(1, keepdims=True)
            taken = {r for r in known_rows if r is not None}
            for row, known in enumerate(known_rows):
                if known is None:
                    mean = prob[y == row].mean(0)
                    mean[sorted(taken)] = -1
                    taken.add(int(mean.argmax()))
            folded, feats, centre = self.network("held_out", sorted(taken))
            w0, b0 = start_head(feats[idx], y, folded.classifier().weight, folded.classifier().bias, known_rows, centre)
            fitted = fit_head(feats[idx], y, w0, b0, HeadFitConfig(pull=pull[0], pull_new=pull[1]),
                              np.array([r is None for r in known_rows]))
            out.append(accuracy(feats[ev], ev_y, fitted.weight, fitted.bias))
        return out

    # ---- the run -------------------------------------------------------------------------------
    def run(self, pulls: list[tuple[float, float]]) -> dict[str, Any]:
        new_tasks = self.new_class_tasks()
        known_tasks = self.known_class_tasks()
        all_h = list(range(self.rt_h.num_classes))
        net_h = self.network("held_out", all_h)
        new_rows: list[dict[str, Any]] = []
        for i, t in enumerate(new_tasks):
            known_rows = [self.h_id.get(self.names[c]) if c not in self.held else None for c in t["classes"]]
            scores = self.head_scores(net_h, t["classes"], known_rows, pulls)
            scores["pixel_ncm"] = self.pixel_ncm(t["classes"])
            row = {**t, "scores": scores, "ceiling": self.masked(t["classes"])}
            if self.args.split == "test" or len(pulls) == 1:
                row["nearest_rule"] = self.nearest_rule(t["classes"], known_rows, pulls[0])
            new_rows.append(row)
            print(f"new task {i:2d} {[self.names[c] for c in t['classes']]}: pixels "
                  f"{100 * np.mean(scores['pixel_ncm'][10]):.1f} imprint {100 * np.mean(scores['imprint'][10]):.1f} "
                  f"fit {100 * np.mean(scores[fit_key(pulls[0])][10]):.1f} ceiling {100 * row['ceiling']:.1f} (k=10)",
                  flush=True)
        known_rows_out: list[dict[str, Any]] = []
        for i, t in enumerate(known_tasks):
            scores = self.head_scores(self.network("full", t["classes"]), t["classes"], list(t["classes"]), pulls)
            known_rows_out.append({**t, "scores": scores, "masked": self.masked(t["classes"])})
            print(f"known task {i:2d}: masked {100 * known_rows_out[-1]['masked']:.2f} fit "
                  f"{100 * np.mean(scores[fit_key(pulls[0])][10]):.2f} (k=10)", flush=True)
        return {"split": self.args.split, "budget_mflops": self.budget, "held_out_classes": self.held,
                "held_out_names": [self.names[c] for c in self.held], "shots": list(SHOTS), "draws": self.args.draws,
                "pulls": [list(p) for p in pulls], "fit_config": HeadFitConfig().to_dict(), "seed": self.args.seed,
                "sample": {"new_class_tasks": len(new_tasks), "known_class_tasks": len(known_tasks),
                           "draws": self.args.draws, "eval_images_per_class":
                               int(np.bincount(self.y_eval).min())},
                "new_class": summarise_new(new_rows, pulls, self.names, self.held, self.args.seed),
                "known_class": summarise_known(known_rows_out, pulls, self.args.seed),
                "selection": select_pull(new_rows, known_rows_out, pulls),
                "cost": self.cost(), "new_tasks": strip(new_rows), "known_tasks": strip(known_rows_out)}

    def new_class_tasks(self) -> list[dict[str, Any]]:
        """Every task inside one superclass that holds its held-out class (with one held-out class
        per superclass there are only 7 + 3 + 3 of them on Fashion), then tasks across superclasses,
        each with a held-out class, drawn from --seed, up to --tasks. Every task holds at least
        one held-out class."""
        from itertools import combinations
        tasks: list[dict[str, Any]] = []
        for g, ids in sorted(self.data.class_groups.items()):
            for new in (c for c in ids if c in self.held):
                rest = [c for c in ids if c != new]
                for size in range(1, len(rest) + 1):
                    for more in combinations(rest, size):
                        tasks.append({"classes": sorted([new, *more]), "group": g})
        tasks = tasks[:self.args.tasks // 2] if len(tasks) > self.args.tasks // 2 else tasks
        rng = np.random.default_rng(self.args.seed + 101)
        seen = {tuple(t["classes"]) for t in tasks}
        while len(tasks) < self.args.tasks:
            must = [int(rng.choice(self.held))]
            rest = [c for c in range(len(self.names)) if c not in must]
            key = tuple(sorted(must + [int(c) for c in rng.choice(rest, int(rng.integers(1, 5)), replace=False)]))
            if key in seen or any(set(key) <= set(ids) for ids in self.data.class_groups.values()):
                continue
            seen.add(key)
            tasks.append({"classes": list(key), "group": None})
        return [{"id": i, **t, "new": [c for c in t["classes"] if c in self.held]} for i, t in enumerate(tasks)]

    def known_class_tasks(self) -> list[dict[str, Any]]:
        """Tasks of 2-5 classes the full-data run knows: half inside one superclass (drawn from all
        such tasks), half across, from --seed."""
        from itertools import combinations
        rng = np.random.default_rng(self.args.seed + 202)
        inside = [(g, list(c)) for g, ids in sorted(self.data.class_groups.items())
                  for size in range(2, min(5, len(ids)) + 1) for c in combinations(ids, size)]
        picked = rng.permutation(len(inside))[:self.args.tasks // 2] if inside else []
        tasks = [{"classes": inside[i][1], "group": inside[i][0]} for i in sorted(picked)]
        seen = {tuple(t["classes"]) for t in tasks}
        while len(tasks) < self.args.tasks:
            key = tuple(sorted(int(c) for c in rng.choice(len(self.names), int(rng.integers(2, 6)), replace=False)))
            if key in seen or any(set(key) <= set(ids) for ids in self.data.class_groups.values()):
                continue
            seen.add(key)
            tasks.append({"classes": list(key), "group": None})
        return [{"id": i, **t} for i, t in enumerate(tasks)]

    def cost(self) -> dict[str, Any]:
        """Features + fit for 10 classes x 20 shots (the held-out run's classes known, its held-out
        ones new) at 1 thread, through the runtime's own code path; median of 5, peak by tracemalloc."""
        from threadpoolctl import threadpool_limits  # lazy: the runtime extra has it
        classes = list(range(len(self.names)))
        images = {self.names[c] if c in self.held else self.h_id[self.names[c]]:
                  self.images[self.pool_at[c][0, :20]] for c in classes}
        folded, _, centre = self.network("held_out", list(range(self.rt_h.num_classes)))
        examples = load_examples(images, self.rt_h.preprocess, self.rt_h.classes)
        with threadpool_limits(limits=1, user_api="blas"):
            fit_examples(folded, examples, centre)  # warm
            times = []
            for _ in range(5):
                t = time.perf_counter()
                fit_examples(folded, examples, centre)
                times.append(time.perf_counter() - t)
            tracemalloc.start()
            fit_examples(folded, examples, centre)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        return {"labels": len(images), "shots": 20, "threads": 1, "seconds_median": float(np.median(times)),
                "seconds_all": times, "peak_extra_mib": peak / 2 ** 20,
                "feature_dim": int(folded.classifier().weight.shape[1]), "what": "features of the examples + fit"}


def task_means(rows: list[dict[str, Any]], method: str, k: int) -> list[dict[str, Any]]:
    return [{"test_accuracy": float(np.mean(r["scores"][method][k]))} for r in rows]


def fit_key(pull: tuple[float, float]) -> str:
    return f"fit_{pull[0]:g}_{pull[1]:g}"


def summarise_new(rows: list[dict[str, Any]], pulls: list[tuple[float, float]], names: list[str], held: list[int],
                  seed: int) -> dict[str, Any]:
    fit = fit_key(pulls[0])
    out: dict[str, Any] = {}
    subsets = {"all": list(range(len(rows)))}
    for g in sorted({r["group"] for r in rows if r["group"]}):
        subsets[f"in_{g}"] = [i for i, r in enumerate(rows) if r["group"] == g]
    subsets["across_groups"] = [i for i, r in enumerate(rows) if r["group"] is None]
    coat = [i for i, r in enumerate(rows) if r["group"] == "tops" and any(names[c] == "Coat" for c in r["new"])]
    if coat:
        subsets["coat_in_tops"] = coat
    for k in SHOTS:
        methods = {m: task_means(rows, m, k) for m in ("pixel_ncm", "imprint", fit)}
        methods["ceiling"] = [{"test_accuracy": r["ceiling"]} for r in rows]
        if k == RULE_SHOTS and all("nearest_rule" in r for r in rows):
            methods["fit_nearest_rule"] = [{"test_accuracy": float(np.mean(r["nearest_rule"]))} for r in rows]
        out[f"k{k}"] = {name: {"tasks": len(idx),
                               "mean_accuracy": {m: float(np.mean([v[i]["test_accuracy"] for i in idx]))
                                                 for m, v in methods.items()},
                               "fit_minus": paired(methods, fit, idx, seed)}
                        for name, idx in subsets.items() if idx}
    return out


def summarise_known(rows: list[dict[str, Any]], pulls: list[tuple[float, float]], seed: int) -> dict[str, Any]:
    fit = fit_key(pulls[0])
    out = {}
    for k in SHOTS:
        methods = {fit: task_means(rows, fit, k), "masked": [{"test_accuracy": r["masked"]} for r in rows]}
        idx = list(range(len(rows)))
        out[f"k{k}"] = {"mean_accuracy": {m: float(np.mean([v["test_accuracy"] for v in rows_]))
                                          for m, rows_ in methods.items()},
                        "fit_minus": paired(methods, fit, idx, seed)}
    return out


def select_pull(new_rows: list[dict[str, Any]], known_rows: list[dict[str, Any]], pulls: list[tuple[float, float]]
                ) -> dict[str, Any]:
    """Mean accuracy at k=10 over new- and known-class tasks (each half the weight) per pull pair."""
    score = {}
    for p in pulls:
        m = fit_key(p)
        new = np.mean([np.mean(r["scores"][m][RULE_SHOTS]) for r in new_rows])
        known = np.mean([np.mean(r["scores"][m][RULE_SHOTS]) for r in known_rows])
        score[m] = {"new": float(new), "known": float(known), "mean": float((new + known) / 2)}
    best = max(score, key=lambda k: score[k]["mean"])
    return {"rule": "best mean of new- and known-class accuracy at k=10", "scores": score, "best": best}


def strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task: per-method per-k means over draws (the draws themselves stay out of the JSON)."""
    out = []
    for r in rows:
        s = {m: {f"k{k}": float(np.mean(v)) for k, v in per_k.items()} for m, per_k in r["scores"].items()}
        extra = {"nearest_rule_k10": float(np.mean(r["nearest_rule"]))} if "nearest_rule" in r else {}
        out.append({**{k: v for k, v in r.items() if k not in ("scores", "nearest_rule")}, "scores": s, **extra})
    return out


if __name__ == "__main__":
    main()
