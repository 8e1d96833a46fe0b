#!/usr/bin/env python3
"""bench/run.py — the benchmark driver: every figure, every peer, one run, one machine.

Runs pagewait_micro (Google Benchmark: figures 1, 2), pagewait_figures (counts, figures 3-7)
and the callgrind loops (instructions per op, figures 1, 2); checks every output; writes
results.json, benchmarks.md (tables of ratios against the named peer of the same run, the
targets of issue 5, the machine and the command) and PNG plots.

  run.py --bin BUILD/bench [--quick] [--out DIR] [--doc FILE] [--update-docs] [--no-callgrind] [--scale X]

Writes into the build directory: BUILD/bench/report/ (full run) or BUILD/bench/quick/ (--quick,
CI, under two minutes: fewer sizes and shorter runs), benchmarks.md beside results.json and the
plots, unless --out/--doc say otherwise. --update-docs (full runs only): writes
docs/benchmarks.md and docs/benchmarks/*.png|json of the source tree instead. Exits non-zero if a
benchmark crashes or its output is missing or invalid; asserts no thresholds (the machine is
shared and noisy).
"""
import argparse
import datetime
import glob
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

AC = "pagewait (atomic-clear)"
PW_ROWS = [AC, "pinned", "xor-waiters", "clear-then-wake"]
PEERS = ["std::mutex", "absl::Mutex", "tbb::mutex", "tbb::spin_mutex", "tbb::queuing_mutex", "atomic::wait bit",
         "naive futex bit", "TAS spinlock"]
ALL = PW_ROWS + PEERS
FLOOR = "two-RMW floor"
# The peers that put a waiting thread to sleep; the others spin (TAS; tbb::spin_mutex spins and
# yields). A spinlock's lock+unlock is one RMW and a store, below pagewait's two-RMW floor: it
# wins where nobody waits, and is shown apart.
SLEEPING = ["std::mutex", "absl::Mutex", "tbb::mutex", "tbb::queuing_mutex", "atomic::wait bit", "naive futex bit"]
NO_EVENT = {"std::mutex": "no event bit (a mutex)", "absl::Mutex": "no event bit (absl has none)",
            "tbb::mutex": "no event bit (a mutex)", "tbb::spin_mutex": "no event bit (cannot sleep)",
            "tbb::queuing_mutex": "no event bit (a mutex)", "TAS spinlock": "no event bit (cannot sleep)"}


def spread(samples, ref=None):
    """'(min–max)' of the samples, as ratios to `ref` samples of the same runs if given."""
    if not samples:
        return ""
    if ref is not None:
        samples = [a / b for a, b in zip(samples, ref) if b > 0]
        return f"({min(samples):.2f}–{max(samples):.2f})"
    return f"({min(samples) / 1e6:.2f}–{max(samples) / 1e6:.2f})"


def ratio_stats(a, b):
    """Median, least and most of the per-run ratios a[i] / b[i] (samples in run order), or None."""
    rs = sorted(x / y for x, y in zip(a or [], b or []) if y > 0)
    if not rs:
        return None
    return rs[(len(rs) - 1) // 2] if len(rs) % 2 else (rs[len(rs) // 2 - 1] + rs[len(rs) // 2]) / 2, rs[0], rs[-1]


def fmt_ratio_stats(st, fallback):
    """'0.98× (0.90–1.10)' from ratio_stats, or the plain ratio `fallback` when there are no samples."""
    if st is None:
        return fmt_ratio(fallback)
    return f"{fmt_ratio(st[0])} ({st[1]:.2f}–{st[2]:.2f})"


class BenchError(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_json(cmd, what):
    t0 = time.time()
    try:
        # A figure that hangs (a child process that died, a lost wake-up) fails the run instead
        # of holding it for ever; the longest full figure takes about a minute on 2 cores.
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what}: no result after 1800 s")
    if p.returncode != 0:
        raise BenchError(f"{what}: exit {p.returncode}\n{p.stderr[-3000:]}")
    try:
        j = json.loads(p.stdout)
    except json.JSONDecodeError as e:
        raise BenchError(f"{what}: invalid JSON ({e})\n{p.stdout[:2000]}")
    log(f"  {what}: {time.time() - t0:.1f} s")
    return j


def check_number(v, what):
    if not isinstance(v, (int, float)) or math.isnan(v) or math.isinf(v) or v < 0:
        raise BenchError(f"invalid value {v!r} in {what}")
    return v


def check_rows(j, what, keys):
    rows = j.get("rows")
    if not rows:
        raise BenchError(f"{what}: no rows")
    for r in rows:
        for k in keys:
            if k not in r:
                raise BenchError(f"{what}: row {r.get('peer')} lacks {k}")
            check_number(r[k], f"{what}/{r.get('peer')}/{k}")
    return rows


# ------------------------------------------------------------------------------------------
# Running

def run_micro(bin_dir, quick, scale):
    cmd = [os.path.join(bin_dir, "pagewait_micro"), "--benchmark_format=json"]
    if quick:
        cmd += [f"--benchmark_min_time={0.02 * scale}"]
    else:
        cmd += [f"--benchmark_min_time={0.25 * scale}", "--benchmark_repetitions=5",
                "--benchmark_report_aggregates_only=true",
                "--benchmark_enable_random_interleaving=true"]
    j = run_json(cmd, "micro (figs 1, 2)")
    out = {}
    for b in j.get("benchmarks", []):
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        name = b.get("run_name", b["name"])
        out[name] = check_number(b["cpu_time"], name)  # ns; CPU time: one thread, immune to being descheduled
        if b.get("time_unit", "ns") != "ns":
            raise BenchError(f"{name}: unexpected unit {b.get('time_unit')}")
    if "fig1/" + AC not in out or "fig2/set-only" not in out:
        raise BenchError("micro: missing benchmarks")
    return {"ns": out, "context": j.get("context", {})}


def run_callgrind(bin_dir):
    if not shutil.which("valgrind"):
        raise BenchError("valgrind not found (scripts/install-deps installs it)")
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "cg.out")
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
               os.path.join(bin_dir, "pagewait_figures"), "--figure", "instr"]
        j = run_json(cmd, "callgrind (figs 1, 2)")
        iters = j["iterations"]
        if not j.get("running_on_valgrind"):
            raise BenchError("callgrind: the loops did not run under valgrind")
        totals = {}
        for f in glob.glob(out + ".*"):
            name = total = None
            with open(f) as fh:
                for line in fh:
                    m = re.match(r"desc: Trigger: Client Request: (.*)", line)
                    if m:
                        name = m.group(1).strip()
                    m = re.match(r"(?:summary|totals): (\d+)", line)
                    if m:
                        total = int(m.group(1))
            if name and total is not None:
                totals[name] = total
    if "empty" not in totals or "fig1/" + AC not in totals:
        raise BenchError(f"callgrind: dumps missing ({sorted(totals)})")
    base = totals["empty"] / iters
    return {"iterations": iters, "loop_overhead": base,
            "per_op": {k: v / iters - base for k, v in totals.items() if k != "empty"}}


