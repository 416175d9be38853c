"""README sections for the Fashion-MNIST results (used by readme_results.py). Each table opens
with one plain sentence, derived from the JSON's own verdicts, saying who won, tied or lost."""

from __future__ import annotations

from typing import Any

VERB = {"win": "beats", "loss": "loses to", "tie": "ties with"}


def pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def ci(c: dict[str, Any]) -> str:
    return f"{c['mean_pp']:+.2f} pp [{c['ci95_pp'][0]:+.2f}, {c['ci95_pp'][1]:+.2f}]"


def training_section(doc: dict[str, Any]) -> list[str]:
    a, cfg = doc["accuracy"], doc["config"]
    secs = doc["train_wall_seconds"] or doc["supernet_seconds"] + (doc["generator_seconds"] or 0)
    ok = a["largest"]["all_class_accuracy"] >= 0.91 and a["smallest"]["all_class_accuracy"] >= 0.87
    lines = ["### Fashion-MNIST: the default training on 2 CPU cores", "",
             f"`edge_eas train --data fashion-mnist` trained for **{secs / 60:.1f} min**"
             f"{' wall clock' if doc['train_wall_seconds'] else ' (supernet + generator, data loading excluded)'} "
             f"(goal ≤ 45; supernet "
             f"{doc['supernet_seconds'] / 60:.1f} min for {cfg['epochs']} epochs, generator "
             f"{(doc['generator_seconds'] or 0) / 60:.1f} min). The targets (largest ≥ 91 %, smallest ≥ 87 % on all "
             f"10 test classes) were {'met' if ok else 'not met'}: {doc['sample']['test_images']} test images.", "",
             "| sub-network | MFLOPs | all 10 classes, test |", "|---|---|---|"]
    lines += [f"| {name} | {r['mflops']:.2f} | {pct(r['all_class_accuracy'], 2)} |" for name, r in a.items()]
    d = doc["generator_distinct"]
    lines += ["", "Distinct architectures the generator returns for "
                  f"{d['middle']['tasks']} in-group tasks at one budget: " +
              ", ".join(f"{v['distinct_archs']} at {v['budget_mflops']:.2f} MFLOPs ({k})" for k, v in d.items()) + "."]
    return lines


def specialisation_section(doc: dict[str, Any]) -> list[str]:
    s, comp, t, n = doc["summary"], doc["comparisons"], doc["timing"], doc["sample"]
    ig = comp.get("in_group") or {}
    agn, evo = ig.get("task-agnostic generator"), comp["all"].get("evolutionary search")
    lines = [f"### Does specialisation pay? ({n['scenarios']} scenarios on Fashion-MNIST, {n['in_group']} in-group)", ""]
    if agn:
        lines.append(f"On in-group tasks the generator {VERB[agn['verdict']]} the task-agnostic generator "
                     f"({ci(agn)}, 95 % CI); over all scenarios it {VERB[evo['verdict']]} evolutionary search "
                     f"({ci(evo)}) at {t['speedup_per_scenario']:,.0f}× less search time per scenario "
                     f"({t['speedup_amortised_1000']:,.0f}× with its training amortised over 1,000 scenarios).")
        means = [m["mean_test_accuracy"] for m in s.values()]
        lines.append(f"All {len(means)} methods' mean accuracies lie within {100 * (max(means) - min(means)):.2f} pp of "
                     f"each other: at a fixed MFLOPs budget the choice of architecture moves test accuracy very little "
                     f"on this space, so a task-conditioned choice has little to win.")
    lines += ["", f"Sample: {n['scenarios']} scenarios (tasks of 2–5 classes, budgets log-uniform), one seed, "
                  f"{n['test_images_per_class']} test images per class; searches use {n['search_evaluations']} real "
                  f"evaluations on {n['search_val_images_per_class']} validation images per class; every method timed on "
                  f"{n.get('threads', 2)} torch thread(s).", "",
              "| method | mean test accuracy | in-group | within budget | budget use | distinct archs | "
              "search time / scenario |", "|---|---|---|---|---|---|---|"]
    for name, m in s.items():
        lines.append(f"| {name} | {pct(m['mean_test_accuracy'], 2)} | {pct(m['mean_test_accuracy_in_group'], 2)} | "
                     f"{pct(m['budget_compliance'], 0)} | {m['mean_budget_use']:.2f} | {m['distinct_archs']} | "
                     f"{m['search_seconds_per_scenario'] * 1000:.3g} ms |")
    lines += ["", "Paired differences, generator − method (pp, 95 % bootstrap CI over scenarios):", "",
              "| method | all | in-group | random tasks |", "|---|---|---|---|"]
    for name in comp["all"]:
        cells = [ci(comp[k][name]) + f" {comp[k][name]['verdict']}" if comp.get(k) else "–"
                 for k in ("all", "in_group", "random_tasks")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Generator training: {t['generator_train_seconds']:.0f} s; per scenario amortised over 100: "
                  f"{t['generator_amortised_100_s']:.2f} s, over 1,000: {t['generator_amortised_1000_s']:.3f} s; "
                  f"evolution: {t['evolution_per_scenario_s']:.1f} s.", "",
              "![accuracy vs MFLOPs](benchmarks/results/specialisation_fashion-mnist.png)"]
    return lines


