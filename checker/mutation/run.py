#!/usr/bin/env python3
"""checker/mutation/run.py — mutation testing of the model checker (scripts/mutants).

Each mutant of checker/mutation/mutants.txt is one textual replacement in
include/pagewait/detail/core.hpp. For each, a copy of core.hpp with that one replacement is
written to <job>/inc/pagewait/detail/core.hpp, and the checker is built against it without
touching the source tree: the build directory is configured with `-iquote <job>/inc`, and every
includer says "pagewait/detail/core.hpp" with quotes, so the compiler finds the copy before
include/ (a deliberate `#error` mutant, built first, proves it). Then

    pagewait check --protocol atomic-clear

runs the exhaustive table of the shipped protocol. Exit 0 = every verdict as expected: the
mutant survived. Exit 1 (a violation or an unexpected verdict), a crash, or a run longer than
--timeout-factor x the unmutated run: killed. The table says which scenarios rejected it.

What is built: checker/standalone (the `pagewait` program with the check command only; the
main project's pagewait_cli also builds the demo and the benchmarks, which a mutant would
recompile for nothing). The sources are copied to <workdir>/tree when the run starts, so edits
to the working tree during a run do not mix into it.

Usage (from the repository root, or any directory):
    checker/mutation/run.py                  # every mutant; a summary table; exit 0
    checker/mutation/run.py --list           # the mutants, and whether each applies
    checker/mutation/run.py --check-snippets # only check that every snippet occurs once (ctest)
    checker/mutation/run.py --only ID[,ID..] --jobs 2 --json out.json --markdown out.md

Exit status: 0 the run completed (survivors are reported, not an error; --strict makes an
unexplained survivor exit 1); 2 a snippet does not occur exactly once, the self-check or the
baseline failed, or bad usage.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_ROOT = HERE.parent.parent
CORE_REL = Path("include/pagewait/detail/core.hpp")
SELFCHECK_MARK = "pagewait-mutation-selfcheck: the mutant copy of core.hpp is the one compiled"
TREE_PARTS = ("include", "src", "checker", "tools")


# ------------------------------------------------------------------------------------------
# The mutant file.

@dataclass
class Mutant:
    id: str
    what: str = ""
    original: str = ""
    replacement: str = ""
    equivalent: str = ""  # declared equivalent: run, reported apart, not in the score
    gap: str = ""         # a known gap in the scenarios (documentation only)
    skip: str = ""        # not run (unless --all)
    line: int = 0         # where it starts in mutants.txt


def parse_mutants(path: Path) -> list[Mutant]:
    mutants: list[Mutant] = []
    cur: Mutant | None = None
    orig: list[str] = []
    repl: list[str] = []

    def finish() -> None:
        if cur is None:
            return
        if not orig:
            raise SystemExit(f"{path}:{cur.line}: mutant {cur.id} has no `- ` snippet line")
        cur.original = "\n".join(orig)
        cur.replacement = "\n".join(repl)
        mutants.append(cur)

    for no, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.rstrip("\n")
        if line.startswith("== "):
            finish()
            cur = Mutant(id=line[3:].strip(), line=no)
            orig, repl = [], []
            continue
        if cur is None or not line.strip() or line.startswith("#"):
            continue
        if line.startswith("- ") or line == "-":
            orig.append(line[2:])
        elif line.startswith("+ ") or line == "+":
            repl.append(line[2:])
        else:
            key, sep, val = line.partition(":")
            key = key.strip()
            if not sep or key not in ("what", "equivalent", "gap", "skip"):
                raise SystemExit(f"{path}:{no}: cannot parse: {line!r}")
            setattr(cur, key, val.strip())
    finish()
    seen: set[str] = set()
    for m in mutants:
        if m.id in seen:
            raise SystemExit(f"{path}:{m.line}: duplicate mutant id {m.id}")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", m.id):
            raise SystemExit(f"{path}:{m.line}: bad mutant id {m.id!r} (lower case, digits, '-')")
        seen.add(m.id)
    return mutants


def occurrences(text: str, snippet: str) -> int:
    n, i = 0, text.find(snippet)
    while i >= 0:
        n += 1
        i = text.find(snippet, i + 1)
    return n


def apply(text: str, m: Mutant) -> str:
    assert occurrences(text, m.original) == 1
    return text.replace(m.original, m.replacement, 1)


def line_of(text: str, snippet: str) -> int:
    i = text.find(snippet)
    return text.count("\n", 0, i) + 1 if i >= 0 else 0


def check_snippets(core: str, mutants: list[Mutant]) -> list[str]:
    errors = []
    for m in mutants:
        n = occurrences(core, m.original)
        if n != 1:
            first = m.original.splitlines()[0].strip()
            more = " ..." if len(m.original.splitlines()) > 1 else ""
            errors.append(f"mutant {m.id} (mutants.txt line {m.line}): its snippet occurs {n} times in "
                          f"core.hpp, not once: {first!r}{more}")
        elif m.original == m.replacement:
            errors.append(f"mutant {m.id}: the replacement equals the snippet")
    return errors


# ------------------------------------------------------------------------------------------
# Building and running one mutant.

@dataclass
class Result:
    id: str
    what: str
    line: int                   # the snippet's line in core.hpp
    status: str                 # killed | survived | equivalent | stillborn | skipped
    how: str = ""               # violation | crash | timeout (killed)
    killed_by: list = field(default_factory=list)   # scenarios whose verdict was not the expected one
    violation: str = ""         # the first violation reported
    build_seconds: float = 0.0
    run_seconds: float = 0.0
    note: str = ""              # equivalent / gap / skip reason, or the compiler's error
    output_tail: str = ""       # the check's last lines, when it crashed or timed out


class Job:
    """One build directory with its own mutant include directory (one per --jobs slot)."""

    def __init__(self, index: int, workdir: Path, tree: Path, build_jobs: int, generator: str | None):
        self.dir = workdir / f"job{index}"
        self.inc = self.dir / "inc"
        self.header = self.inc / CORE_REL.relative_to("include")
        self.build = self.dir / "build"
        self.tree = tree
        self.build_jobs = build_jobs
        self.generator = generator

    def configure(self) -> None:
        self.header.parent.mkdir(parents=True, exist_ok=True)
        if not self.header.exists():
            self.header.write_text((self.tree / CORE_REL).read_text())
        cmd = ["cmake", "-S", str(self.tree / "checker" / "standalone"), "-B", str(self.build),
               "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG",
               f"-DCMAKE_CXX_FLAGS=-iquote {self.inc}"]
        if self.generator:
            cmd += ["-G", self.generator]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"cmake configure failed in {self.build}:\n{p.stdout}\n{p.stderr}")

    def write(self, text: str) -> None:
        # A new file (not an in-place write) with a fresh mtime: the build tool sees the change.
        tmp = self.header.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.header)
        now = time.time()
        os.utime(self.header, (now, now))

    def make(self) -> tuple[bool, str, float]:
        t0 = time.monotonic()
        p = subprocess.run(["cmake", "--build", str(self.build), "--target", "pagewait_check",
                            "-j", str(self.build_jobs)], capture_output=True, text=True)
        return p.returncode == 0, p.stdout + p.stderr, time.monotonic() - t0

    @property
    def program(self) -> Path:
        return self.build / "pagewait"


# A row: atomic-clear's cell ("n/a" for a death row, which has the offsets cell only), then the
# offset-shaped policy's (docs/CHECKER.md), which must pass with the same schedule count where both
# run, or "n/a" for an asynchronous scenario.
ROW = re.compile(r"^(?P<scenario>[a-z0-9-]+)\s+(?P<k>d?\d+) \| (?:(?P<verdict>FAIL|pass\*?)\s+(?P<schedules>\d+)\s+"
                 r"(?P<seconds>[\d.]+)s\s*(?P<bad>!?)|n/a \(domain only\))\s*"
                 r"(?:\| (?:(?P<overdict>FAIL|pass\*?)\s+\d+\s+[\d.]+s\s*(?P<obad>!?)|n/a \(asynchronous\))\s*)?$")
# (K is dN for a sampled row: pct with depth N, docs/CHECKER.md.)
# A row cut short by a crash or a timeout: the scenario and K, then maybe some cells, then maybe
# the dying program's stderr on the same line.
PARTIAL_ROW = re.compile(r"^(?P<scenario>[a-z][a-z0-9-]*)\s+(?P<k>d?\d+)(?=\s|\||[A-Za-z]|$)")


def parse_table(out: str) -> dict:
    """The table of `pagewait check --protocol atomic-clear`: per scenario its cell, the
    scenarios whose verdict was unexpected, the first violation, the row in progress at the end."""
    rows, bad, violations = {}, [], []
    in_progress = ""
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            rows[m["scenario"]] = {"verdict": m["verdict"] or m["overdict"],
                                   "schedules": int(m["schedules"] or 0),
                                   "seconds": float(m["seconds"] or 0), "expected": not m["bad"]}
            if m["bad"]:
                bad.append(m["scenario"])
            if m["obad"]:
                bad.append(m["scenario"] + " (offsets)")
            in_progress = ""
            continue
        if line.startswith("self-test,"):
            if "NOT CAUGHT" in line:
                bad.append("self-test (broken walk not caught)")
            in_progress = ""
            continue
        if line.startswith("- ") and (" / atomic-clear: " in line or " / offsets (atomic-clear): " in line):
            violations.append(line[2:])
            continue
        p = PARTIAL_ROW.match(line)
        if p and p["scenario"] not in rows:
            in_progress = p["scenario"]
            died = line[p.end():].split("|")[-1].strip()  # the stderr glued to the row, if any
            if died and not re.match(r"^(FAIL|pass)", died):
                violations.append(f"{p['scenario']} / atomic-clear: {died}")
    return {"rows": rows, "bad": bad, "violations": violations, "in_progress": in_progress}


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a running process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def run_check(program: Path, cpu_limit: float | None) -> tuple[int | None, str, float]:
    """Runs the check; returns (exit status, or None if it used more than cpu_limit seconds of
    CPU, its output, the CPU seconds it used). CPU time, not wall time: the check is
    single-threaded and CPU-bound, and the machine is shared, so wall time depends on the load
    and CPU time does not. A wall-time cap of 8 x the limit guards against a hang in a sleep."""
    with tempfile.TemporaryFile(mode="w+") as out:
        p = subprocess.Popen([str(program), "check", "--protocol", "atomic-clear"], stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True)
        t0 = time.monotonic()
        timed_out = False
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if cpu_limit is not None and (cpu_seconds(p.pid) > cpu_limit or
                                          time.monotonic() - t0 > 8 * cpu_limit):
                timed_out = True
                os.killpg(p.pid, signal.SIGKILL)  # the check's own process group only
                _, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.2)
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        text = out.read()
    return (None if timed_out else p.returncode), text, ru.ru_utime + ru.ru_stime


def judge(m: Mutant, core_line: int, rc: int | None, out: str, build_s: float, run_s: float) -> Result:
    t = parse_table(out)
    r = Result(id=m.id, what=m.what, line=core_line, status="survived", build_seconds=round(build_s, 1),
               run_seconds=round(run_s, 1))
    if rc == 0:
        r.status = "equivalent" if m.equivalent else "survived"
        r.note = m.equivalent or m.gap
        return r
    r.status = "killed"
    r.killed_by = list(t["bad"])
    r.violation = t["violations"][0] if t["violations"] else ""
    if rc is None:
        r.how = "timeout"
    elif rc < 0 or rc > 1:
        r.how = "crash" if rc < 0 else f"exit {rc}"
        if rc < 0:
            try:
                r.note = f"signal {signal.Signals(-rc).name}"
            except ValueError:
                r.note = f"signal {-rc}"
    else:
        r.how = "violation"
    if r.how != "violation":
        if t["in_progress"]:
            r.killed_by.append(t["in_progress"] + f" ({r.how})")
        r.output_tail = "\n".join(out.splitlines()[-12:])
    if m.equivalent:
        r.note = "declared equivalent in mutants.txt, but killed: the declaration is wrong"
    return r


# ------------------------------------------------------------------------------------------
# Reports.

def score(results: list[Result]) -> tuple[int, int]:
    counted = [r for r in results if r.status in ("killed", "survived")]
    return sum(r.status == "killed" for r in counted), len(counted)


def markdown(results: list[Result], meta: dict) -> str:
    k, n = score(results)
    out = [f"Mutation score: **{k}/{n}** killed ({100.0 * k / n if n else 0:.0f} %), "
           f"excluding {sum(r.status == 'equivalent' for r in results)} equivalent and "
           f"{sum(r.status == 'skipped' for r in results)} skipped mutants. "
           f"Baseline (unmutated) check: {meta.get('baseline_seconds', 0):.0f} s of CPU; a check is killed "
           f"(timeout) after {meta.get('timeout_seconds', 0):.0f} s of CPU.", "",
           "| mutant | core.hpp line | what it breaks | result | killed by | check, CPU s |",
           "|---|---|---|---|---|---|"]
    for r in results:
        if r.status == "killed":
            res = "killed" + ("" if r.how == "violation" else f" ({r.how})")
            by = ", ".join(f"`{s}`" for s in r.killed_by) or "—"
        elif r.status == "survived":
            res, by = "**survived**", r.note or "—"
        elif r.status == "equivalent":
            res, by = "equivalent", r.note
        elif r.status == "skipped":
            res, by = "not run", r.note
        else:
            res, by = r.status, r.note
        what = r.what.replace("|", "\\|")
        by = by.replace("|", "\\|")
        out.append(f"| `{r.id}` | {r.line} | {what} | {res} | {by} | {r.run_seconds:.0f} |")
    return "\n".join(out) + "\n"


def print_line(r: Result, total: int, done: int) -> None:
    extra = ""
    if r.status == "killed":
        extra = f"by {', '.join(r.killed_by) or '?'}" + (f" [{r.how}]" if r.how != "violation" else "")
        if r.violation:
            extra += f": {r.violation.split(': ', 1)[-1][:110]}"
    elif r.note:
        extra = r.note[:140]
    print(f"[{done:2d}/{total}] {r.id:38s} {r.status:10s} build {r.build_seconds:5.1f}s check {r.run_seconds:5.1f}s  {extra}",
          flush=True)


# ------------------------------------------------------------------------------------------

def snapshot(root: Path, workdir: Path) -> Path:
    tree = workdir / "tree"
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    for part in TREE_PARTS:
        shutil.copytree(root / part, tree / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # The build description comes with this script (so that --root may name a checkout without it).
    shutil.copytree(HERE.parent / "standalone", tree / "checker" / "standalone", dirs_exist_ok=True)
    return tree


def main() -> int:
    ap = argparse.ArgumentParser(description="Mutation testing of `pagewait check` against detail/core.hpp.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the repository (default: this one)")
    ap.add_argument("--mutants", type=Path, default=HERE / "mutants.txt")
    ap.add_argument("--only", default="", help="comma-separated mutant ids")
    ap.add_argument("--all", action="store_true", help="also run the mutants marked `skip:` (memory orders)")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--check-snippets", action="store_true",
                    help="only check that every snippet occurs exactly once in core.hpp (exit 0/2)")
    ap.add_argument("--jobs", type=int, default=1, help="mutants built and checked side by side")
    ap.add_argument("--build-jobs", type=int, default=0, help="compiler jobs per build (default: 2 // jobs, >= 1)")
    ap.add_argument("--timeout-factor", type=float, default=3.0,
                    help="a check using more than this x the unmutated run's CPU time is killed (default 3)")
    ap.add_argument("--workdir", type=Path, default=None, help="default: <root>/build-mutation")
    ap.add_argument("--json", type=Path, help="write the results as JSON")
    ap.add_argument("--markdown", type=Path, help="write the results as a Markdown table ('-': stdout)")
    ap.add_argument("--strict", action="store_true", help="exit 1 if a mutant survived that is not declared equivalent")
    ap.add_argument("--resume", action="store_true",
                    help="reuse the results of an interrupted run (<workdir>/results.jsonl) for mutants whose "
                         "snippet, replacement, core.hpp and checker sources are unchanged")
    a = ap.parse_args()

    root = a.root.resolve()
    core_path = root / CORE_REL
    mutants = parse_mutants(a.mutants)
    if a.only:
        want = [x.strip() for x in a.only.split(",") if x.strip()]
        unknown = [x for x in want if x not in {m.id for m in mutants}]
        if unknown:
            print(f"run.py: unknown mutant id(s): {', '.join(unknown)}", file=sys.stderr)
            return 2
        mutants = [m for m in mutants if m.id in want]

    core = core_path.read_text()
    errors = check_snippets(core, mutants)
    if a.list:
        for m in mutants:
            n = occurrences(core, m.original)
            flag = "skip" if m.skip else "equiv" if m.equivalent else ""
            print(f"{m.id:40s} line {line_of(core, m.original) if n == 1 else '?':>4} {flag:5s} "
                  f"{'ok' if n == 1 else f'SNIPPET OCCURS {n}x'}  {m.what}")
        return 2 if errors else 0
    if errors:
        print("run.py: the mutants no longer match core.hpp (update checker/mutation/mutants.txt):",
              file=sys.stderr)
        for e in errors:
            print("  " + e, file=sys.stderr)
        return 2
    if a.check_snippets:
        print(f"run.py: all {len(mutants)} mutant snippets occur exactly once in {CORE_REL}")
        return 0

    workdir = (a.workdir or root / "build-mutation").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    jobs = max(1, a.jobs)
    build_jobs = a.build_jobs or max(1, 2 // jobs)
    generator = "Ninja" if shutil.which("ninja") else None
    tree = snapshot(root, workdir)
    core = (tree / CORE_REL).read_text()  # the snapshot's (same as checked above unless edited since)
    errors = check_snippets(core, mutants)
    if errors:
        print("run.py: core.hpp changed while the run started:\n  " + "\n  ".join(errors), file=sys.stderr)
        return 2
    print(f"run.py: {len(mutants)} mutants of {CORE_REL}; sources copied to {tree}; {jobs} job(s) x "
          f"{build_jobs} compiler job(s)", flush=True)

    slots = [Job(i, workdir, tree, build_jobs, generator) for i in range(jobs)]
    for j in slots:
        try:
            j.configure()
        except RuntimeError as e:
            print(f"run.py: {e}", file=sys.stderr)
            return 2
        # Self-check: a mutant that cannot compile must fail the build with its own message, or
        # the copy in the -iquote directory is not the header being compiled.
        j.write(f'#error "{SELFCHECK_MARK}"\n' + core)
        ok, out, _ = j.make()
        if ok or SELFCHECK_MARK not in out:
            print(f"run.py: self-check failed in {j.dir}: the #error mutant "
                  f"{'built' if ok else 'failed for another reason'}; the mutant header is not what is "
                  f"compiled.\n{out[-3000:]}", file=sys.stderr)
            return 2
        j.write(core)
        ok, out, secs = j.make()
        if not ok:
            print(f"run.py: the unmutated checker does not build in {j.build}:\n{out[-5000:]}", file=sys.stderr)
            return 2
    print(f"run.py: self-check passed (an #error mutant breaks the build of every job)", flush=True)

    rc, out, base_s = run_check(slots[0].program, None)  # CPU seconds
    if rc != 0:
        print(f"run.py: the unmutated core does not pass `pagewait check --protocol atomic-clear` "
              f"(exit {rc}); nothing to measure.\n{out[-5000:]}", file=sys.stderr)
        return 2
    timeout = max(a.timeout_factor * base_s, 10.0)
    print(f"run.py: baseline passes in {base_s:.1f} s of CPU; a mutant's check is killed after {timeout:.0f} s "
          f"of CPU\n", flush=True)

    to_run = [m for m in mutants if a.all or not m.skip]
    results: dict[str, Result] = {}
    for m in mutants:
        if m not in to_run:
            results[m.id] = Result(id=m.id, what=m.what, line=line_of(core, m.original), status="skipped",
                                   note=m.skip)
    # Each result is appended to results.jsonl as it comes, keyed by the core and the mutant, so
    # that --resume can finish an interrupted run.
    journal = workdir / "results.jsonl"
    # The key covers the core and the checker (its checks and scenarios decide every verdict).
    h = hashlib.sha256(core.encode())
    for f in sorted((root / "checker").glob("*.[ch]pp")):
        h.update(f.read_bytes())
    core_sha = h.hexdigest()

    def key(m: Mutant) -> str:
        return hashlib.sha256(f"{core_sha}\0{m.original}\0{m.replacement}".encode()).hexdigest()

    if a.resume and journal.exists():
        old = {}
        for ln in journal.read_text().splitlines():
            try:
                e = json.loads(ln)
                old[e["key"]] = e["result"]
            except (ValueError, KeyError):
                continue
        for m in list(to_run):
            r = old.get(key(m))
            if r is not None:
                r = Result(**r)
                r.what = m.what
                if r.status in ("survived", "equivalent"):  # judged again: the annotations may have changed
                    r.status = "equivalent" if m.equivalent else "survived"
                    r.note = m.equivalent or m.gap
                results[m.id] = r
                to_run.remove(m)
        print(f"run.py: --resume: {len(results) - sum(r.status == 'skipped' for r in results.values())} "
              f"results reused from {journal}\n", flush=True)
    elif journal.exists():
        journal.unlink()
    free = list(slots)
    lock = threading.Lock()
    done = [0]

    def one(m: Mutant) -> Result:
        with lock:
            j = free.pop()
        try:
            j.write(apply(core, m))
            ok, bout, bs = j.make()
            if not ok:
                err = next((ln.strip() for ln in bout.splitlines() if "error" in ln), "build failed")
                r = Result(id=m.id, what=m.what, line=line_of(core, m.original), status="stillborn",
                           build_seconds=round(bs, 1), note=err[:300])
            else:
                rc, cout, rs = run_check(j.program, timeout)
                r = judge(m, line_of(core, m.original), rc, cout, bs, rs)
            return r
        finally:
            with lock:
                free.append(j)

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
        futs = {ex.submit(one, m): m for m in to_run}
        for f in concurrent.futures.as_completed(futs):
            r = f.result()
            results[r.id] = r
            with journal.open("a") as jf:
                jf.write(json.dumps({"key": key(futs[f]), "result": asdict(r)}) + "\n")
            with lock:
                done[0] += 1
                print_line(r, len(to_run), done[0])
    # Leave every job's header unmutated, and no mutant's program behind to be mistaken for the
    # real one (the next build there rebuilds it).
    for j in slots:
        j.write(core)
        j.program.unlink(missing_ok=True)

    ordered = [results[m.id] for m in mutants]
    k, n = score(ordered)
    survivors = [r for r in ordered if r.status == "survived"]
    meta = {"core": str(CORE_REL), "mutants": len(ordered), "baseline_seconds": round(base_s, 1),
            "timeout_seconds": round(timeout, 1), "wall_seconds": round(time.monotonic() - t0, 1),
            "killed": k, "counted": n,
            "equivalent": sum(r.status == "equivalent" for r in ordered),
            "skipped": sum(r.status == "skipped" for r in ordered),
            "stillborn": sum(r.status == "stillborn" for r in ordered)}
    print(f"\nmutation score: {k}/{n} killed ({100.0 * k / n if n else 0:.0f} %); "
          f"{meta['equivalent']} equivalent, {meta['skipped']} not run, {meta['stillborn']} did not compile; "
          f"{meta['wall_seconds']:.0f} s")
    for r in survivors:
        print(f"  survived: {r.id}: {r.what}" + (f"\n            gap: {r.note}" if r.note else ""))
    for r in ordered:
        if r.status == "stillborn":
            print(f"  did not compile (fix mutants.txt): {r.id}: {r.note}")
    if a.json:
        a.json.write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in ordered]}, indent=2) + "\n")
    if a.markdown:
        md = markdown(ordered, meta)
        if str(a.markdown) == "-":
            sys.stdout.write("\n" + md)
        else:
            a.markdown.write_text(md)
    if any(r.status == "stillborn" for r in ordered):
        return 2
    return 1 if a.strict and survivors else 0


if __name__ == "__main__":
    sys.exit(main())