def run_figure(bin_dir, fig, quick, scale):
    cmd = [os.path.join(bin_dir, "pagewait_figures"), "--figure", fig, f"--scale={scale}"]
    if quick:
        cmd.append("--quick")
    return run_json(cmd, fig)


# ------------------------------------------------------------------------------------------
# Tables

def fmt_ratio(x):
    if x is None:
        return "—"
    return f"{x:.2f}×" if x < 100 else f"{x:.0f}×"


def fmt_ns(ns):
    if ns < 1e3:
        return f"{ns:.1f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.1f} µs"
    if ns < 1e9:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e9:.2f} s"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


def verdict(ok, text):
    return ("**met**" if ok else "**missed**") + f": {text}"


# ------------------------------------------------------------------------------------------
# Plots (matplotlib, headless)

def require_matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise BenchError(f"matplotlib is missing for {sys.executable} (Debian: python3-matplotlib, "
                         "for /usr/bin/python3; or pass --no-plots)")
    return matplotlib


def plots(res, out_dir):
    matplotlib = require_matplotlib()
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = {}

    def save(fig, name):
        path = os.path.join(out_dir, name)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        files[name] = path

    ns = res["micro"]["ns"]
    # Fig 1
    fig, ax = plt.subplots(1, 2 if res.get("callgrind") else 1, figsize=(11, 4), squeeze=False)
    names = [n for n in ALL + [FLOOR] if "fig1/" + n in ns and n != "naive futex bit"]
    ax[0][0].barh(names, [ns["fig1/" + n] for n in names], color=["C0" if n in PW_ROWS else "C7" for n in names])
    ax[0][0].set_xlabel("ns per lock+unlock (median)")
    ax[0][0].invert_yaxis()
    ax[0][0].set_title("Fig 1: uncontended lock+unlock (naive futex: off scale)")
    if res.get("callgrind"):
        cg = res["callgrind"]["per_op"]
        ax[0][1].barh(names, [cg.get("fig1/" + n, 0) for n in names],
                      color=["C0" if n in PW_ROWS else "C7" for n in names])
        ax[0][1].set_xlabel("instructions per lock+unlock (callgrind)")
        ax[0][1].invert_yaxis()
    save(fig, "fig1_uncontended.png")

    # Fig 2
    base = ns["fig2/set-only"]
    names = [n for n in ALL if "fig2/" + n in ns and n != "naive futex bit"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh(names, [max(0.0, ns["fig2/" + n] - base) for n in names],
            color=["C0" if n in PW_ROWS else "C7" for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("ns per event release, no waiter (set+release minus set)")
    ax.set_title("Fig 2: event release without waiters")
    save(fig, "fig2_event_release.png")

    # Fig 3
    rows = res["contended"]["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, sec in zip(axes, ["short", "long"]):
        for i, n in enumerate(ALL):
            pts = sorted((r["threads"], r["ops_per_s"]) for r in rows if r["peer"] == n and r["section"] == sec)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] / 1e6 for p in pts], marker="o",
                        linestyle="-" if n in PW_ROWS else "--", label=n, color=f"C{i}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("threads (the machine has %d hardware threads)" % res["contended"]["hardware_threads"])
        ax.set_ylabel("M lock+unlock / s")
        ax.set_title(f"Fig 3: contended, {sec} critical section")
    axes[1].legend(fontsize=7)
    save(fig, "fig3_contended.png")

    # Fig 4
    rows = res["handoff"]["rows"]
    fig, ax = plt.subplots(figsize=(8, 4))
    names = [r["peer"] for r in rows]
    ax.barh(names, [r["p50_ns"] / 1e3 for r in rows], label="p50", color="C0")
    ax.barh(names, [max(0, r["p99_ns"] - r["p50_ns"]) / 1e3 for r in rows], left=[r["p50_ns"] / 1e3 for r in rows],
            label="p99", color="C1", alpha=0.5)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("µs from release to the sleeping waiter owning the lock")
    ax.set_title("Fig 4: hand-off latency")
    ax.legend()
    save(fig, "fig4_handoff.png")

    # Fig 5
    rows = res["wakeall"]["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    peers5 = []
    for r in rows:
        if r["peer"] not in peers5:
            peers5.append(r["peer"])
    for i, n in enumerate(peers5):
        pts = sorted((r["waiters"], r["total_ns"]) for r in rows if r["peer"] == n)
        axes[0].plot([p[0] for p in pts], [p[1] / 1e6 for p in pts], marker="o", label=n, color=f"C{i}")
        pts = sorted((r["waiters"], r["max_hold_ns"]) for r in rows if r["peer"] == n and "max_hold_ns" in r)
        if pts:
            axes[1].plot([p[0] for p in pts], [p[1] / 1e3 for p in pts], marker="o", label=n, color=f"C{i}")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("waiters woken by one release")
    axes[0].set_ylabel("ms until the last waiter ran")
    axes[0].set_title("Fig 5: wake-all, total time")
    axes[1].set_ylabel("µs, longest single bucket-lock hold")
    axes[1].set_title("Fig 5: longest bucket-lock hold of the release")
    axes[0].legend(fontsize=7)
    save(fig, "fig5_wakeall.png")

    # Fig 6
    rows = res["fairness"]["rows"]
    tcs = sorted({r["threads"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    w = 0.8 / len(tcs)
    for k, t in enumerate(tcs):
        rr = {r["peer"]: r for r in rows if r["threads"] == t}
        xs = [i + k * w for i in range(len(ALL))]
        axes[0].bar(xs, [rr[n]["jain"] if n in rr else 0 for n in ALL], w, label=f"{t} threads")
        axes[1].bar(xs, [rr[n]["max_wait_ns"] / 1e6 if n in rr else 0 for n in ALL], w, label=f"{t} threads")
    for ax in axes:
        ax.set_xticks([i + w * (len(tcs) - 1) / 2 for i in range(len(ALL))])
        ax.set_xticklabels(ALL, rotation=35, ha="right", fontsize=7)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("Jain's index (1 = even)")
    axes[0].set_title("Fig 6: fairness")
    axes[1].set_ylabel("ms, longest wait")
    axes[1].set_yscale("log")
    axes[1].set_title("Fig 6: longest wait for the lock")
    save(fig, "fig6_fairness.png")

    # Fig 7
    rows = res["many"]["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    names = [r["peer"] for r in rows]
    axes[0].barh(names, [r["resident_bytes"] / 2**20 for r in rows], color="C2")
    axes[0].set_xlabel(f"MiB resident for {rows[0]['objects']:,} objects")
    axes[0].invert_yaxis()
    axes[0].set_title("Fig 7: memory")
    axes[1].barh(names, [r["ns_per_lock_unlock"] for r in rows], color="C3")
    axes[1].set_xlabel("ns per lock+unlock, address-order sweep")
    axes[1].invert_yaxis()
    axes[1].set_title("Fig 7: sweep time")
    save(fig, "fig7_many.png")

    # Fig 8
    if "bufferpool" in res:
        rows = res["bufferpool"]["rows"]
        names = list(dict.fromkeys(r["peer"] for r in rows))
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for i, n in enumerate(names):
            pts = sorted((r["threads"], r["ops_per_s"], r["p99_ns"]) for r in rows if r["peer"] == n)
            axes[0].plot([p[0] for p in pts], [p[1] / 1e6 for p in pts], marker="o", label=n, color=f"C{i}")
            axes[1].plot([p[0] for p in pts], [p[2] / 1e3 for p in pts], marker="o", label=n, color=f"C{i}")
        for ax in axes:
            ax.set_xscale("log", base=2)
            ax.set_xlabel("threads (the machine has %d hardware threads)" % res["bufferpool"]["hardware_threads"])
        axes[0].set_ylabel("M page accesses / s")
        axes[1].set_ylabel("p99 access latency, µs")
        axes[1].set_yscale("log")
        axes[0].set_title("Fig 8: buffer pool, zipfian accesses with I/O waits")
        axes[1].legend(fontsize=7)
        save(fig, "fig8_bufferpool.png")
    return files


# ------------------------------------------------------------------------------------------
# The document

def machine():
    m = {"python": platform.python_version(), "kernel": platform.release(), "machine": platform.machine()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    m["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    m["hardware_threads"] = os.cpu_count()
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            m["memory_gib"] = round(kb / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        m["compiler"] = subprocess.run(["c++", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        pass
    try:
        m["commit"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                     text=True).stdout.strip()
    except OSError:
        pass
    m["load_average_at_start"] = os.getloadavg()
    m["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return m


def document(res, command, plot_files, out_dir, doc_path):
    ns = res["micro"]["ns"]
    cg = res["callgrind"]["per_op"] if res.get("callgrind") else {}
    counts = {r["protocol"]: r for r in res["counts"]["rows"]}
    proto_of = {AC: "atomic-clear", "pinned": "pinned", "xor-waiters": "xor-waiters",
                "clear-then-wake": "clear-then-wake"}
    rel = os.path.relpath(out_dir, os.path.dirname(os.path.abspath(doc_path)))
    img = lambda name: f"![{name}]({rel}/{name})" if name in plot_files else ""
    m = res["machine"]
    L = []
    L.append("# Benchmarks: pagewait against its peers, one run\n")
    L.append("Generated by `bench/run.py` from one run; regenerate with:\n")
    L.append(f"```\n{command}\n```\n")
    L.append(f"**Machine**: {m.get('cpu', '?')}, **{m.get('hardware_threads')} hardware threads**, "
             f"{m.get('memory_gib', '?')} GiB, Linux {m.get('kernel')}, {m.get('compiler', '?')}; "
             f"commit {m.get('commit', '?')}, {m.get('date')}; load average at start "
             f"{', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}. The machine is shared with other "
             "builds and noisy: every figure shows ratios against a named peer measured in the same run, "
             "interleaved with it; bare times are given only for scale. With 2 hardware threads, "
             "the 4-, 8- and 16-thread points of figures 3 and 6 measure oversubscription: the lock holder "
             "is preempted, waiters wait for a core as much as for the lock.\n")
    if res["quick"]:
        L.append("> **Quick mode** (`--quick`, for CI): fewer sizes, short runs. These numbers only show that "
                 "the suite runs.\n")
    L.append("Peers, all in the same binaries: `std::mutex` (glibc), `absl::Mutex` (Debian libabsl 20220623, "
             "deadlock detection off as in an NDEBUG build), a bit lock on C++20 `std::atomic::wait`/`notify_all`, "
             "a naive futex bit lock with no waiters bit (every release makes the wake system call), a "
             "test-and-test-and-set spinlock, and pagewait under each of its four release protocols: the shipped "
             "`atomic-clear` through the public API, the others as `detail::core<native_policy, R, uint32_t>` "
             "with, for `pinned` and `xor-waiters`, a real reference count on the object taken and dropped "
             "around the release (the kernel's `folio_get`/`folio_put`). Each process starts one idle thread "
             "first: glibc's `pthread_mutex_lock` skips its atomics in a single-threaded process, which no "
             "program that needs a lock is.\n")

    # ---- targets
    tg = []
    r1 = ns["fig1/" + AC] / ns["fig1/std::mutex"]
    cg1 = (cg.get("fig1/" + AC, 0) / cg["fig1/std::mutex"]) if cg.get("fig1/std::mutex") else None
    tg.append(("Uncontended lock+unlock ≤ 0.70× `std::mutex`",
               verdict(r1 <= 0.70, f"{r1:.2f}× in time" + (f", {cg1:.2f}× in instructions" if cg1 else "")
                       + ("" if r1 <= 0.70 else f" ({(r1 / 0.70 - 1) * 100:.0f}% over the target)"))))
    base = ns["fig2/set-only"]
    rel_ac = ns["fig2/" + AC] - base
    rel_pin = ns["fig2/pinned"] - base
    r2 = rel_ac / rel_pin if rel_pin > 0 else None
    rmw2 = counts["atomic-clear"]["event_release_rmws"] / counts["pinned"]["event_release_rmws"]
    tg.append(("Event release without waiters ≤ 0.4× `pinned`",
               verdict(r2 is not None and r2 <= 0.4,
                       f"{fmt_ratio(r2)} in time (release alone), {rmw2:.2f}× in atomic RMWs "
                       f"({counts['atomic-clear']['event_release_rmws']:.0f} vs "
                       f"{counts['pinned']['event_release_rmws']:.0f})")))
    crow = res["contended"]["rows"]

    def contended_target(group):
        """The worst ratio of atomic-clear to the best of `group`, over every point, and the cells."""
        worst, cells = None, []
        for sec in ["short", "long"]:
            for t in sorted({r["threads"] for r in crow}):
                here = {r["peer"]: r["ops_per_s"] for r in crow if r["threads"] == t and r["section"] == sec}
                best_peer = max(group, key=lambda p: here.get(p, 0))
                ratio = here[AC] / here[best_peer]
                cells.append(f"{sec} {t}: {ratio:.2f}× {best_peer}")
                worst = ratio if worst is None else min(worst, ratio)
        return verdict(worst >= 1.0, f"worst {worst:.2f}× ({'; '.join(cells)})")

    tg.append(("Contended throughput, 1–16 threads, ≥ 1.0× the best non-pagewait peer (issue 10)",
               contended_target(PEERS)))
    tg.append(("… and ≥ 1.0× the best lock that sleeps (the spinlocks set apart)", contended_target(SLEEPING)))
    if "bufferpool" in res:
        br = res["bufferpool"]["rows"]
        others = [n for n in dict.fromkeys(r["peer"] for r in br) if n != AC]
        worst_t, worst_l, cells = None, None, []
        for t in sorted({r["threads"] for r in br}):
            here = {r["peer"]: r for r in br if r["threads"] == t}
            bpeer = max(others, key=lambda p: here[p]["ops_per_s"])
            rt = here[AC]["ops_per_s"] / here[bpeer]["ops_per_s"]
            rl = here[AC]["p99_ns"] / min(here[p]["p99_ns"] for p in others)
            cells.append(f"{t} thr: {rt:.2f}× {bpeer}, p99 {rl:.2f}×")
            worst_t = rt if worst_t is None else min(worst_t, rt)
            worst_l = rl if worst_l is None else max(worst_l, rl)
        sizes = {r["peer"]: r["bytes_per_page"] for r in br}
        smallest = min(sizes[p] for p in others)
        tg.append(("Buffer pool with I/O waits: ≥ 1.5× the best peer's throughput at every thread count (issue 10)",
                   verdict(worst_t >= 1.5, f"worst {worst_t:.2f}× ({'; '.join(cells)})")))
        tg.append(("… its p99 access latency ≤ the best peer's",
                   verdict(worst_l <= 1.0, f"worst {worst_l:.2f}× the lowest peer p99")))
        tg.append(("… at most half the smallest peer's bytes per page",
                   verdict(sizes[AC] * 2 <= smallest,
                           f"{sizes[AC]} bytes against {smallest} (" +
                           ", ".join(f"{p}: {sizes[p]}" for p in others) + ")")))
    hrows = {r["peer"]: r for r in res["handoff"]["rows"]}
    ref = hrows["bare futex ping-pong"]
    st4 = ratio_stats(hrows[AC].get("block_p50_ns"), ref.get("block_p50_ns"))
    r4 = st4[0] if st4 else hrows[AC]["p50_ns"] / ref["p50_ns"]
    tg.append(("Hand-off p50 ≤ 1.1× bare futex ping-pong",
               verdict(r4 <= 1.1, f"{fmt_ratio_stats(st4, r4)} per interleaved block; over all samples "
                       f"{hrows[AC]['p50_ns'] / ref['p50_ns']:.2f}× (p99 {hrows[AC]['p99_ns'] / ref['p99_ns']:.2f}×), "
                       f"bare futex p50 {fmt_ns(ref['p50_ns'])}")))
    wall = res["wakeall"]["rows"]
    big = max(r["waiters"] for r in wall)
    n_wake = 1000 if any(r["waiters"] == 1000 for r in wall) else big
    w_ac = next(r for r in wall if r["peer"] == AC and r["waiters"] == n_wake)
    w_aw = next(r for r in wall if r["peer"] == "atomic::wait bit" and r["waiters"] == n_wake)
    st5 = ratio_stats(w_ac.get("total_samples"), w_aw.get("total_samples"))
    r5 = st5[0] if st5 else w_ac["total_ns"] / w_aw["total_ns"]
    floors = []
    for fname in ("futex per waiter", "futex per waiter, io_uring"):
        w_f = next((r for r in wall if r["peer"] == fname and r["waiters"] == n_wake), None)
        if w_f:
            st = ratio_stats(w_ac.get("total_samples"), w_f.get("total_samples"))
            floors.append(f"{fmt_ratio_stats(st, w_ac['total_ns'] / w_f['total_ns'])} the {fname} floor")
    tg.append((f"Wake-all, N = {n_wake:,}: total ≤ 1.0× the `std::atomic::wait` peer (issue 10)",
               verdict(r5 <= 1.0, f"{fmt_ratio_stats(st5, r5)} per repetition (medians {fmt_ns(w_ac['total_ns'])} "
                       f"against {fmt_ns(w_aw['total_ns'])}; release call {fmt_ns(w_ac['release_ns'])} against "
                       f"{fmt_ns(w_aw['release_ns'])})" + ("; " + ", ".join(floors) if floors else ""))))
    wrows = [r for r in res["wakeall"]["rows"] if r["peer"] == AC]
    chunk = res["wakeall"]["chunk_visits"]
    maxv = max(r["max_hold_visits"] for r in wrows)
    maxh = max(r["max_hold_ns"] for r in wrows)
    nob = [r for r in res["wakeall"]["rows"] if r["peer"] == "atomic-clear, no bookmarks"]
    nobmax = max(nob, key=lambda r: r["waiters"]) if nob else None
    tg.append(("Longest bucket-lock hold bounded whatever N",
               verdict(maxv <= chunk, f"at most {maxv} visits (bound {chunk}), longest {fmt_ns(maxh)} over N up to "
                       f"{max(r['waiters'] for r in wrows):,}" +
                       (f"; without bookmarks {nobmax['max_hold_visits']:,} visits, {fmt_ns(nobmax['max_hold_ns'])}"
                        if nobmax else ""))))
    L.append("## Targets (issues 5 and 10), this run\n")
    L.append(table(["target", "result"], tg) + "\n")
    L.append("Why a target is missed, and what would close it, is discussed under [Notes](#notes).\n")

    # ---- fig 1
    L.append("## 1. Uncontended lock+unlock, one thread\n")
    L.append("Google Benchmark, median of the repetitions (randomly interleaved), CPU time per op (a one-thread loop: CPU time is immune to the thread being descheduled on this shared machine); instructions per op from `valgrind --tool=callgrind` "
             "(each peer's loop between client requests, minus the empty loop), which does not move with the "
             "machine's load. RMWs: atomic read-modify-writes on the object, counted by the core under "
             "`bench/probe_policy.hpp` (pagewait rows).\n")
    rows = []
    for n in ALL:
        t = ns.get("fig1/" + n)
        i = cg.get("fig1/" + n)
        c = counts.get(proto_of.get(n, ""), {})
        rows.append([n, fmt_ratio(t / ns["fig1/std::mutex"]), fmt_ns(t),
                     f"{i:.0f}" if i is not None else "—",
                     fmt_ratio(i / cg["fig1/std::mutex"]) if i is not None and cg.get("fig1/std::mutex") else "—",
                     f"{c['lock_unlock_rmws']:.0f}" if c else "—"])
    if "fig1/" + FLOOR in ns:
        t = ns["fig1/" + FLOOR]
        rows.append([f"*{FLOOR}*", fmt_ratio(t / ns["fig1/std::mutex"]), fmt_ns(t), "—", "—", "2"])
    L.append(table(["peer", "time vs std::mutex", "ns/op", "instructions/op", "instr. vs std::mutex",
                    "RMWs/op"], rows) + "\n")
    if "fig1/" + FLOOR in ns:
        L.append(f"*{FLOOR}*: a `lock bts` and a load + `lock cmpxchg` on one word and nothing else, the least "
                 "any bit lock with one atomic RMW each way can cost; pagewait (atomic-clear) is "
                 f"{ns['fig1/' + AC] / ns['fig1/' + FLOOR]:.2f}× it.\n")
    L.append(img("fig1_uncontended.png") + "\n")

    # ---- fig 2
    L.append("## 2. Event release with no waiters\n")
    L.append("Each iteration sets the event bit (the user's `fetch_or`) and releases it; nobody waits. "
             "\"Release\" is that minus the set alone (`fetch_or` + plain store, measured in the same run). RMWs "
             "per release counted under the probe policy, the pin's two included.\n")
    rows = []
    for n in ALL:
        if n in NO_EVENT:
            rows.append([n, "n/a", "n/a", "n/a", "n/a", NO_EVENT[n]])
            continue
        t = ns["fig2/" + n] - base
        c = counts.get(proto_of.get(n, ""), {})
        i = cg.get("fig2/" + n)
        note = {"atomic::wait bit": "1 RMW + notify_all's waiter-count check",
                "naive futex bit": "1 RMW + a FUTEX_WAKE system call, always"}.get(n, "")
        rows.append([n, fmt_ratio(t / rel_pin) if rel_pin > 0 else "—", fmt_ns(max(t, 0)),
                     f"{c['event_release_rmws']:.0f}" if c else "—",
                     f"{i - cg.get('set-only', 0):.0f}" if i is not None else "—", note])
    L.append(table(["peer", "release time vs pinned", "release ns", "RMWs/release", "instructions/release",
                    ""], rows) + "\n")
    L.append(img("fig2_event_release.png") + "\n")

    # ---- fig 3
    L.append("## 3. Contended throughput, one lock\n")
    L.append(f"Threads loop lock; critical section; unlock. Short section: a shared counter and ~10 multiply "
             f"steps; long: ~400 steps (about 1 µs). {res['contended']['reps']} runs of "
             f"{res['contended']['seconds_per_point']:.2f} s per point, peers interleaved, median. Cells: "
             "throughput relative to `std::mutex` at the same thread count, and in brackets the spread: the "
             "least and the most of that ratio over the runs (each run's peers ran back to back); last rows: "
             "pagewait (atomic-clear) over the best non-pagewait peer (by median), with the same spread.\n")
    for sec in ["short", "long"]:
        tcs = sorted({r["threads"] for r in crow})
        row_of = lambda p, t: next((r for r in crow if r["peer"] == p and r["threads"] == t
                                    and r["section"] == sec), None)
        get = lambda p, t: row_of(p, t)["ops_per_s"]
        smp = lambda p, t: row_of(p, t).get("samples", [])
        rows = [[n] + [f"{fmt_ratio(get(n, t) / get('std::mutex', t))} {spread(smp(n, t), smp('std::mutex', t))}"
                       for t in tcs] for n in ALL]
        rows.append(["std::mutex, M ops/s (scale)"] +
                    [f"{get('std::mutex', t) / 1e6:.2f} {spread(smp('std::mutex', t))}" for t in tcs])
        for label, group in [("best peer", PEERS), ("best lock that sleeps", SLEEPING)]:
            best = []
            for t in tcs:
                bp = max(group, key=lambda p: get(p, t))
                best.append(f"{get(AC, t) / get(bp, t):.2f}× {spread(smp(AC, t), smp(bp, t))} ({bp})")
            rows.append([f"**atomic-clear / {label}**"] + best)
        L.append(f"**{sec} critical section**\n")
        L.append(table(["peer"] + [f"{t} thr" for t in tcs], rows) + "\n")
    L.append(img("fig3_contended.png") + "\n")
    if any("sleeps_per_op" in r for r in crow):
        L.append("**Sleeps and wake-ups per lock transfer.** Sleeps: voluntary context switches per lock+unlock "
                 "(`getrusage(RUSAGE_THREAD)`, the same count for every peer: each is a wait that blocked in the "
                 "kernel), median of the runs. For pagewait also, from one more run with its statistics on "
                 "(`pagewait/stats.hpp`): futex wake system calls, parker sleeps, lost races and hand-offs per "
                 "transfer. The other peers' wake system calls are not counted: each sleep that a wake ended "
                 "took one, so their sleeps are a lower bound of them, and a wake that finds nobody asleep "
                 "(glibc's unlock of a mutex marked contended makes one) is seen only by tracing the "
                 "`futex` system call (tracefs, root), which the benchmark does not assume.\n")
        for sec in ["short", "long"]:
            tcs = sorted({r["threads"] for r in crow})
            row_of = lambda p, t: next((r for r in crow if r["peer"] == p and r["threads"] == t
                                        and r["section"] == sec), {})
            rows = [[n] + [f"{row_of(n, t).get('sleeps_per_op', 0):.3f}" for t in tcs]
                    for n in ALL if n != "TAS spinlock"]
            for key, label in [("wake_syscalls_per_op", "atomic-clear: wake syscalls"),
                               ("parker_sleeps_per_op", "atomic-clear: parker sleeps"),
                               ("lost_races_per_op", "atomic-clear: lost races"),
                               ("handoffs_per_op", "atomic-clear: hand-offs")]:
                if key in row_of(AC, tcs[0]):
                    rows.append([label] + [f"{row_of(AC, t).get(key, 0):.3f}" for t in tcs])
            L.append(f"**{sec} critical section, per lock transfer**\n")
            L.append(table(["peer"] + [f"{t} thr" for t in tcs], rows) + "\n")

    # ---- fig 4
    L.append("## 4. Hand-off latency between two threads\n")
    L.append("A holds the lock, B sleeps in lock() (A waits 50 µs, then until /proc shows B asleep in the kernel, "
             "at most 200 µs more; *not seen asleep*: the rounds where it was not), A reads the clock and unlocks, "
             "B reads the clock when lock() returns. The reference is a bare futex ping-pong in the same harness "
             "(store + FUTEX_WAKE; FUTEX_WAIT). The TAS spinlock's waiter spins instead of sleeping; its p99 "
             f"shows it fighting for one of 2 cores. {hrows[AC]['samples']} samples per peer, in "
             f"{res['handoff'].get('blocks', 1)} interleaved blocks; *per block*: the ratio of the block's p50 to "
             "the bare futex's in the same block, median (least–most) over the blocks; the other columns over all "
             "samples.\n")
    rows = [[r["peer"], fmt_ratio_stats(ratio_stats(r.get("block_p50_ns"), ref.get("block_p50_ns")),
                                        r["p50_ns"] / ref["p50_ns"]),
             fmt_ratio(r["p50_ns"] / ref["p50_ns"]), fmt_ratio(r["p99_ns"] / ref["p99_ns"]),
             fmt_ns(r["p50_ns"]), fmt_ns(r["p99_ns"]), f"{r.get('not_seen_asleep', 'n/a')}"]
            for r in res["handoff"]["rows"]]
    L.append(table(["peer", "p50 vs bare futex, per block", "p50 vs bare futex", "p99 vs bare futex", "p50", "p99",
                    "not seen asleep"], rows) + "\n")
    L.append(img("fig4_handoff.png") + "\n")

    # ---- fig 5
    L.append("## 5. Wake-all: one release, N waiters\n")
    L.append("N threads wait for one event bit; when all are queued, one release clears it. *Release*: the "
             "releasing call's own time; *total*: until the last waiter ran (on 2 cores mostly the scheduler "
             "running N threads). The pagewait rows run the core under `bench/probe_policy.hpp`, which times every "
             "bucket-lock hold of the releasing thread (two clock reads per hold) and counts its walk visits; "
             f"the shipped bound is {chunk} visits per hold (`chunk_visits`, the kernel's "
             "WAITQUEUE_WALK_BREAK_CNT). *no bookmarks*: the same core with the bound lifted, i.e. what the hold "
             "would be without them. The peers' hold (the kernel's futex hash-bucket lock, held across a wake of "
             "all N) cannot be observed from user space: n/a. "
             f"{res['wakeall'].get('reps', 1)} repetitions per N, peers interleaved in each: total and release "
             "call are medians; the ratio to `atomic::wait` is taken per repetition, median (least–most); the "
             "holds are the longest of any repetition. *futex per waiter*: the floor under pagewait's way of "
             "waking, without its walk: each waiter sleeps on a word of its own (registered under a mutex) and "
             "the release sets each word and makes one `FUTEX_WAKE` per waiter; *futex per waiter, io_uring*: "
             "the same wakes as `IORING_OP_FUTEX_WAKE` requests (Linux 6.7) submitted by one `io_uring_enter`, "
             "what batching the wake calls could save at best (`bench/futex_floor.hpp`)." +
             (f" The io_uring row is missing from this run: {res['wakeall']['uring_floor_missing']}."
              if res["wakeall"].get("uring_floor_missing") else "") + "\n")
    wr = res["wakeall"]["rows"]
    ref5 = {r["waiters"]: r for r in wr if r["peer"] == "atomic::wait bit"}
    rows = []
    for r in wr:
        rows.append([f"{r['waiters']:,}", r["peer"],
                     fmt_ratio_stats(ratio_stats(r.get("total_samples"), ref5[r["waiters"]].get("total_samples")),
                                     r["total_ns"] / ref5[r["waiters"]]["total_ns"]),
                     fmt_ns(r["total_ns"]), fmt_ns(r["release_ns"]),
                     f"{r['max_hold_visits']:,}" if "max_hold_visits" in r else "n/a",
                     fmt_ns(r["max_hold_ns"]) if "max_hold_ns" in r else "n/a",
                     f"{r['holds']:,}" if "holds" in r else "n/a"])
    L.append(table(["N", "peer", "total vs atomic::wait", "total", "release call", "longest hold (visits)",
                    "longest hold (time)", "holds"], rows) + "\n")
    L.append(img("fig5_wakeall.png") + "\n")

    # ---- fig 6
    L.append("## 6. Fairness under contention\n")
    fr = res["fairness"]["rows"]
    reps6 = res["fairness"].get("reps", 1)
    L.append(f"T threads loop lock; short section; unlock; a little work, for {res['fairness']['seconds']:.2f} s. "
             "Jain's index over per-thread acquisitions (1 = even, 1/T = one thread took all); longest wait of any "
             "thread from calling lock() to owning it; throughput relative to std::mutex. pagewait hands the lock "
             "to a waiter that lost 5 races or waited 1 ms (`set_fairness`). "
             f"{reps6} runs per point, peers interleaved in each: Jain's index and the longest wait are the "
             "medians of the runs (least–most); the ratios to std::mutex are taken per run, median "
             "(least–most); *longest of all*: the longest wait in any run.\n")

    def med_range(r, key, fmt):
        xs = r.get(key)
        return f" ({fmt(min(xs))}–{fmt(max(xs))})" if xs and len(xs) > 1 else ""

    rows = []
    for r in fr:
        sm = next(x for x in fr if x["peer"] == "std::mutex" and x["threads"] == r["threads"])
        rows.append([r["threads"], r["peer"],
                     f"{r['jain']:.3f}" + med_range(r, "jain_samples", lambda v: f"{v:.3f}"),
                     fmt_ns(r["max_wait_ns"]) + med_range(r, "max_wait_samples", fmt_ns),
                     fmt_ratio_stats(ratio_stats(r.get("max_wait_samples"), sm.get("max_wait_samples")),
                                     r["max_wait_ns"] / sm["max_wait_ns"]),
                     fmt_ns(r.get("longest_wait_ns", r["max_wait_ns"])),
                     fmt_ratio_stats(ratio_stats(r.get("ops_samples"), sm.get("ops_samples")),
                                     r["ops_per_s"] / sm["ops_per_s"])])
    L.append(table(["threads", "peer", "Jain's index", "longest wait", "longest wait vs std::mutex",
                    "longest of all", "throughput vs std::mutex"], rows) + "\n")
    L.append(img("fig6_fairness.png") + "\n")

    # ---- fig 7
    L.append("## 7. Many objects\n")
    mr = res["many"]["rows"]
    sm = next(x for x in mr if x["peer"] == "std::mutex")
    L.append(f"{res['many']['objects']:,} objects in one mapping (4 KiB pages), each locked and unlocked once per "
             "sweep in address order, one thread; the faster of two sweeps. Resident: RSS growth. pagewait's "
             f"wait table is allocated once whatever the count ({res['many']['wait_table_bytes'] / 1024:.0f} KiB "
             "here). Left out: " + "; ".join(f"{k} ({v})" for k, v in res["many"]["omitted"].items()) + ".\n")
    rows = [[r["peer"], r["object_bytes"], f"{r['resident_bytes'] / 2**20:.0f} MiB",
             fmt_ratio(r["resident_bytes"] / sm["resident_bytes"]),
             fmt_ratio(r["ns_per_lock_unlock"] / sm["ns_per_lock_unlock"]), fmt_ns(r["ns_per_lock_unlock"])]
            for r in mr]
    L.append(table(["peer", "bytes/object", "resident", "memory vs std::mutex", "time vs std::mutex",
                    "ns per lock+unlock"], rows) + "\n")
    L.append(img("fig7_many.png") + "\n")

    # ---- fig 8
    if "bufferpool" in res:
        bp = res["bufferpool"]
        br = bp["rows"]
        L.append("## 8. A buffer pool: page locks and I/O waits\n")
        L.append(f"{bp['pages']:,} pages, each with a lock bit and an I/O-in-progress bit in its header; threads "
                 f"access pages drawn from a Zipf distribution (θ = {bp['theta']}), hot pages scattered over the "
                 "pool. An access locks the page; if an I/O is in progress it unlocks and waits for the I/O to "
                 f"end; if the page is not resident it sets I/O, unlocks, reads for {bp['io_us']} µs (busy, a "
                 "fast device polled), marks it resident, clears I/O and wakes the waiters; else short work, and "
                 "one access in 256 evicts the page. Peers: a `std::mutex` + `std::condition_variable` per page, "
                 "an `absl::Mutex` per page waiting with `Await`, a `std::atomic::wait` word per page, and one "
                 f"pagewait word per page. {bp['reps']} runs of {bp['seconds_per_point']:.2f} s per point, peers "
                 "interleaved; throughput: median, with the least and most ratio over the runs; p99: one access "
                 "in 16 timed, median of the runs' p99.\n")
        tcs = sorted({r["threads"] for r in br})
        names = list(dict.fromkeys(r["peer"] for r in br))
        others = [n for n in names if n != AC]
        row_of = lambda p, t: next(r for r in br if r["peer"] == p and r["threads"] == t)
        rows = []
        for n in names:
            rows.append([n, row_of(n, tcs[0])["bytes_per_page"]] +
                        [f"{row_of(n, t)['ops_per_s'] / 1e6:.2f} M/s, p99 {fmt_ns(row_of(n, t)['p99_ns'])}"
                         for t in tcs])
        cells = []
        for t in tcs:
            bpeer = max(others, key=lambda p: row_of(p, t)["ops_per_s"])
            a, b = row_of(AC, t), row_of(bpeer, t)
            cells.append(f"{a['ops_per_s'] / b['ops_per_s']:.2f}× {spread(a['samples'], b['samples'])} "
                         f"({bpeer}); p99 {a['p99_ns'] / min(row_of(p, t)['p99_ns'] for p in others):.2f}× the "
                         "best peer's")
        rows.append(["**pagewait / best peer**", ""] + cells)
        L.append(table(["peer", "bytes/page"] + [f"{t} thr" for t in tcs], rows) + "\n")
        L.append(img("fig8_bufferpool.png") + "\n")

    # ---- fig 9
    if "async" in res:
        ar = res["async"]["rows"]
        L.append("## 9. Wake-all without threads: coroutines and callbacks\n")
        L.append("As figure 5, for the asynchronous waits of `<pagewait/async.hpp>`: N waiters queued on one event "
                 "bit, one `clear_bit_and_wake`. *co_await*: N coroutines on one event-loop thread in "
                 "`co_await wait_bit_clear_async`; the release's completions post their handles to the loop "
                 "(a mutex-protected queue and a condition variable), which resumes them. *callbacks*: N "
                 "`async_wait` callbacks that only note the time (the release runs them itself). *Total*: until the "
                 "last waiter's continuation ran. Repetitions interleaved; total: median (least–most); the ratio "
                 "to `std::atomic::wait` threads is taken per repetition: median (least–most).\n")
        rows = []
        for r in ar:
            rows.append([f"{r['waiters']:,}", r["peer"],
                         f"{fmt_ratio(r['total_vs_atomic_wait'])} ({r['total_vs_atomic_wait_min']:.2f}–"
                         f"{r['total_vs_atomic_wait_max']:.2f})",
                         f"{fmt_ns(r['total_ns'])} ({fmt_ns(r['total_ns_min'])}–{fmt_ns(r['total_ns_max'])})",
                         fmt_ns(r["release_ns"])])
        L.append(table(["N", "waiters", "total vs atomic::wait threads", "total", "release call"], rows) + "\n")
        if "handoff" in res["async"]:
            L.append("**Lock hand-off latency.** A thread unlocks a lock bit one waiter waits for (queued, and "
                     "asleep for 2 ms); the time from the unlock call until the waiter runs as the owner: a "
                     "coroutine in `co_await lock_bit_async` (resumed on the loop thread), an "
                     "`async_wait::start_lock` callback (run by the unlock itself), a thread in `lock_bit`, and "
                     "a thread in `std::mutex::lock`. Repetitions interleaved; median (least–most); the ratio to "
                     "`std::mutex` per repetition.\n")
            rows = []
            for r in res["async"]["handoff"]:
                rows.append([r["peer"],
                             f"{fmt_ratio(r['vs_std_mutex'])} ({r['vs_std_mutex_min']:.2f}–{r['vs_std_mutex_max']:.2f})",
                             f"{fmt_ns(r['latency_ns'])} ({fmt_ns(r['latency_ns_min'])}–{fmt_ns(r['latency_ns_max'])})"])
            L.append(table(["waiter", "vs std::mutex", "latency"], rows) + "\n")

    # ---- fig 10
    if "shared" in res:
        sh = res["shared"]
        L.append("## 10. Across processes: a wait domain (`<pagewait/shm.hpp>`)\n")
        L.append("Two processes (a parent and a forked child) over one `MAP_SHARED` mapping. *Lock hand-off*: the "
                 "parent holds the lock, the child sleeps in `lock`, the parent unlocks; the time from the unlock "
                 "call until the child owns the lock. *Event wake*: the child waits for a flag to clear, the "
                 "parent clears it and wakes; the time until the child runs. Peers: a domain's `lock_bit` / "
                 "`wait_bit_clear`; a `PTHREAD_PROCESS_SHARED` mutex (and, for the event, a process-shared "
                 "condition variable with the flag under the mutex); the floor, a bare shared futex (a store "
                 "and one `FUTEX_WAKE` against one `FUTEX_WAIT`). "
                 f"{sh['blocks']} interleaved blocks, a fresh child per block and peer; ratio to the bare futex: "
                 "median of the per-block ratios of medians (least–most); p50 over all samples "
                 "(least–most block median), p99 over all samples.\n")
        rows = []
        for r in sh["rows"]:
            rows.append([r["kind"], r["peer"],
                         f"{fmt_ratio(r['vs_bare'])} ({r['vs_bare_min']:.2f}–{r['vs_bare_max']:.2f})",
                         f"{fmt_ns(r['p50_ns'])} ({fmt_ns(r['block_p50_min_ns'])}–{fmt_ns(r['block_p50_max_ns'])})",
                         fmt_ns(r["p99_ns"]), f"{r.get('not_seen_asleep', 'n/a')}"])
        L.append(table(["", "peer", "p50 vs bare futex", "p50", "p99", "not seen asleep"], rows) + "\n")
        u = sh["uncontended"]
        L.append(f"**Uncontended.** `lock_bit` + `unlock_bit` on a word in a domain against a word in private "
                 f"memory with `<pagewait/pagewait.hpp>`, {len(u['domain_ns'])} interleaved repetitions of "
                 f"{sh['iterations']:,} pairs: {min(u['domain_ns']):.1f}–{max(u['domain_ns']):.1f} ns against "
                 f"{min(u['private_ns']):.1f}–{max(u['private_ns']):.1f} ns, ratio "
                 f"{fmt_ratio(u['domain_vs_private'])} ({u['domain_vs_private_min']:.2f}–"
                 f"{u['domain_vs_private_max']:.2f}). The same single RMW each way (`fastpath_test` checks both); "
                 "the domain adds a bounds check of the word against its handle.\n")

    notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notes.md")
    if os.path.exists(notes):
        with open(notes) as f:
            L.append(f.read())
    L.append(f"\nRaw results: `{os.path.relpath(os.path.join(out_dir, 'results.json'), os.path.dirname(os.path.abspath(doc_path)))}`.\n")
    with open(doc_path, "w") as f:
        f.write("\n".join(L))


def scale_arg(text):
    """--scale: a finite number from 0.01 to 100 (float() alone takes "nan" and "inf")."""
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and 0.01 <= v <= 100):
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a number from 0.01 to 100")
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the build's bench directory (pagewait_micro, pagewait_figures)")
    ap.add_argument("--quick", action="store_true", help="CI mode: under two minutes")
    ap.add_argument("--out", help="directory for results.json and the plots")
    ap.add_argument("--doc", help="the Markdown file to write")
    ap.add_argument("--no-callgrind", action="store_true", help="skip the instruction counts")
    ap.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    ap.add_argument("--update-docs", action="store_true",
                    help="write docs/benchmarks.md and docs/benchmarks/ of the source tree (full runs only)")
    ap.add_argument("--scale", type=scale_arg, default=1.0,
                    help="multiply durations and iteration counts (a number from 0.01 to 100)")
    ap.add_argument("--command", help="the command line to print in the document")
    ap.add_argument("--from-results", metavar="JSON",
                    help="write the plots and the document from a results.json of an earlier run (no run)")
    a = ap.parse_args()
    if a.update_docs and (a.quick or a.out or a.doc):
        ap.error("--update-docs writes docs/ from a full run: not with --quick, --out or --doc")
    if a.update_docs:
        a.out = os.path.join(ROOT, "docs", "benchmarks")
        a.doc = os.path.join(ROOT, "docs", "benchmarks.md")
    if a.out is None:
        a.out = os.path.join(a.bin, "quick" if a.quick else "report")
    if a.doc is None:
        a.doc = os.path.join(a.out, "benchmarks.md")
    os.makedirs(a.out, exist_ok=True)
    command = a.command or ("./scripts/pagewait bench" + (" --quick" if a.quick else ""))
    t0 = time.time()
    if a.from_results:
        with open(a.from_results) as f:
            res = json.load(f)
        try:
            files = {} if a.no_plots else plots(res, a.out)
            document(res, res["command"], files, a.out, a.doc)
        except BenchError as e:
            log(f"pagewait bench: FAILED: {e}")
            return 1
        log(f"pagewait bench: rewrote {a.doc} from {a.from_results}")
        return 0
    try:
        if not a.no_plots:
            require_matplotlib()  # before the run, not after its minutes (results.json is kept either way)
        res = {"machine": machine(), "quick": a.quick, "scale": a.scale, "command": command}
        log("pagewait bench: " + ("quick" if a.quick else "full") + " run")
        res["micro"] = run_micro(a.bin, a.quick, a.scale)
        res["counts"] = run_figure(a.bin, "counts", a.quick, a.scale)
        check_rows(res["counts"], "counts", ["lock_unlock_rmws", "event_release_rmws"])
        if not a.no_callgrind:
            res["callgrind"] = run_callgrind(a.bin)
        res["contended"] = run_figure(a.bin, "contended", a.quick, a.scale)
        check_rows(res["contended"], "contended", ["ops_per_s", "threads"])
        res["handoff"] = run_figure(a.bin, "handoff", a.quick, a.scale)
        check_rows(res["handoff"], "handoff", ["p50_ns", "p99_ns"])
        res["wakeall"] = run_figure(a.bin, "wakeall", a.quick, a.scale)
        check_rows(res["wakeall"], "wakeall", ["total_ns", "release_ns"])
        res["fairness"] = run_figure(a.bin, "fairness", a.quick, a.scale)
        check_rows(res["fairness"], "fairness", ["jain", "max_wait_ns", "ops_per_s"])
        res["many"] = run_figure(a.bin, "many", a.quick, a.scale)
        check_rows(res["many"], "many", ["ns_per_lock_unlock", "resident_bytes"])
        res["bufferpool"] = run_figure(a.bin, "bufferpool", a.quick, a.scale)
        check_rows(res["bufferpool"], "bufferpool", ["ops_per_s", "p99_ns", "bytes_per_page", "threads"])
        res["async"] = run_figure(a.bin, "async", a.quick, a.scale)
        check_rows(res["async"], "async", ["total_ns", "release_ns", "total_vs_atomic_wait"])
        res["shared"] = run_figure(a.bin, "shared", a.quick, a.scale)
        check_rows(res["shared"], "shared", ["p50_ns", "p99_ns", "vs_bare"])
        res["seconds"] = time.time() - t0
        with open(os.path.join(a.out, "results.json"), "w") as f:
            json.dump(res, f, indent=1)
        files = {} if a.no_plots else plots(res, a.out)
        document(res, command, files, a.out, a.doc)
    except BenchError as e:
        log(f"pagewait bench: FAILED: {e}")
        return 1
    log(f"pagewait bench: done in {time.time() - t0:.0f} s: {a.doc}")
    if not a.update_docs and not a.quick:
        log("pagewait bench: docs/benchmarks.md is unchanged (--update-docs writes it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
