#!/usr/bin/env python3
"""Summarises `scripts/bench --profile`: for each perf recording (bare and llm-router Envoy serving the
1.5 KB request at c=1), the share of samples per shared object and per symbol, turned into µs of Envoy CPU
per request with the CPU/request bench-load measured over the same requests. Envoy's release binary is
stripped, so its own and V8's functions show as addresses; the filter's wasm runs as V8 JIT code
(`[JIT] tid …`). Usage: profile.py PROFILE_JSONL."""
import json
import re
import subprocess
import sys
from collections import defaultdict

CATEGORY = [
    (r"^\[JIT\]", "wasm filter code (V8 JIT)"),
    (r"^envoy$", "Envoy + V8 runtime (native, stripped)"),
    (r"^\[kernel", "kernel"),
    (r"^libc", "libc"),
]


def category(dso):
    for pat, name in CATEGORY:
        if re.search(pat, dso):
            return name
    return "other (" + dso + ")"


def report(data, sort):
    out = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", sort, "--stdio", "-g", "none"],
                         capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(.*\S)\s*$", line)
        if m:
            rows.append((float(m.group(1)) / 100, m.group(2)))
    return rows


def main():
    runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    cats = defaultdict(lambda: defaultdict(list))
    syms = defaultdict(lambda: defaultdict(list))
    cpu = defaultdict(list)
    for r in runs:
        per = r["result"]["procs"]["envoy"]["cpu_us_per_req"]
        cfg = r["config"]
        cpu[cfg].append(per)
        acc = defaultdict(float)
        for share, dso in report(r["data"], "dso"):
            acc[category(dso)] += share * per
        for k, v in acc.items():
            cats[k][cfg].append(v)
        for share, sym in report(r["data"], "dso,sym"):
            sym = re.sub(r"\[JIT\] tid \d+", "[JIT]", sym)
            syms[sym][cfg].append(share * per)
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0
    print("\nWhere Envoy's CPU goes, 1.5 KB request at c=1 (µs per request; perf cpu-clock samples × CPU/request)")
    print(f"  {'':<40} {'bare':>8} {'router':>8} {'added':>8}")
    print(f"  {'total (bench-load, /proc)':<40} {mean(cpu['bare']):>8.1f} {mean(cpu['router']):>8.1f} "
          f"{mean(cpu['router']) - mean(cpu['bare']):>+8.1f}")
    for k in sorted(cats, key=lambda k: -mean(cats[k]["router"])):
        b, r = mean(cats[k]["bare"]), mean(cats[k]["router"])
        print(f"  {k:<40} {b:>8.1f} {r:>8.1f} {r - b:>+8.1f}")
    print("\nTop symbols by added µs per request (llm-router − bare):")
    top = sorted(syms, key=lambda s: -(mean(syms[s]["router"]) - mean(syms[s]["bare"])))[:25]
    for s in top:
        b, r = mean(syms[s]["bare"]), mean(syms[s]["router"])
        print(f"  {r - b:>+7.2f}  (bare {b:5.2f}, router {r:5.2f})  {s[:90]}")


if __name__ == "__main__":
    main()