def scratch_section(doc: dict[str, Any]) -> list[str]:
    c, n, s = doc["comparison"]["EAS - scratch"], doc["sample"], doc["summary"]
    lines = ["### EAS against training each task from scratch (Fashion-MNIST, hard in-group tasks)", "",
             f"The generator's sub-network with supernet weights {VERB[c['verdict']]} the same architecture trained "
             f"from scratch on the task alone ({ci(c)}, {n['tasks']} tasks), which costs "
             f"{doc['scratch_train_seconds_per_task']:.0f} s of training per task on "
             f"{doc['machine'].get('torch_threads', '?')} torch thread(s) "
             f"({n['scratch_epochs']} epochs over the task's images; the supernet had {n['supernet_epochs']}).", "",
             "| task | MFLOPs | EAS | from scratch |", "|---|---|---|---|"]
    eas, scratch = doc["methods"]["EAS (generator + supernet weights)"], doc["methods"]["trained from scratch"]
    for a, b in zip(eas, scratch):
        lines.append(f"| {a['classes']} | {a['mflops']:.2f} | {pct(a['test_accuracy'], 2)} | "
                     f"{pct(b['test_accuracy'], 2)} |")
    lines.append(f"| mean | | {pct(s['EAS (generator + supernet weights)']['mean_test_accuracy'], 2)} | "
                 f"{pct(s['trained from scratch']['mean_test_accuracy'], 2)} |")
    return lines


def task_dropout_section(doc: dict[str, Any]) -> list[str]:
    n, comp, s = doc["sample"], doc["comparisons"], doc["summary"]
    arms = [a for a in s if a != "none"]
    epochs = f"{n['epochs']} epoch{'s' if n['epochs'] != 1 else ''}{' (reduced from the preset)' if n['reduced_epochs'] else ''}"
    plain = "; ".join(f"{arm} dropout − none, {size}: {ci(comp[size]['all'][f'{arm} - none'])} "
                      f"({ {'win': 'a win', 'loss': 'a loss'}.get(comp[size]['all'][f'{arm} - none']['verdict'], 'a tie')})"
                      for arm in arms for size in comp)
    lines = [f"### Task-dropout ablation (Fashion-MNIST, {epochs}, {len(n['seeds'])} seeds × {n['tasks']} tasks)", "",
             f"On 2–5-class tasks (95 % CI over seed × task pairs): {plain}.", "",
             "| sub-network | MFLOPs | " + " | ".join(f"{a}: tasks | {a}: all classes" for a in s) + " | " +
             " | ".join(f"{a} − none, in-group | {a} − none, random" for a in arms) + " |",
             "|---" * (2 + 2 * len(s) + 2 * len(arms)) + "|"]
    for size in ("smallest", "median", "largest"):
        cells = [f"{pct(s[a][size]['mean_task_accuracy'], 2)} | {pct(s[a][size]['mean_all_class_accuracy'], 2)}"
                 for a in s]
        diffs = [f"{ci(comp[size]['in_group'][f'{a} - none'])} | {ci(comp[size]['random_tasks'][f'{a} - none'])}"
                 for a in arms]
        lines.append(f"| {size} | {s['none'][size]['mflops']:.2f} | " + " | ".join(cells + diffs) + " |")
    lines += ["", "Arms: " + "; ".join(f"`{a}` = {v}" for a, v in doc["arms"].items()) + ". Tasks of 2–5 classes, "
              f"{n['in_group_tasks']} of {n['tasks']} inside one superclass; BN recalibrated, test split."]
    return lines


def calibration_section(doc: dict[str, Any]) -> list[str]:
    comp, s, n = doc["comparisons"]["all"], doc["summary"], doc["sample"]
    ref = "bundle 32 per class"
    lines = [f"### What leaving training images out of the bundle costs (Fashion-MNIST, {n['scenarios']} scenarios)", "",
             "Against the default 32 training images per class in the bundle: " + "; ".join(
                 f"{name}: {-c['mean_pp']:+.2f} pp [{-c['ci95_pp'][1]:+.2f}, {-c['ci95_pp'][0]:+.2f}], "
                 f"{ {'win': 'a loss', 'loss': 'a gain'}.get(c['verdict'], 'a tie')}" for name, c in comp.items()) + ".",
             "",
             "| calibration images | bundle size | mean test accuracy |", "|---|---|---|"]
    sizes = {"bundle 32 per class": "32", "bundle 8 per class": "8"}
    for name, m in s.items():
        size = doc["bundle_bytes"].get(sizes.get(name, "0"))
        lines.append(f"| {name} | {size / 1024:.0f} KiB | {pct(m['mean_test_accuracy'], 2)} |")
    lines += ["", f"Torch-free runtime (numpy engine, int8 weights), the same arch per scenario for every setting "
                  f"({'checked' if n['same_arch_for_every_setting'] else 'NOT the same'}); reference: {ref}."]
    return lines


SECTIONS = [("fashion_training", training_section), ("specialisation_fashion-mnist", specialisation_section),
            ("scratch_baseline_fashion-mnist", scratch_section), ("task_dropout_fashion-mnist", task_dropout_section),
            ("calibration_images_fashion-mnist", calibration_section)]
