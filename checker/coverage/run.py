#!/usr/bin/env python3
"""checker/coverage/run.py — line and branch coverage of include/pagewait/detail/core.hpp under
the model checker's scenarios (`pagewait check`).

Builds checker/standalone (the `pagewait` program with the check command only) with
`--coverage -O0` in <root>/build-coverage, runs `pagewait check` (the whole default table: every
scenario x every protocol, and the broken-walk self-test), and reads gcov's JSON for the one
translation unit that instantiates the core with the model policy, checker/scenarios.cpp.
(src/pagewait.cpp instantiates it with native_policy; `pagewait check` never runs those, so they
are left out rather than counted as unreached.)

Templates. gcov reports core.hpp's lines once per instantiation (function). This script merges
them per source line: a line is covered if any merged instantiation executed it, and branch k of
a line is taken if it was taken in any merged instantiation that has the same branches on that
line (at -O0 every instantiation of a line compiles to the same branches, unless `if constexpr`
removed some; lines whose instantiations disagree are merged per shape, and said so). Two
merges are reported:
  shipped   core<model_policy, atomic_clear, W> for W = uint32_t and uint64_t: the protocol that
            ships, which is what the unreached list is about;
  all       every instantiation the check runs: the four protocols, both word types, and the
            self-test's broken_walk_policy.
Exception edges (gcov's `throw` branches: any call may throw) are not counted.

Each unreached branch or line is matched with a reason from REASONS below (by its source text);
one without a reason is flagged GAP.

Usage:
    checker/coverage/run.py [--quick] [--markdown OUT] [--json OUT] [--no-build] [--no-run]
  --quick      run only `pagewait check --protocol atomic-clear` (the shipped column + self-test)
  --no-run     reuse the .gcda files of the last run
Exit status 0; 2 if the build or the check fails.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_ROOT = HERE.parent.parent
CORE = "include/pagewait/detail/core.hpp"

# Why a branch or line of the shipped instantiations is not reached by the scenarios. Matched
# against the stripped source line (first pattern that occurs in it); `branch` restricts the
# match to unreached branches (True), unreached lines (False), or either (None).
REASONS: list[tuple[str, bool | None, str]] = [
    ("if (stop && stop->stop_requested())", None,
     "stop tokens are not modelled: every scenario passes a null std::stop_token* (docs/CHECKER.md, Limits)"),
    ("throw_not_set(bit)", None,
     "API misuse (releasing a bit that is not set) is never done by a scenario; tests/api_test.cpp covers it"),
    ("if (!(old & bit)) [[unlikely]]", True,
     "API misuse (releasing a bit that is not set) is never done by a scenario; tests/api_test.cpp covers it"),
    ("for (unsigned i = 0; i < P::spin_limit + P::spin_yields; ++i)", True,
     "the model spins one round (spin_limit 1, spin_yields 0): the loop never goes round a second time"),
    ("if (i < P::spin_limit)", True,
     "the model has no yield rounds (spin_yields 0): every round is a pause round"),
    ("for (unsigned k = 0; k < pauses; ++k) P::cpu_relax();", True,
     "the model's only round has one pause (spin_pause_cap 1)"),
    ("pauses = 2 * pauses < P::spin_pause_cap ? 2 * pauses : P::spin_pause_cap;", True,
     "the model's pause cap is 1: the pauses never double"),
    ("if (abandon(dl, stop)) return false;", None,
     "the model has no yield rounds (spin_yields 0): the deadline check before a yield is never reached"),
    ("P::yield_cpu();", None,
     "the model has no yield rounds (spin_yields 0); a yield is a pause to the model"),
    ("if constexpr (selftest_clear_in_later_hold<P>)", None,
     "the broken walk exists only in broken_walk_policy (the self-test), not in the shipped instantiation"),
    ("return (max - t) <= dd ? max : t + dd;", True,
     "saturation: no scenario's fairness max_wait comes near time_point::max (native tests/fairness_test covers it)"),
    ("if (!counting(&word)) [[likely]]", True,
     "statistics are never on in the model (its stats_on() is constexpr false, so that counting adds no "
     "step to any schedule); the counting wrappers run natively in tests/stats_test.cpp"),
    ("if (counting(&word)) P::stat_", True,
     "statistics are never on in the model (stats_on() is constexpr false); tests/stats_test.cpp runs them"),
    ("if (token == token_retry && n->kind == node_kind::exclusive) token = race_async(*n);", True,
     "token_retry is only ever delivered to exclusive waiters (a shared waiter gets token_cleared): the "
     "kind test never fails after a retry; it keeps a shared asynchronous waiter from racing if that changed"),
    ("if (!P::stats_on()) [[likely]]", True,
     "statistics are never on in the model (its stats_on() is constexpr false, so that counting adds no "
     "step to any schedule); the counting wrappers run natively in tests/stats_test.cpp"),
    ("P::stat_", None,
     "statistics are never on in the model (stats_on() is constexpr false); tests/stats_test.cpp runs them"),
    ("const auto t0 = P::now();", False,
     "statistics are never on in the model (stats_on() is constexpr false); tests/stats_test.cpp runs them"),
    ("const bool ok = lock_contended(", False,
     "statistics are never on in the model (stats_on() is constexpr false); tests/stats_test.cpp runs them"),
    ("const bool ok = wait_clear_contended(", False,
     "statistics are never on in the model (stats_on() is constexpr false); tests/stats_test.cpp runs them"),
    ("return ok;", False,
     "statistics are never on in the model (stats_on() is constexpr false); tests/stats_test.cpp runs them"),
    # Gaps: reachable in the shipped protocol, not reached by the scenarios (docs: checker/mutation/README.md).
    ("if (w.requeue.head) w.keep_waiters = true;", True,
     "minor gap: a hand-off to a joiner always found shared waiters claimed (handoff-past-reader); never one "
     "after a walk over waiters of other keys only. The untaken side only leaves keep_waiters as it was, "
     "which is equivalent (mutant joiner-handoff-no-keep)"),
]


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def build(root: Path, bdir: Path) -> None:
    cfg = ["cmake", "-S", str(root / "checker" / "standalone"), "-B", str(bdir), "-DCMAKE_BUILD_TYPE=Debug",
           "-DCMAKE_CXX_FLAGS=--coverage -O0"]
    if shutil.which("ninja"):
        cfg += ["-G", "Ninja"]
    p = sh(cfg)
    if p.returncode:
        sys.exit(f"coverage: cmake configure failed:\n{p.stdout}{p.stderr}")
    p = sh(["cmake", "--build", str(bdir), "--target", "pagewait_check", "-j", "2"])
    if p.returncode:
        sys.exit(f"coverage: build failed:\n{p.stdout[-4000:]}{p.stderr[-4000:]}")


def run_check(bdir: Path, quick: bool) -> tuple[str, float]:
    for f in bdir.rglob("*.gcda"):
        f.unlink()
    cmd = [str(bdir / "pagewait"), "check"] + (["--protocol", "atomic-clear"] if quick else [])
    t0 = time.monotonic()
    p = sh(cmd)
    secs = time.monotonic() - t0
    if p.returncode != 0:
        print(p.stdout[-4000:], file=sys.stderr)
        sys.exit(f"coverage: `{' '.join(cmd[1:])}` exited {p.returncode}: not every verdict is the expected one")
    return p.stdout, secs


def gcov_json(bdir: Path) -> dict:
    gcda = [f for f in bdir.rglob("*.gcda") if f.name.startswith("scenarios.cpp")]
    if len(gcda) != 1:
        sys.exit(f"coverage: expected one scenarios.cpp .gcda under {bdir}, found {len(gcda)}")
    p = sh(["gcov", "--json-format", "--stdout", "--branch-probabilities", str(gcda[0])], cwd=str(bdir))
    if p.returncode:
        sys.exit(f"coverage: gcov failed:\n{p.stderr}")
    # One JSON document per line of output (one per data file).
    docs = [json.loads(ln) for ln in p.stdout.splitlines() if ln.strip().startswith("{")]
    return docs[0]


PROTO = {"0": "clear-then-wake", "1": "pinned", "2": "xor-waiters", "3": "atomic-clear"}
# basic_model_policy<Broken, Offsets> (the offset-shaped policy since 2 December 2026: its
# instantiations count in "all", not in "shipped", which is the plain policy's atomic-clear).
INST = re.compile(r"core<pagewait::check::basic_model_policy<(?P<broken>true|false)(?:, (?P<offsets>true|false))?>, "
                  r"\(pagewait::release_protocol\)(?P<r>\d), (?P<w>unsigned int|unsigned long)>")


def classify(demangled: str) -> str | None:
    m = INST.search(demangled)
    if not m:
        return None
    w = "u32" if m["w"] == "unsigned int" else "u64"
    prefix = ("broken-walk/" if m["broken"] == "true" else "") + ("offsets/" if m["offsets"] == "true" else "")
    return f"{prefix}{PROTO[m['r']]}/{w}"


def merge(lines: list[dict], fnames: dict[str, str], keep) -> dict[int, dict]:
    """Per source line: executed?, and its branches merged over the kept instantiations."""
    out: dict[int, dict] = {}
    for ln in lines:
        inst = fnames.get(ln.get("function_name", ""), None)
        if inst is None or not keep(inst):
            continue
        e = out.setdefault(ln["line_number"], {"count": 0, "insts": set(), "shapes": {}})
        e["count"] += ln["count"]
        e["insts"].add(inst)
        br = [b for b in ln["branches"] if not b["throw"]]
        if br:
            shape = tuple(b["fallthrough"] for b in br)
            s = e["shapes"].setdefault(shape, {"counts": [0] * len(br), "insts": set()})
            s["insts"].add(inst)
            for i, b in enumerate(br):
                s["counts"][i] += b["count"]
    return out


def summarize(m: dict[int, dict]) -> dict:
    lines = len(m)
    covered = sum(1 for e in m.values() if e["count"] > 0)
    branches = sum(len(s["counts"]) for e in m.values() for s in e["shapes"].values())
    taken = sum(1 for e in m.values() for s in e["shapes"].values() for c in s["counts"] if c > 0)
    return {"lines": lines, "lines_covered": covered, "branches": branches, "branches_taken": taken}


def reason_for(text: str, is_branch: bool) -> str:
    for pat, kind, why in REASONS:
        if pat in text and (kind is None or kind == is_branch):
            return why
    return ""


def direction(shape: tuple, i: int) -> str:
    # gcov orders a conditional jump's edges as: fallthrough first; at -O0 GCC lays out
    # `if (c) A` as "jump to A's end when !c", so the fallthrough edge is usually "c true".
    return "fallthrough" if shape[i] else "jump"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--builddir", type=Path, default=None, help="default: <root>/build-coverage")
    ap.add_argument("--quick", action="store_true", help="atomic-clear's column only")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-run", action="store_true", help="reuse the last run's .gcda files")
    ap.add_argument("--markdown", type=Path, help="write the report here (default: stdout)")
    ap.add_argument("--json", type=Path, help="write the merged data as JSON")
    a = ap.parse_args()
    root = a.root.resolve()
    bdir = (a.builddir or root / "build-coverage").resolve()
    if not a.no_build:
        build(root, bdir)
    secs = None
    stamp = bdir / "coverage-last-run.json"
    if not a.no_run:
        _, secs = run_check(bdir, a.quick)
        stamp.write_text(json.dumps({"quick": a.quick, "seconds": round(secs, 1)}))
    elif stamp.exists():
        last = json.loads(stamp.read_text())
        secs, a.quick = last["seconds"], last["quick"]
    doc = gcov_json(bdir)
    files = [f for f in doc["files"] if f["file"].endswith(CORE)]
    if not files:
        sys.exit("coverage: core.hpp not in the gcov data")
    f = files[0]
    src = (root / CORE).read_text().splitlines()
    fnames = {}
    for fn in f["functions"]:
        c = classify(fn["demangled_name"])
        if c:
            fnames[fn["name"]] = c
    shipped = merge(f["lines"], fnames, lambda i: i in ("atomic-clear/u32", "atomic-clear/u64"))
    every = merge(f["lines"], fnames, lambda i: True)
    s_ship, s_all = summarize(shipped), summarize(every)

    unreached_lines, unreached_branches, mixed = [], [], []
    for no in sorted(shipped):
        e = shipped[no]
        text = src[no - 1].strip()
        if e["count"] == 0:
            unreached_lines.append({"line": no, "text": text, "reason": reason_for(text, False)})
            # its branches are unreached too, but the line says it
            continue
        if len(e["shapes"]) > 1:
            mixed.append(no)
        for shape, s in e["shapes"].items():
            for i, c in enumerate(s["counts"]):
                if c == 0:
                    unreached_branches.append({"line": no, "text": text, "branch": i, "of": len(shape),
                                               "edge": direction(shape, i), "reason": reason_for(text, True),
                                               "also_in_all": any(sc["counts"][i] > 0 for sh_, sc in
                                                                  every.get(no, {"shapes": {}})["shapes"].items()
                                                                  if sh_ == shape)})
    # Functions of the shipped instantiations never called.
    # The member's name: what follows the instantiation's "core<...>::" (template arguments
    # contain "::" and ", " themselves, so split after the closing of core<...>).
    uncalled = sorted({fn["demangled_name"][INST.search(fn["demangled_name"]).end() + 2:].split("(")[0]
                       for fn in f["functions"]
                       if fnames.get(fn["name"]) in ("atomic-clear/u32", "atomic-clear/u64")
                       and fn["execution_count"] == 0})

    def pct(a_, b_):
        return f"{100.0 * a_ / b_:.1f} %" if b_ else "—"

    md = []
    md.append(f"Coverage of `{CORE}` under `pagewait check"
              f"{' --protocol atomic-clear' if a.quick else ''}` "
              f"(gcov {doc.get('gcc_version', '')}, `--coverage -O0`"
              f"{f', the check ran {secs:.0f} s' if secs else ''}). Templates: gcov counts each instantiation "
              f"of a line apart; they are merged per source line (a line is covered if any merged "
              f"instantiation executed it, a branch taken if any took it; instantiations of a line compile "
              f"to the same branches at -O0). Only checker/scenarios.cpp's instantiations are read (the "
              f"model policy); the native ones in src/pagewait.cpp are not run by the check. Exception "
              f"edges are not counted.\n")
    md.append("| instantiations merged | lines | covered | branches | taken |")
    md.append("|---|---|---|---|---|")
    md.append(f"| shipped: `core<model_policy, atomic_clear, uint32_t / uint64_t>` | {s_ship['lines']} | "
              f"{s_ship['lines_covered']} ({pct(s_ship['lines_covered'], s_ship['lines'])}) | {s_ship['branches']} | "
              f"{s_ship['branches_taken']} ({pct(s_ship['branches_taken'], s_ship['branches'])}) |")
    md.append(f"| all: {'atomic-clear, its offsets column' if a.quick else '4 protocols, the offsets column'} x 2 word types + the broken-walk self-test ({len(set(fnames.values()))} "
              f"instantiations) | {s_all['lines']} | {s_all['lines_covered']} "
              f"({pct(s_all['lines_covered'], s_all['lines'])}) | {s_all['branches']} | "
              f"{s_all['branches_taken']} ({pct(s_all['branches_taken'], s_all['branches'])}) |")
    md.append("")
    if uncalled:
        md.append("Functions of the shipped instantiations never called: " +
                  ", ".join(f"`{u}`" for u in uncalled) + "\n")
    md.append("Lines of the shipped instantiations never executed:\n")
    md.append("| line | source | why |")
    md.append("|---|---|---|")
    for u in unreached_lines:
        md.append(f"| {u['line']} | `{u['text']}` | {u['reason'] or '**GAP?**'} |")
    if not unreached_lines:
        md.append("| — | (none) | |")
    md.append("")
    md.append("Branches of the shipped instantiations never taken, per line (on executed lines; gcov's branch "
              "numbers, 0-based, exception edges left out; at -O0 `if (c)` compiles to a fallthrough edge "
              "for c true and a jump for c false, and each `&&`/`||` operand adds a pair):\n")
    md.append("| line | source | untaken | why |")
    md.append("|---|---|---|---|")
    by_line: dict[int, list] = {}
    for u in unreached_branches:
        by_line.setdefault(u["line"], []).append(u)
    for no, us in by_line.items():
        u = us[0]
        which = ", ".join(f"{x['branch']} ({x['edge']})" for x in us) + f" of {u['of']}"
        note = " (taken by an old protocol)" if all(x["also_in_all"] for x in us) else ""
        md.append(f"| {no} | `{u['text']}` | {which} | "
                  f"{u['reason'] or '**GAP?** (no reason recorded in checker/coverage/run.py)'}{note} |")
    if not unreached_branches:
        md.append("| — | (none) | | |")
    if mixed:
        md.append(f"\nLines whose instantiations compile to different branches (merged per shape): "
                  f"{', '.join(map(str, mixed))}.")
    report = "\n".join(md) + "\n"
    if a.markdown:
        a.markdown.write_text(report)
    else:
        sys.stdout.write(report)
    if a.json:
        a.json.write_text(json.dumps({"shipped": s_ship, "all": s_all, "unreached_lines": unreached_lines,
                                      "unreached_branches": unreached_branches, "uncalled": uncalled,
                                      "check_seconds": secs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
