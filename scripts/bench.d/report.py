#!/usr/bin/env python3
"""scripts/bench's report: reads the runs (one JSON line per bench-load run), prints the table and the
budget checks, and writes results.json. Figures per (scenario, client concurrency, config) are the
median over the A/B repetitions. The CPU ratio is the median of each A/B pair's own ratio (a pair runs
back to back, so drift of the machine between pairs cancels); `ratio_per_pair` lists them (their spread
is the noise). The added CPU (µs per request) is likewise the median of each pair's llm-router − bare
(`added_cpu_us_per_pair`). Where a round also ran the skeleton (the router's config with a filter that
makes the same host calls and does no routing work), `floor` holds the medians of the rounds'
skeleton − bare and llm-router − skeleton. The other ratios are llm-router / bare of the medians."""
import argparse
import json
import statistics
import sys
from collections import defaultdict

SCENARIOS = {
    "chat-1k5": "1.5 KB chat (system + 3 turns + tool)",
    "conv-100k": "100 KB conversation",
    "big-1m": "1 MB request",
    "stream": "stream, 20 SSE chunks",
    "stream-anthropic": "stream, 20 SSE chunks, from a provider with Anthropic's API (translated)",
    "nobuffer": "stream, 2 ms before each event",
    "run-config": "scripts/run's configuration, 1.5 KB (demo model)",
}
RUN_CONFIG = "run-config"
BUDGET = {"chat-1k5": 1.7, "conv-100k": 2.0, "stream": 1.7}
ADDED_P50_BUDGET_US = 100
RSS_BUDGET_MB = 40


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def figures(runs):
    """Median figures of one config's repetitions."""
    r = [x["result"] for x in runs]
    env = [x["procs"].get("envoy", {}) for x in r]
    mock = [x["procs"].get("mock", {}) for x in r]
    f = {
        "cpu_us_per_req": med([e.get("cpu_us_per_req") for e in env]),
        "stat_cpu_us_per_req": med([e.get("stat_cpu_us_per_req") for e in env]),
        "cpu_us_per_req_reps": [e.get("cpu_us_per_req") for e in env],
        "rps": med([x["rps"] for x in r]),
        "p50_us": med([x["latency_us"]["p50"] for x in r]),
        "p99_us": med([x["latency_us"]["p99"] for x in r]),
        "rss_mb": max((e.get("rss_kb", 0) for e in env), default=0) / 1024,
        "mock_cpu_us_per_req": med([m.get("cpu_us_per_req") for m in mock]),
        "client_cpu_us_per_req": med([x.get("client", {}).get("cpu_us_per_req") for x in r]),
        "requests_per_rep": r[0]["requests"],
        "errors": sum(x["errors"] for x in r),
        "truncated": any(x["truncated"] for x in r),
    }
    if "ttfe_us" in r[0]:
        f["ttfe_p50_us"] = med([x["ttfe_us"]["p50"] for x in r])
        f["ttfe_p99_us"] = med([x["ttfe_us"]["p99"] for x in r])
        f["events_per_response"] = r[0]["events"] / max(1, r[0]["ok"])
    errs = [x.get("first_error") for x in r if x.get("first_error")]
    if errs:
        f["first_error"] = errs[0]
    return f


def us(v, width=6):
    """A latency in µs, switching to ms past 10 ms so the columns stay narrow."""
    if v is None:
        return "-".rjust(width)
    return (f"{v:.0f}" if v < 10000 else f"{v / 1000:.1f}ms").rjust(width)


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def diff(a, b):
    return round(a - b, 1) if a is not None and b is not None else None


def cpu_by_rep(runs):
    return {x["tags"]["rep"]: x["result"]["procs"].get("envoy", {}).get("cpu_us_per_req") for x in runs}


def per_round(f, *configs):
    """f applied to each round's CPU/request of the configs (rounds where all of them ran)."""
    reps = sorted(set.intersection(*(set(c) for c in configs)))
    return [f(*(c[k] for c in configs)) for k in reps]


ANATOMY = {
    "bare": "bare Envoy (no wasm)",
    "router": "llm-router, everything on",
    "no-access-log": "without the access log (a JSON line per request)",
    "no-logger": "without the health-memory logger (upstream_log)",
    "no-upstream": "without the upstream filter (per-attempt model, key, headers)",
    "downstream": "downstream filter only (neither of the two above)",
    "auth-none": "without client auth (auth: none)",
    "sticky-off": "without sticky sessions",
    "skeleton": "same host calls, no routing work (the design's floor)",
}


