#!/usr/bin/env python3
"""Checks CONTRACT §3.8 ("no work when uncontended") in the generated code.

Usage: check_fastpath.py OBJDUMP OBJECT [--expect-fail]

Disassembles OBJECT (tests/fastpath_probe.cpp compiled as users compile it) and, for every
function named pw_probe_*, finds its fast paths: the routes through the function's control
flow from the entry to a `ret` that make no call (the slow paths and the throws are calls or
tail jumps out of the function). There must be one, and on each it requires:
  * exactly one atomic read-modify-write: one `lock`-prefixed instruction (an `xchg` with
    memory is implicitly locked and counts too);
  * no fence (`mfence`/`lfence`/`sfence`) (calls and syscalls end a route: a function whose
    every route to `ret` calls out has no fast path and fails);
  * for the lock operations (names with `lock_bit` but not `unlock`), no backward branch in
    the call-free part of the function: locking is one `lock bts`, not a CAS loop. Releases
    may loop back to retry their CAS.
With --expect-fail the exit status is inverted (0 only if every function violates the
rules): the self-test on tests/fastpath_bad_probe.cpp that shows the checker can fail. Exit 77 (ctest: skipped) if OBJDUMP cannot
disassemble.
"""
import re
import subprocess
import sys

INSN = re.compile(r"^\s*([0-9a-f]+):\s+(.*)$")
FUNC = re.compile(r"^([0-9a-f]+) <([^>]+)>:$")
RELOC = re.compile(r"^\s*[0-9a-f]+: R_\S+\s+\S+")


def parse(objdump, obj):
    # -r: in an unlinked object a call or tail jump to another function shows as a jump to the
    # next instruction; its relocation says where it really goes.
    out = subprocess.run([objdump, "-d", "-r", "--no-show-raw-insn", obj], capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stderr)
        sys.exit(77)
    funcs, cur = {}, None
    for line in out.stdout.splitlines():
        m = FUNC.match(line)
        if m:
            cur = m.group(2)
            funcs[cur] = []
            continue
        m = RELOC.match(line)
        if m and cur is not None and funcs[cur]:
            addr, text = funcs[cur][-1]
            funcs[cur][-1] = (addr, text + " <reloc>")
            continue
        m = INSN.match(line)
        if m and cur is not None:
            text = m.group(2).split("#")[0].strip()
            funcs[cur].append((int(m.group(1), 16), text))
    return funcs


def successors(insns, i, by_addr, lo, hi):
    """(next instruction indices, reason this instruction stops the path or None)."""
    addr, text = insns[i]
    parts = text.split()
    mnem = parts[0] if parts else ""
    if mnem.startswith("ret"):
        return [], None
    if mnem.startswith("call") or mnem == "syscall":
        return [], "call"
    m = re.match(r"(j[a-z]+)\s+([0-9a-f]+)\b", text)
    if mnem.startswith("j"):
        target = int(m.group(2), 16) if m else None
        inside = target is not None and lo <= target <= hi and target in by_addr and "<reloc>" not in text
        if mnem == "jmp":
            return ([by_addr[target]], None) if inside else ([], "tail jump")
        nxt = [i + 1] if i + 1 < len(insns) else []
        return nxt + ([by_addr[target]] if inside else []), None
    return ([i + 1] if i + 1 < len(insns) else []), None


def is_locked(text):
    parts = text.split()
    mnem = parts[0] if parts else ""
    return mnem == "lock" or (mnem.startswith("xchg") and "(" in text)


def check(name, insns):
    """Every route from the entry to a `ret` that makes no call (the calls are the slow paths
    and the throws) is a fast path; there must be one, and each must hold exactly one locked
    instruction and no fence. Lock operations must not loop anywhere outside their calls."""
    by_addr = {a: i for i, (a, _) in enumerate(insns)}
    lo, hi = insns[0][0], insns[-1][0]
    problems, paths = [], []
    is_lock = "lock_bit" in name and "unlock" not in name

    # The call-free region reachable from the entry, and its back edges.
    seen, stack = set(), [0]
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        nxt, _ = successors(insns, i, by_addr, lo, hi)
        for j in nxt:
            if is_lock and insns[j][0] <= insns[i][0]:
                problems.append("0x%x: backward branch (a loop) in a lock fast path: %s" % insns[i])
            stack.append(j)

    # Simple paths from the entry to a ret within that region.
    def walk(i, on_path, path):
        if len(paths) > 64:
            return
        nxt, stop = successors(insns, i, by_addr, lo, hi)
        path = path + [i]
        text = insns[i][1]
        if text.split()[0].startswith("ret"):
            paths.append(path)
            return
        if stop:
            return
        for j in nxt:
            if j not in on_path:
                walk(j, on_path | {j}, path)

    walk(0, {0}, [])
    if not paths:
        problems.append("no call-free path from the entry to a ret")
    for path in paths:
        texts = [insns[i][1] for i in path]
        locked = sum(is_locked(t) for t in texts)
        fences = [t for t in texts if t.split()[0] in ("mfence", "lfence", "sfence")]
        if locked != 1:
            problems.append("%d locked instructions on the fast path %s, expected exactly 1" %
                            (locked, " ; ".join(texts)))
        if fences:
            problems.append("fence on the fast path: %s" % ", ".join(fences))
    shown = min(paths, key=len) if paths else []
    return [insns[i] for i in shown], sorted(set(problems))


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    objdump, obj = sys.argv[1], sys.argv[2]
    expect_fail = "--expect-fail" in sys.argv[3:]
    funcs = {n: i for n, i in parse(objdump, obj).items() if n.startswith("pw_probe_") and i}
    if not funcs:
        print("no pw_probe_* functions in %s" % obj)
        return 1
    failed = 0
    for name in sorted(funcs):
        path, problems = check(name, funcs[name])
        status = "FAIL" if problems else "ok"
        print("%-36s %-4s %s" % (name, status, " ; ".join(t for _, t in path)))
        for p in problems:
            print("    " + p)
        failed += bool(problems)
    print("%d of %d probe functions violate the fast-path rules" % (failed, len(funcs)))
    if expect_fail:
        return 0 if failed == len(funcs) else 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
