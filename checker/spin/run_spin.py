#!/usr/bin/env python3
"""Runs the spin model of pagewait's release protocols (pagewait.pml) and checks each verdict.

For every run: `spin -a` with the run's macros, `cc` the generated pan.c with -DSAFETY (assertions
and invalid end states; no cycle checks), run `pan`, and compare the result with the expected one:

  pass          zero errors, and a complete search (no "max search depth too small"), no trail;
  fail:<kind>   at least one error of that kind, a trail file written, and `spin -t` replaying the
                trail reproduces the error; the replayed trace is printed.

Kinds, one per property: free (a touch of the word after the object was freed), node (the
releaser reads a waiter node whose wait has ended), lost (a thread left asleep forever: "invalid
end state"), late (a waiter woken with no clear of the bit since it queued), i4 (a waiter queued
while the waiters bit is clear), owner (two owners, or a hand-off into a clear bit), walk (a walk
visits more waiter nodes than were queued when it began), record (two releases registered for
one (word, bit)), fair (an unlock that began with an earned hand-off due did not hand off);
probe:<name> (a reachability probe fired: the path is covered).

  run_spin.py                 run everything, print a summary table
  run_spin.py --only NAME...  run the named runs (what ctest does, one per test)
  run_spin.py --list          print the run names (CMake reads this at configure time)
  run_spin.py --markdown      also print the summary as a Markdown table (for README.md)
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "pagewait.pml")

PROTO = {
    "atomic-clear": "-DPROTO_ATOMIC_CLEAR",
    "clear-then-wake": "-DPROTO_CLEAR_THEN_WAKE",
    "pinned": "-DPROTO_PINNED",
    "xor-waiters": "-DPROTO_XOR_WAITERS",
}

# name, protocol, extra macros, expected verdict, what it shows
RUNS = [
    # writeback-free (CONTRACT 5): the ender holds no reference; the truncating waiter frees.
    ("writeback-free.atomic-clear", "atomic-clear", ["-DSCEN_WRITEBACK"], "pass",
     "no touch after free, without a pin"),
    ("writeback-free.clear-then-wake", "clear-then-wake", ["-DSCEN_WRITEBACK"], "fail:free",
     "v5.9: the load of the waiters bit after the clear touches a freed object"),
    ("writeback-free.pinned", "pinned", ["-DSCEN_WRITEBACK"], "pass",
     "Hugh Dickins' fix: the pin keeps the object"),
    ("writeback-free.xor-waiters", "xor-waiters", ["-DSCEN_WRITEBACK"], "pass",
     "mainline: one xor, still pinned"),
    ("writeback-free.atomic-clear.probe-free", "atomic-clear", ["-DSCEN_WRITEBACK", "-DPROBE_FREE"],
     "fail:probe:free", "non-vacuity: the object does get freed"),
    ("writeback-free.atomic-clear.probe-span", "atomic-clear", ["-DSCEN_WRITEBACK", "-DPROBE_SPAN"],
     "fail:probe:span", "non-vacuity: the walk spans lock holds"),
    ("writeback-free.broken-split-clear", "atomic-clear", ["-DSCEN_WRITEBACK", "-DBROKEN_SPLIT_CLEAR"],
     "fail:free", "clearing B and WB in two RMWs: the second touches a freed object"),
    ("writeback-free.broken-read-after-unpark", "atomic-clear",
     ["-DSCEN_WRITEBACK", "-DBROKEN_READ_AFTER_UNPARK"], "fail:node",
     "reading a node's link after its unpark reads a waiter's stack frame that is gone"),
    # lock-handoff (CONTRACT 5): three threads lock/unlock one bit twice each.
    ("lock-handoff.atomic-clear", "atomic-clear", ["-DSCEN_LOCK", "-DNT=3", "-DITER=2"], "pass",
     "one owner, no lost wake-up, woken means cleared"),
    ("lock-handoff.clear-then-wake", "clear-then-wake", ["-DSCEN_LOCK", "-DNT=3", "-DITER=2"], "fail:late",
     "v5.9: a lock waiter is woken by a clear that preceded its queueing (a late wake-up)"),
    ("lock-handoff.xor-waiters", "xor-waiters", ["-DSCEN_LOCK", "-DNT=3", "-DITER=2"], "fail:late",
     "mainline's walk too wakes a lock waiter by a clear that preceded its queueing"),
    ("lock-handoff.clear-then-wake.no-i3", "clear-then-wake",
     ["-DSCEN_LOCK", "-DNT=3", "-DITER=2", "-DNO_I3"], "pass",
     "v5.9 still keeps one owner and loses no wake-up (the late wake-up is only spurious)"),
    ("lock-handoff.clear-then-wake.fair", "clear-then-wake",
     ["-DSCEN_LOCK", "-DNT=3", "-DITER=2", "-DNO_I3", "-DCHECK_FAIR_OLD"], "fail:fair",
     "v5.9's hand-off comes after the clear: a barger takes the bit first and the earned hand-off is lost"),
    ("lock-handoff.atomic-clear.probe-handoff", "atomic-clear",
     ["-DSCEN_LOCK", "-DNT=3", "-DITER=2", "-DPROBE_HANDOFF"], "fail:probe:handoff",
     "non-vacuity: a lock is handed off"),
    ("lock-handoff.broken-handoff-clears", "atomic-clear",
     ["-DSCEN_LOCK", "-DNT=3", "-DITER=2", "-DBROKEN_HANDOFF_CLEARS"], "fail:owner",
     "a hand-off that also clears the bit gives the lock two owners"),
    # hand-off with waiters joining a multi-hold walk: they must go back to the queue.
    ("lock-join.atomic-clear", "atomic-clear", ["-DSCEN_LOCK", "-DNT=4", "-DITER=1"], "pass",
     "joined lock waiters re-queued after a hand-off are not lost"),
    ("lock-join.atomic-clear.probe-requeue", "atomic-clear",
     ["-DSCEN_LOCK", "-DNT=4", "-DITER=1", "-DPROBE_REQUEUE"], "fail:probe:requeue",
     "non-vacuity: the re-queue path runs"),
    ("lock-join.broken-restart-from-head", "atomic-clear",
     ["-DSCEN_LOCK", "-DNT=4", "-DITER=1", "-DBROKEN_RESTART_FROM_HEAD"], "fail:walk",
     "a walk that restarts from the head after each hold revisits the waiters it left queued"),
    ("lock-join.broken-late-unregister", "atomic-clear",
     ["-DSCEN_LOCK", "-DNT=4", "-DITER=1", "-DBROKEN_LATE_UNREGISTER"], "fail:record",
     "a record removed after the unparks is still registered when the next owner's release registers "
     "(pan -E: the stale record also swallows arrivals, a lost wake-up that spin reports first otherwise)"),
    # lock-designated: lock-handoff with two visits per hold, so that an unlock's walk over two
    # queued lockers ends in its first hold and may make the one it wakes the designated waker.
    ("lock-designated.atomic-clear", "atomic-clear", ["-DSCEN_LOCK", "-DNT=3", "-DITER=2", "-DCHUNK=2"],
     "pass", "a designated waker: the unlock clears WB with a locker still queued; the waker's race sets it again"),
    ("lock-designated.atomic-clear.probe-desig", "atomic-clear",
     ["-DSCEN_LOCK", "-DNT=3", "-DITER=2", "-DCHUNK=2", "-DPROBE_DESIG"], "fail:probe:desig",
     "non-vacuity: an unlock designates the locker it wakes"),
    ("lock-designated.broken-desig-no-wb", "atomic-clear",
     ["-DSCEN_LOCK", "-DNT=3", "-DITER=2", "-DCHUNK=2", "-DBROKEN_DESIG_NO_WB"], "fail:i4",
     "a designated waker whose race leaves WB clear leaves a locker queued with nobody to wake it"),
    ("lock-designated.broken-desig-past-earned", "atomic-clear",
     ["-DSCEN_LOCK", "-DNT=3", "-DITER=2", "-DCHUNK=2", "-DBROKEN_DESIG_PAST_EARNED"], "fail:fair",
     "designating past a locker that earned its hand-off: a fast unlock clears the bit under it"),
    # handoff-past-reader: a shared waiter on the lock bit queued ahead of a locker.
    ("handoff-past-reader.atomic-clear", "atomic-clear", ["-DSCEN_FAIR", "-DNT=4", "-DCHUNK=1"], "pass",
     "the first exclusive waiter decides: an earned hand-off is honoured past readers, who are re-queued "
     "(with the readers that joined after them); a locker that joins may be handed the bit"),
    ("handoff-past-reader.atomic-clear.probe-overtake", "atomic-clear",
     ["-DSCEN_FAIR", "-DCHUNK=1", "-DPROBE_OVERTAKE"], "fail:probe:overtake",
     "non-vacuity: a hand-off passes a reader the walk had already dequeued"),
    ("handoff-past-reader.atomic-clear.probe-requeue-both", "atomic-clear",
     ["-DSCEN_FAIR", "-DNT=4", "-DCHUNK=1", "-DPROBE_REQUEUE_BOTH"], "fail:probe:requeue_both",
     "non-vacuity: one re-queue takes both dequeued readers and joined arrivals"),
    ("handoff-past-reader.atomic-clear.probe-joiner-handoff", "atomic-clear",
     ["-DSCEN_FAIR", "-DNT=4", "-DCHUNK=1", "-DPROBE_JOINER_HANDOFF"], "fail:probe:joiner_handoff",
     "non-vacuity: an unlock whose walk met no locker hands off to a locker that joined it"),
    ("handoff-past-reader.atomic-clear.strict", "atomic-clear",
     ["-DSCEN_FAIR", "-DNT=4", "-DCHUNK=1", "-DSTRICT_FAIR"], "pass",
     "max_lost_races 0: every lock waiter has earned a hand-off, and no unlock wakes one to race"),
    ("handoff-past-reader.broken-no-joiner-handoff", "atomic-clear",
     ["-DSCEN_FAIR", "-DNT=4", "-DCHUNK=1", "-DSTRICT_FAIR", "-DBROKEN_NO_JOINER_HANDOFF"], "fail:fair",
     "without the joiner hand-off, a locker that joins a walk over two readers is woken to race"),
    ("handoff-past-reader.clear-then-wake", "clear-then-wake", ["-DSCEN_FAIR", "-DCHUNK=1"], "fail:late",
     "v5.9: a walk that runs after the lock was re-taken wakes a reader that queued after its clear"),
    ("handoff-past-reader.broken-first-decides", "atomic-clear",
     ["-DSCEN_FAIR", "-DCHUNK=1", "-DBROKEN_FIRST_DECIDES"], "fail:fair",
     "the old rule: the reader first in the queue decides, and the earned hand-off is lost"),
    ("handoff-past-reader.broken-handoff-wakes-shared", "atomic-clear",
     ["-DSCEN_FAIR", "-DCHUNK=1", "-DBROKEN_HANDOFF_WAKES_SHARED"], "fail:late",
     "a hand-off that still wakes the readers it dequeued wakes them into a bit that never cleared"),
    # the Jan 2021 race: writeback ends, starts again, ends again; a waiter must see a clear.
    ("rewrite.atomic-clear", "atomic-clear", ["-DSCEN_REWRITE", "-DNT=4"], "pass",
     "a waiter is never woken into a writeback that restarted after the clear it queued behind"),
    ("rewrite.clear-then-wake", "clear-then-wake", ["-DSCEN_REWRITE", "-DNT=4"], "fail:late",
     "v5.9: the first release's late wake-up wakes a waiter of the second writeback (c2407cf7d22d)"),
    ("rewrite.xor-waiters", "xor-waiters", ["-DSCEN_REWRITE", "-DNT=4"], "fail:late",
     "mainline keeps the late wake-up (hence its `while` loop, and the 2024 starvation)"),
    # bookmark-walk (CONTRACT 5): chunked walk, waiters arriving during it.
    ("bookmark-walk.atomic-clear.chunk1", "atomic-clear", ["-DSCEN_WALK", "-DNT=4", "-DCHUNK=1"], "pass",
     "bookmark, end marker and joining: every waiter woken, after the clear"),
    ("bookmark-walk.atomic-clear.chunk2", "atomic-clear", ["-DSCEN_WALK", "-DNT=4", "-DCHUNK=2"], "pass",
     "the same with two visits per hold"),
    ("bookmark-walk.atomic-clear.probe-join", "atomic-clear",
     ["-DSCEN_WALK", "-DNT=4", "-DCHUNK=1", "-DPROBE_JOIN"], "fail:probe:join",
     "non-vacuity: an arrival joins the release in progress"),
    ("bookmark-walk.broken-late-clear", "atomic-clear",
     ["-DSCEN_WALK", "-DNT=4", "-DCHUNK=1", "-DBROKEN_LATE_CLEAR", "-DNO_I4"], "fail:lost",
     "CONTRACT 4: clearing in a later hold than the one that reached the end loses a wake-up"),
    ("bookmark-walk.broken-no-join", "atomic-clear",
     ["-DSCEN_WALK", "-DNT=4", "-DCHUNK=1", "-DBROKEN_NO_JOIN", "-DNO_I4"], "fail:lost",
     "arrivals queued behind the end marker instead of joining are lost"),
    ("bookmark-walk.broken-no-join.i4", "atomic-clear",
     ["-DSCEN_WALK", "-DNT=4", "-DCHUNK=1", "-DBROKEN_NO_JOIN"], "fail:i4",
     "the same bug, caught earlier by the I4 monitor: a waiter queued with the waiters bit clear"),
]

PAN_FLAGS = ["-m200000", "-w22"]
# Extra pan flags of a run. -E: do not report invalid end states (lost wake-ups), for a broken
# variant whose property can only fail alongside a lost wake-up, which spin would report first.
PAN_EXTRA = {
    "lock-join.broken-late-unregister": ["-E"],
}


def find_cc():
    for c in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if c and shutil.which(c):
            return c
    sys.exit("run_spin.py: no C compiler (cc) found")


def run(cmd, cwd, timeout=300):
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout


def error_kind(text):
    """The kind of the first error pan reported, from its output."""
    m = re.search(r"pan:1: (.*)", text)
    if not m:
        return None, ""
    msg = m.group(1)
    if "invalid end state" in msg:
        return "lost", msg
    pm = re.search(r"assertion violated\s+!\(reached_(\w+)\)", msg)
    if pm:
        return "probe:" + pm.group(1), msg
    if re.search(r"assertion violated\s+!\(freed\)", msg):
        return "free", msg
    if re.search(r"assertion violated\s+\(csince&\(1<<me\)\)", msg):
        return "late", msg
    if re.search(r"assertion violated\s+\(\(owners==1\)\)|assertion violated\s+\(owners==1\)"
                 r"|assertion violated\s+\(word&1\)", msg):
        return "owner", msg
    if "inq>0" in msg:
        return "i4", msg
    if re.search(r"assertion violated\s+\(?alive\[", msg):
        return "node", msg
    if "wvisits<=q0" in msg:
        return "walk", msg
    if re.search(r"assertion violated\s+\(?\(?j==255\)|rreg\[r\]", msg):
        return "record", msg
    if "ftarget" in msg or re.search(r"assertion violated\s+!\(strict\)", msg):
        return "fair", msg
    return "other", msg


def one(name, proto, defs, expect, what, spin, cc, workroot, verbose):
    wd = os.path.join(workroot, name)
    shutil.rmtree(wd, ignore_errors=True)
    os.makedirs(wd)
    shutil.copy(MODEL, wd)
    macros = [PROTO[proto]] + defs
    t0 = time.monotonic()
    rc, out = run([spin] + macros + ["-a", "pagewait.pml"], wd)
    if rc != 0:
        return False, {"note": "spin -a failed:\n" + out}
    # -O0: the state spaces are small, and at -O2 compiling pan.c takes far longer than pan runs.
    rc, out = run([cc, "-O0", "-DSAFETY", "-DCOLLAPSE", "-w", "-o", "pan", "pan.c"], wd)
    if rc != 0:
        return False, {"note": "cc pan.c failed:\n" + out}
    t1 = time.monotonic()
    rc, out = run(["./pan"] + PAN_FLAGS + PAN_EXTRA.get(name, []), wd)
    secs = time.monotonic() - t0
    pan_secs = time.monotonic() - t1
    with open(os.path.join(wd, "pan.out"), "w") as f:
        f.write(out)
    m = re.search(r"errors: (\d+)", out)
    errors = int(m.group(1)) if m else None
    m = re.search(r"(\d+) states, stored", out)
    states = int(m.group(1)) if m else None
    m = re.search(r"State-vector (\d+) byte, depth reached (\d+)", out)
    depth = int(m.group(2)) if m else None
    trail = os.path.join(wd, "pagewait.pml.trail")
    kind, msg = error_kind(out)
    res = {"errors": errors, "states": states, "depth": depth, "secs": secs, "pan_secs": pan_secs, "kind": kind, "msg": msg}
    if errors is None:
        res["note"] = "pan gave no verdict:\n" + out
        return False, res
    if expect == "pass":
        ok = errors == 0 and "max search depth too small" not in out and not os.path.exists(trail)
        if not ok:
            res["note"] = "expected no error and a complete search:\n" + out
            if os.path.exists(trail):
                _, rep = run([spin, "-t", "-p", "-g", "-l"] + macros + ["pagewait.pml"], wd)
                res["note"] += "\n--- trail replay ---\n" + rep[-8000:]
        return ok, res
    want = expect[len("fail:"):]
    if errors < 1 or not os.path.exists(trail):
        res["note"] = "expected spin to find an error (%s) and write a trail:\n%s" % (want, out)
        return False, res
    if kind != want:
        res["note"] = "expected an error of kind %s, spin found: %s" % (want, msg)
        _, rep = run([spin, "-t", "-p", "-g", "-l"] + macros + ["pagewait.pml"], wd)
        res["note"] += "\n--- trail replay ---\n" + rep[-8000:]
        return False, res
    # Replay the trail: it must reproduce the error, and it is the printed trace.
    _, rep = run([spin, "-t", "-p", "-g", "-l"] + macros + ["pagewait.pml"], wd)
    with open(os.path.join(wd, "trail.txt"), "w") as f:
        f.write(rep)
    reproduced = ("assertion violated" in rep) if want != "lost" else ("timeout" in rep or "end state" in rep
                                                                       or "trail ends" in rep)
    if not reproduced:
        res["note"] = "the trail replay does not reproduce the error:\n" + rep[-4000:]
        return False, res
    res["trace"] = rep
    return True, res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="run only these")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--spin", help="the spin executable (default: spin on PATH)")
    ap.add_argument("--workdir", help="where pan is built (default: a temporary directory)")
    ap.add_argument("--trace-lines", type=int, default=60, help="lines of each error trace to print")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    if a.list:
        for r in RUNS:
            print(r[0])
        return 0
    runs = RUNS
    if a.only:
        names = {r[0] for r in RUNS}
        bad = [n for n in a.only if n not in names]
        if bad:
            sys.exit("run_spin.py: unknown run(s): %s" % ", ".join(bad))
        runs = [r for r in RUNS if r[0] in a.only]
    spin = a.spin or shutil.which("spin")
    if not spin:
        sys.exit("run_spin.py: spin not found (Debian package `spin`; scripts/install-deps installs it)")
    cc = find_cc()
    workroot = a.workdir or tempfile.mkdtemp(prefix="pagewait-spin-")
    os.makedirs(workroot, exist_ok=True)
    results = []
    failed = 0
    for name, proto, defs, expect, what in runs:
        ok, res = one(name, proto, defs, expect, what, spin, cc, workroot, a.verbose)
        results.append((name, proto, defs, expect, what, ok, res))
        verdict = "ok" if ok else "UNEXPECTED"
        found = res.get("kind") or "none"
        print("%-45s expect %-18s found %-14s errors %-4s states %-8s %6.2fs  %s" % (
            name, expect, found, res.get("errors"), res.get("states"), res.get("secs", 0.0), verdict))
        if "trace" in res and a.trace_lines:
            lines = [l for l in res["trace"].splitlines() if l.strip()]
            print("    %s: %s; trail in %s; last %d lines of the replay:" % (
                what, res["msg"], os.path.join(workroot, name), min(a.trace_lines, len(lines))))
            for l in lines[-a.trace_lines:]:
                print("      " + l)
        if not ok:
            failed += 1
            print(res.get("note", ""))
    if a.markdown:
        print()
        print("| run | protocol | expected | errors | first error | states stored | depth | pan s | total s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, proto, defs, expect, what, ok, res in results:
            print("| `%s` | %s | %s | %s | %s | %s | %s | %.2f | %.2f |" % (
                name, proto, expect, res.get("errors"),
                (res.get("msg") or "-").replace("  ", " ").replace("|", "\\|"),
                res.get("states"), res.get("depth"), res.get("pan_secs", 0.0), res.get("secs", 0.0)))
    print("%d run(s), %d as expected, %d unexpected" % (len(results), len(results) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