def anatomy(lines, out, elapsed):
    """Per scenario: each variant's CPU/request, and per round its difference to bare and to the full
    router (medians over the rounds, which ran back to back)."""
    runs = defaultdict(dict)
    for x in lines:
        t = x["tags"]
        if t["kind"] == "anatomy":
            runs[(t["scenario"], t["rep"])][t["config"]] = x["result"]["procs"]["envoy"]["cpu_us_per_req"]
    result = {}
    for sc in [s for s in SCENARIOS if any(k[0] == s for k in runs)]:
        rounds = [v for k, v in runs.items() if k[0] == sc]
        rows = {}
        for name in ANATOMY:
            vals = [r[name] for r in rounds if name in r]
            if not vals:
                continue
            rows[name] = {
                "cpu_us_per_req": med(vals),
                "minus_bare": med([r[name] - r["bare"] for r in rounds if name in r]),
                "ratio": med([r[name] / r["bare"] for r in rounds if name in r and r["bare"] > 0]),
                "router_minus_this": med([r["router"] - r[name] for r in rounds if name in r]),
                "rounds": vals,
            }
        result[sc] = rows
        print(f"\n{SCENARIOS[sc]}, c=1, Envoy --concurrency 1, {len(rounds)} rounds (medians; µs of Envoy CPU per request)")
        print(f"  {'variant':<62} {'CPU':>7} {'ratio':>6} {'− bare':>8} {'saved':>7}")
        for name, r in rows.items():
            print(f"  {ANATOMY[name]:<62} {r['cpu_us_per_req']:>7.1f} {r['ratio']:>6.2f} {r['minus_bare']:>+8.1f}"
                  f" {r['router_minus_this']:>7.1f}")
    print("\n'ratio' and '− bare': what the variant costs against bare Envoy; 'saved': what the full router"
          " costs over it, i.e. the part taken out (for the skeleton: the router's own work)")
    with open(out, "w") as f:
        json.dump({"elapsed_s": elapsed, "scenarios": result}, f, indent=1)
    print(f"results: {out} ({elapsed} s)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--elapsed", type=int, default=0)
    ap.add_argument("--scale", default="1")
    ap.add_argument("--envoy", default="")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--mode", default="main")
    ap.add_argument("--strict", action="store_true")
    ap.add_argument("--anatomy", action="store_true")
    ap.add_argument("--hostcalls")
    a = ap.parse_args()

    lines = [json.loads(l) for l in open(a.runs) if l.strip()]
    if a.anatomy:
        return anatomy(lines, a.out, a.elapsed)
    mock_capacity = [
        {
            "scenario": x["tags"]["scenario"],
            "concurrency": x["tags"]["concurrency"],
            "rps": x["result"]["rps"],
            "p50_us": x["result"]["latency_us"]["p50"],
            "mock_cpu_us_per_req": x["result"]["procs"]["mock"].get("cpu_us_per_req"),
            "client_cpu_us_per_req": x["result"].get("client", {}).get("cpu_us_per_req"),
        }
        for x in lines
        if x["tags"]["kind"] == "mock"
    ]
    groups = defaultdict(list)
    for x in lines:
        t = x["tags"]
        if t["kind"] == "ab":
            groups[(t["envoy_concurrency"], t["scenario"], t["concurrency"], t["config"])].append(x)

    rows = []
    keys = sorted({k[:3] for k in groups}, key=lambda k: (k[0], list(SCENARIOS).index(k[1]), k[2]))
    for ec, sc, c in keys:
        bare, router = groups.get((ec, sc, c, "bare")), groups.get((ec, sc, c, "router"))
        if not bare or not router:
            continue
        b, r = figures(bare), figures(router)
        cb, cr = cpu_by_rep(bare), cpu_by_rep(router)
        pairs = per_round(lambda x, y: ratio(y, x), cb, cr)
        added = per_round(diff, cr, cb)
        row = {
            "scenario": sc,
            "description": SCENARIOS.get(sc, sc),
            "envoy_concurrency": ec,
            "concurrency": c,
            "pairs": len(pairs),
            "bare": b,
            "router": r,
            "ratio": {
                "cpu": round(med(pairs), 3) if med(pairs) else ratio(r["cpu_us_per_req"], b["cpu_us_per_req"]),
                "rps": ratio(r["rps"], b["rps"]),
                "p50": ratio(r["p50_us"], b["p50_us"]),
                "p99": ratio(r["p99_us"], b["p99_us"]),
            },
            "ratio_per_pair": pairs,
            "added_cpu_us_per_req": round(med(added), 1) if med(added) is not None else diff(r["cpu_us_per_req"], b["cpu_us_per_req"]),
            "added_cpu_us_per_pair": added,
            "added_p50_us": r["p50_us"] - b["p50_us"],
        }
        if "ttfe_p50_us" in b:
            row["ratio"]["ttfe_p50"] = ratio(r["ttfe_p50_us"], b["ttfe_p50_us"])
        skeleton = groups.get((ec, sc, c, "skeleton"))
        if skeleton:
            row["skeleton"] = figures(skeleton)
            cs = cpu_by_rep(skeleton)
            over_bare, over_skeleton = per_round(diff, cs, cb), per_round(diff, cr, cs)
            row["floor"] = {
                "skeleton_over_bare_us": med(over_bare),
                "router_over_skeleton_us": med(over_skeleton),
                "skeleton_ratio": med(per_round(lambda x, y: ratio(y, x), cb, cs)),
                "router_over_skeleton_ratio": med(per_round(lambda x, y: ratio(y, x), cs, cr)),
                "skeleton_over_bare_per_round": over_bare,
                "router_over_skeleton_per_round": over_skeleton,
            }
        rows.append(row)
    run_rows = [x for x in rows if x["scenario"] == RUN_CONFIG]
    rows = [x for x in rows if x["scenario"] != RUN_CONFIG]

    def find(sc, c, ec=1):
        return next((x for x in rows if x["scenario"] == sc and x["concurrency"] == c and x["envoy_concurrency"] == ec), None)

    budgets = []
    for sc, limit in BUDGET.items():
        row = find(sc, 1)
        if row:
            budgets.append({"name": f"CPU/request ratio, {SCENARIOS[sc]}, c=1", "value": row["ratio"]["cpu"],
                            "limit": limit, "ok": row["ratio"]["cpu"] <= limit,
                            "added_cpu_us_per_req": row["added_cpu_us_per_req"]})
    row = find("chat-1k5", 1)
    if row:
        budgets.append({"name": "added p50 latency, 1.5 KB, c=1 (µs)", "value": row["added_p50_us"],
                        "limit": ADDED_P50_BUDGET_US, "ok": row["added_p50_us"] <= ADDED_P50_BUDGET_US})
    rss = find("chat-1k5", 16, ec=2)
    if rss:
        added = rss["router"]["rss_mb"] - rss["bare"]["rss_mb"]
        budgets.append({"name": "RSS at Envoy --concurrency 2: llm-router − bare (MB)", "value": round(added, 1),
                        "limit": RSS_BUDGET_MB, "ok": added <= RSS_BUDGET_MB})
    nb = find("nobuffer", 1)
    if nb:
        r = nb["router"]
        budgets.append({"name": "no buffering: llm-router time to first event / total, p50", "value":
                        round(r["ttfe_p50_us"] / r["p50_us"], 3), "limit": 0.25,
                        "ok": r["ttfe_p50_us"] <= r["p50_us"] / 4})

    errors = sum(x[c]["errors"] for x in rows + run_rows for c in ("bare", "router", "skeleton") if c in x)
    hostcalls = []
    if a.hostcalls:
        try:
            hostcalls = [json.loads(l) for l in open(a.hostcalls) if l.strip()]
        except OSError:
            pass
    # The scenario column: as wide as the longest name (stream-anthropic), at least 10.
    w = max([10] + [len(x["tags"]["scenario"]) for x in lines] + [len(h["scenario"]) for h in hostcalls])
    result = {
        "meta": {
            "envoy": a.envoy,
            "scale": a.scale,
            "quick": a.quick,
            "mode": a.mode,
            "elapsed_s": a.elapsed,
            "cpu_method": "sum of /proc/<envoy>/task/*/schedstat run time over the measured requests "
                          "(stat_cpu_us_per_req: utime+stime of /proc/<envoy>/stat, clock ticks)",
            "host_calls_method": "Envoy at --component-log-level wasm:trace logs each crossing; counted over "
                                 "20 requests per scenario after 20 of warm-up",
        },
        "host_calls": hostcalls,
        "mock_capacity": mock_capacity,
        "scenarios": rows,
        "run_config": run_rows,
        "budgets": budgets,
        "errors": errors,
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)

    p = print
    if mock_capacity:
        p("\nMock provider alone (load generator → mock):")
        for m in mock_capacity:
            p(f"  {m['scenario']:<{w}} c={m['concurrency']:<3} {m['rps']:>9.0f} req/s  p50 {m['p50_us']:>6} µs  "
              f"mock CPU {m['mock_cpu_us_per_req']:.1f} µs/req  client CPU "
              + (f"{m['client_cpu_us_per_req']:.1f} µs/req" if m["client_cpu_us_per_req"] is not None else "-"))
    hdr = (f"{'scenario':<{w}} {'c':>3} │ {'CPU µs/req':^28} │ {'req/s':^15} │ {'p50 µs':^13} │ {'p99 µs':^13} │"
           f" {'+p50':>5} │ {'RSS MB':^11} │ {'mock':>4}")
    sub = (f"{'':<{w}} {'':>3} │ {'bare':>6} {'router':>6} {'ratio':>7} {'+µs':>6} │ {'bare':>7} {'router':>7} │ {'bare':>6} {'router':>6} │"
           f" {'bare':>6} {'router':>6} │ {'µs':>5} │ {'bare':>5} {'rtr':>5} │ {'µs':>4}")

    def table(title, rows):
        p(title)
        p(hdr)
        p(sub)
        for x in rows:
            b, r = x["bare"], x["router"]
            p(f"{x['scenario']:<{w}} {x['concurrency']:>3} │ {b['cpu_us_per_req']:>6.1f} {r['cpu_us_per_req']:>6.1f} "
              f"{x['ratio']['cpu']:>6.2f}× {x['added_cpu_us_per_req']:>+6.0f} │ {b['rps']:>7.0f} {r['rps']:>7.0f} │ "
              f"{us(b['p50_us'])} {us(r['p50_us'])} │ {us(b['p99_us'])} {us(r['p99_us'])} │ {us(x['added_p50_us'], 5)} │ "
              f"{b['rss_mb']:>5.1f} {r['rss_mb']:>5.1f} │ {r['mock_cpu_us_per_req'] or 0:>4.0f}")

    for ec in sorted({x["envoy_concurrency"] for x in rows}):
        table(f"\nEnvoy --concurrency {ec}; c = client connections; figures are medians over the A/B pairs "
              f"(pairs: {', '.join(sorted({str(x['pairs']) for x in rows if x['envoy_concurrency'] == ec}))}); "
              f"CPU ratio and +µs = medians of the pairs' llm-router / bare and llm-router − bare",
              [x for x in rows if x["envoy_concurrency"] == ec])
    floors = [x for x in rows if "floor" in x]
    if floors:
        p("\nThe skeleton floor: the router's config with a filter that makes the same host calls and does no routing"
          " work (µs of Envoy CPU per request; differences and ratios: medians over the rounds)")
        for x in floors:
            f = x["floor"]
            p(f"  {x['scenario']:<{w}} c={x['concurrency']:<3} bare {x['bare']['cpu_us_per_req']:>6.1f}  skeleton "
              f"{x['skeleton']['cpu_us_per_req']:>6.1f}  llm-router {x['router']['cpu_us_per_req']:>6.1f}   "
              f"skeleton over bare {f['skeleton_over_bare_us']:>+6.1f} µs ({f['skeleton_ratio']:.2f}×)   "
              f"router over skeleton {f['router_over_skeleton_us']:>+6.1f} µs ({f['router_over_skeleton_ratio']:.2f}×)")
    if run_rows:
        table(f"\nscripts/run's configuration: envoy/demo-catalog.json as scripts/run generates it, its five demo mocks, "
              f"Envoy at its default concurrency ({run_rows[0]['envoy_concurrency']}), against bare Envoy at the same "
              f"concurrency (pairs: {', '.join(sorted({str(x['pairs']) for x in run_rows}))})", run_rows)
    streams = [x for x in rows if "ttfe_p50_us" in x["bare"]]
    if streams:
        p("\nStreams: time to first event (p50 / p99 µs) and total (p50 µs)")
        for x in streams:
            b, r = x["bare"], x["router"]
            p(f"  {x['scenario']:<{w}} c={x['concurrency']:<3} bare {us(b['ttfe_p50_us'])} / {us(b['ttfe_p99_us'])}, total {us(b['p50_us'])}"
              f"   llm-router {us(r['ttfe_p50_us'])} / {us(r['ttfe_p99_us'])}, total {us(r['p50_us'])}"
              f"   ({r['events_per_response']:.0f} events/response)")
    spread = [x for x in rows + run_rows if len(x["ratio_per_pair"]) > 1]
    if spread:
        p("\nCPU ratio and added µs of each A/B pair (noise): " + "; ".join(
            f"{x['scenario']} c={x['concurrency']}" + (f" (Envoy c={x['envoy_concurrency']})" if x['envoy_concurrency'] != 1 else "")
            + ": " + " ".join(f"{v:.2f}/{d:+.0f}" for v, d in zip(x["ratio_per_pair"], x["added_cpu_us_per_pair"])
                              if v is not None and d is not None) for x in spread))
    if hostcalls:
        p("\nHost calls per request (filter → Envoy) and callbacks (Envoy → VM, memory allocations included):")
        for h in hostcalls:
            top = ", ".join(f"{k.removeprefix('proxy_')} {v:g}" for k, v in list(h["host_calls"].items())[:8])
            roles = "; ".join(f"{r} {v['host_calls']:g} + {v['callbacks']:g}" for r, v in h.get("by_role", {}).items()
                              if r != "other")
            p(f"  {h['scenario']:<{w}} {h['host_calls_per_request']:>5.1f} calls + {h['callbacks_per_request']:>4.1f} callbacks"
              f"   by role: {roles}")
            p(f"  {'':<{w}} calls: {top}, …")
    if budgets:
        p("\nBudgets:")
    for bgt in budgets:
        added = f", +{bgt['added_cpu_us_per_req']:.0f} µs/request over bare" if "added_cpu_us_per_req" in bgt else ""
        p(f"  {'ok  ' if bgt['ok'] else 'OVER'}  {bgt['name']}: {bgt['value']} (budget {bgt['limit']}){added}")
    if errors:
        p(f"\nWARNING: {errors} failed requests; first errors: " + "; ".join(
            x[c].get("first_error", "") for x in rows + run_rows for c in ("bare", "router", "skeleton")
            if c in x and x[c].get("first_error"))[:600])
    row = find("chat-1k5", 1)
    if row:
        p(f"\n1.5KB CPU ratio: {row['ratio']['cpu']:.2f} (budget {BUDGET['chat-1k5']:.2f}), "
          f"+{row['added_cpu_us_per_req']:.0f} µs/request over bare"
          f"  [bare {row['bare']['cpu_us_per_req']:.1f} µs, llm-router {row['router']['cpu_us_per_req']:.1f} µs per request]")
        if "floor" in row:
            f = row["floor"]
            p(f"router over skeleton: {f['router_over_skeleton_us']:+.0f} µs/request "
              f"(skeleton over bare: {f['skeleton_over_bare_us']:+.0f} µs)")
    anthropic = find("stream-anthropic", 1)
    if anthropic:
        p("streams at c=1 (no budget for the Anthropic provider's): " + "; ".join(
            f"{name} CPU ratio {x['ratio']['cpu']:.2f}, {x['added_cpu_us_per_req']:+.0f} µs/request over bare"
            f" [bare {x['bare']['cpu_us_per_req']:.1f} µs, llm-router {x['router']['cpu_us_per_req']:.1f} µs]"
            for name, x in (("OpenAI provider", find("stream", 1)), ("Anthropic provider", anthropic)) if x))
    if run_rows:
        p("scripts/run config: " + "; ".join(
            f"c={x['concurrency']} CPU ratio {x['ratio']['cpu']:.2f}, +{x['added_cpu_us_per_req']:.0f} µs/request over bare, "
            f"{x['bare']['rps']:.0f} vs {x['router']['rps']:.0f} req/s" for x in run_rows)
          + f" (Envoy's default concurrency, {run_rows[0]['envoy_concurrency']})")
    p(f"results: {a.out} ({a.elapsed} s)")
    if a.strict and (errors or not all(bg["ok"] for bg in budgets)):
        sys.exit(1)


if __name__ == "__main__":
    main()
