#!/usr/bin/env python3
"""Turns the raw runs of bench/compare.sh into results: a JSON file (every run, medians with
min/max, ratios), a Markdown table and, when matplotlib is installed, a PNG chart.

    python3 bench/report.py --runs RUNS.jsonl --meta META.json --out bench/results --stamp TS

Each line of RUNS.jsonl is either a relay_load --json object or a turnutils_uclient record
written by compare.sh; both carry label "server=S round=R scenario=X".
"""

import argparse
import json
import os
import re
import shutil
import statistics
import sys

SERVERS = ["null", "edge", "coturn"]
NAMES = {"null": "null relay", "edge": "ours (edge)", "coturn": "coturn"}


def parse_label(label):
    out = {}
    for part in (label or "").split():
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out


def num(rx, text, cast=float):
    m = None
    for m in re.finditer(rx, text):
        pass
    return cast(m.group(1)) if m else None


def uclient_metrics(rec):
    try:
        text = open(rec["output"], errors="replace").read()
    except OSError:
        text = ""
    sent = num(r"tot_send_msgs=(\d+)", text, int)
    recv = num(r"tot_recv_msgs=(\d+)", text, int)
    lost_pct = num(r"Total lost packets \d+ \(([\d.]+)%\)", text)
    rtt_ms = num(r"Average round trip delay ([\d.]+) ms", text)
    jitter_ms = num(r"Average jitter ([\d.]+) ms", text)
    wall = rec.get("wall_s") or 0
    cpu_s = rec.get("server_ticks", 0) / max(rec.get("ticks_per_s", 100), 1)
    relayed = (sent or 0) + (recv or 0)
    return {
        "exit": rec.get("exit"),
        "messages_sent": sent,
        "messages_received": recv,
        "received_per_s": (recv / wall) if recv and wall else None,
        "lost_pct": lost_pct,
        "avg_rtt_ms": rtt_ms,
        "avg_jitter_ms": jitter_ms,
        "wall_s": wall,
        "server_cpu_s": cpu_s,
        "server_cpu_s_per_million": (cpu_s / (relayed / 1e6)) if relayed else None,
        "server_rss_kib": rec.get("server_rss_kib"),
    }


def sweep_metrics(r):
    """Flat metrics of one relay_load --sweep run: its highest step with loss under the limit."""
    sw = r.get("sweep") or {}
    steps = sw.get("steps") or []
    m = {
        "max_lossless_pps": sw.get("max_lossless_pps"),
        "max_lossless_delivered_pps": sw.get("max_lossless_delivered_pps"),
        "max_lossless_relayed_pps": sw.get("max_lossless_relayed_pps"),
        "sweep_steps": len(steps),
    }
    i = sw.get("max_lossless_step")
    if isinstance(i, int) and 0 <= i < len(steps):
        best = steps[i]
        m["max_lossless_mbps"] = best.get("delivered_mbps")
        m["loss_pct"] = best.get("loss_pct")
        rtt = best.get("rtt_us") or {}
        m["rtt_p50_us"] = rtt.get("p50")
        m["rtt_p99_us"] = rtt.get("p99")
        m["rtt_p999_us"] = rtt.get("p999")
        m["server_cores"] = best.get("server_cores")
        m["server_cpu_s_per_million"] = best.get("server_cpu_s_per_million")
    m["setup_failures"] = (r.get("allocations_failed") or 0) + (r.get("binds_failed") or 0)
    return m


def load_metrics(r):
    """Flat metrics of one relay_load run."""
    if r.get("sweep") is not None:
        return sweep_metrics(r)
    m = {}
    if r.get("window_s"):
        m["relayed_pps"] = r.get("relayed_pps")
        m["down_pps"] = r.get("down_pps")
        m["up_mbps"] = r.get("up_mbps")
        m["down_mbps"] = r.get("down_mbps")
        m["loss_pct"] = (r.get("loss") or 0) * 100
        rtt = r.get("rtt_us") or {}
        m["rtt_p50_us"] = rtt.get("p50")
        m["rtt_p99_us"] = rtt.get("p99")
        m["rtt_p999_us"] = rtt.get("p999")
        m["server_cpu_s_per_million"] = r.get("server_cpu_s_per_million")
        m["server_cores"] = r.get("server_cores")
        m["generator_cores"] = r.get("generator_cores")
        m["machine_busy_pct"] = (r.get("machine_busy") or 0) * 100
    else:
        m["allocs_per_s"] = r.get("allocs_per_s")
        lat = r.get("alloc_latency_us") or {}
        m["alloc_p50_us"] = lat.get("p50")
        m["alloc_p99_us"] = lat.get("p99")
        m["server_cpu_us_per_allocation"] = r.get("server_cpu_us_per_allocation")
        m["generator_cpu_us_per_allocation"] = r.get("generator_cpu_us_per_allocation")
        m["setup_machine_busy_pct"] = (r.get("setup_machine_busy") or 0) * 100 or None
        rss = r.get("server_rss_kib") or {}
        ok = r.get("allocations_ok") or 0
        if rss.get("start") is not None and rss.get("after_setup") is not None and ok:
            m["rss_kib_per_allocation"] = (rss["after_setup"] - rss["start"]) / ok
        m["rss_after_setup_kib"] = rss.get("after_setup")
    m["setup_failures"] = (r.get("allocations_failed") or 0) + (r.get("binds_failed") or 0)
    return m


# metric key -> (label, better, format)
METRICS = {
    "max_lossless_pps": ("sweep: highest offered packets/s with loss < 0.1 %", "higher", "{:,.0f}"),
    "max_lossless_delivered_pps": ("sweep: delivered packets/s at that step", "higher", "{:,.0f}"),
    "max_lossless_relayed_pps": ("sweep: relayed packets/s (both ways) at that step", "higher", "{:,.0f}"),
    "max_lossless_mbps": ("sweep: delivered Mbit/s at that step", "higher", "{:,.1f}"),
    "sweep_steps": ("sweep: steps run", "-", "{:.0f}"),
    "relayed_pps": ("relayed packets/s (both ways)", "higher", "{:,.0f}"),
    "down_mbps": ("delivered Mbit/s (each way)", "higher", "{:,.1f}"),
    "loss_pct": ("loss %", "lower", "{:.3f}"),
    "rtt_p50_us": ("RTT p50 µs", "lower", "{:,.0f}"),
    "rtt_p99_us": ("RTT p99 µs", "lower", "{:,.0f}"),
    "rtt_p999_us": ("RTT p99.9 µs", "lower", "{:,.0f}"),
    "server_cpu_s_per_million": ("server CPU-s per million relayed", "lower", "{:.2f}"),
    "server_cores": ("server cores used", "-", "{:.2f}"),
    "generator_cores": ("generator cores used", "-", "{:.2f}"),
    "machine_busy_pct": ("machine busy %", "-", "{:.0f}"),
    "allocs_per_s": ("allocations/s (incl. 401)", "higher", "{:,.0f}"),
    "alloc_p50_us": ("allocation latency p50 µs", "lower", "{:,.0f}"),
    "alloc_p99_us": ("allocation latency p99 µs", "lower", "{:,.0f}"),
    "server_cpu_us_per_allocation": ("server CPU µs per allocation (Allocate ×2 with the 401, ChannelBind)", "lower", "{:,.0f}"),
    "generator_cpu_us_per_allocation": ("generator CPU µs per allocation (same steps, client side)", "-", "{:,.0f}"),
    "setup_machine_busy_pct": ("machine busy % while allocating", "-", "{:.0f}"),
    "rss_kib_per_allocation": ("server RSS growth per allocation KiB", "lower", "{:.1f}"),
    "rss_after_setup_kib": ("server RSS after setup KiB", "lower", "{:,.0f}"),
    "setup_failures": ("failed allocations/binds", "lower", "{:.0f}"),
    "received_per_s": ("uclient messages received/s", "higher", "{:,.0f}"),
    "lost_pct": ("uclient lost %", "lower", "{:.3f}"),
    "avg_rtt_ms": ("uclient average RTT ms", "lower", "{:.2f}"),
    "avg_jitter_ms": ("uclient average jitter ms", "lower", "{:.3f}"),
    "wall_s": ("uclient wall time s", "lower", "{:.2f}"),
}


def stats(values):
    v = [x for x in values if isinstance(x, (int, float))]
    if not v:
        return None
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def fmt_stat(s, f):
    if not s:
        return "–"
    if s["n"] == 1 or s["min"] == s["max"]:
        return f.format(s["median"])
    return f"{f.format(s['median'])} ({f.format(s['min'])}–{f.format(s['max'])})"


def ratio(a, b):
    if not a or not b or not b["median"]:
        return None
    return a["median"] / b["median"]


def sweep_text(meta):
    sw = meta.get("sweep") or {}
    if not sw:
        return "no loss sweeps"
    return (f"sweep = open loop from {sw.get('start_pps')} packets/s in all, ×{sw.get('factor')} per passing "
            f"step, {sw.get('step_s')} s steps with {sw.get('settle_ms')} ms idle after each, then "
            f"{sw.get('refine')} bisections, at most {sw.get('max_steps')} steps")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", required=True)
    ap.add_argument("--meta", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stamp", required=True)
    a = ap.parse_args()

    meta = json.load(open(a.meta))
    runs = []
    for line in open(a.runs):
        line = line.strip()
        if not line:
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            print(f"report.py: skipping unparsable line: {line[:120]}", file=sys.stderr)
            continue
        lab = parse_label(r.get("label"))
        r["server"], r["scenario"] = lab.get("server"), lab.get("scenario")
        r["round"] = int(lab.get("round", 0))
        r["metrics"] = (
            uclient_metrics(r) if r.get("tool") == "turnutils_uclient" else load_metrics(r)
        )
        runs.append(r)

    scenarios = []
    for r in runs:
        if r["scenario"] not in scenarios:
            scenarios.append(r["scenario"])
    summary = {}
    for sc in scenarios:
        summary[sc] = {}
        for sv in SERVERS:
            rs = [r for r in runs if r["scenario"] == sc and r["server"] == sv]
            if not rs:
                continue
            keys = []
            for r in rs:
                keys += [k for k in r["metrics"] if k not in keys]
            summary[sc][sv] = {k: stats([r["metrics"].get(k) for r in rs]) for k in keys}

    # ---- Markdown ----
    md = []
    md.append(f"# TURN relay comparison — {meta['timestamp']}{' (SMOKE: not a measurement)' if meta.get('smoke') else ''}\n")
    md.append(
        f"Same machine ({meta.get('cpus')} CPUs, {meta.get('cpu_model','').strip()}, Linux "
        f"{meta.get('kernel')}), 127.0.0.1, port {meta.get('port')} UDP+TCP, user bench:bench, realm cloudproxy. "
        f"{meta.get('rounds')} interleaved rounds; cells are **median (min–max)**. "
        f"Load: relay_load, {meta.get('allocations')} allocations, {meta.get('seconds')} s measured after "
        f"{meta.get('warmup')} s warm-up, flat out = window {meta.get('window')} per allocation, paced = "
        f"{meta.get('paced_total_pps')} packets/s offered in all, half = half of the edge's highest lossless "
        f"rate from the same round's sweep (same rate for every server); {sweep_text(meta)}; "
        f"{meta.get('generator_threads')} generator "
        f"threads, {meta.get('server_threads')} server threads (edge shards / coturn relay threads / null relay "
        f"threads). coturn: {meta.get('coturn')}. Commit: {meta.get('git')}.\n"
    )
    md.append(
        "Generator, echo peer and server share the same cores: the server's packet rate is what it got "
        "while competing with them (see *machine busy* and *server cores*). CPU-s per million relayed "
        "counts the server process only.\n"
    )

    def pick(sc, sv, k):
        return (summary.get(sc, {}).get(sv) or {}).get(k)

    def paired(sc_a, sv_a, sc_b, sv_b, k):
        """Metric `k` of two runs of the same round, for each round that has both."""
        by = {}
        for r in runs:
            v = r["metrics"].get(k)
            if isinstance(v, (int, float)):
                by[(r["scenario"], r["server"], r["round"])] = v
        rounds = sorted({rd for (_, _, rd) in by})
        return [(by[(sc_a, sv_a, rd)], by[(sc_b, sv_b, rd)]) for rd in rounds
                if (sc_a, sv_a, rd) in by and (sc_b, sv_b, rd) in by]

    # Targets (issue 6), from medians.
    tgt = []
    def add_target(what, value, goal, ok):
        tgt.append(f"| {what} | {value} | {goal} | {'yes' if ok else 'no' if ok is not None else '–'} |")
    def cpu_floor(sc, what):
        """The null relay's CPU per million against coturn's: the least any relay through the
        kernel's UDP stack pays here (the loopback delivery is charged to the sender)."""
        r = ratio(pick(sc, "null", "server_cpu_s_per_million"), pick(sc, "coturn", "server_cpu_s_per_million"))
        if r:
            add_target(f"(the kernel's floor here) {what}: CPU-s per million, null relay/coturn", f"{r:.2f}", "–", None)
    def unfailed(sc, sv):
        """Servers whose sweep never failed in some round: their rate is a lower bound."""
        return any(r["scenario"] == sc and r["server"] == sv and not (r.get("sweep") or {}).get("limit")
                   for r in runs)

    sizes = meta.get("sizes") or []
    halves = meta.get("half_rates") or []
    for size in sizes:
        sc = f"udp-channel-{size}-sweep"
        for other, goal, lim in (("coturn", "≥ 1.5", 1.5), ("null", "≥ 0.7", 0.7)):
            r = ratio(pick(sc, "edge", "max_lossless_delivered_pps"), pick(sc, other, "max_lossless_delivered_pps"))
            bounds = [NAMES[sv] for sv in ("edge", other) if unfailed(sc, sv)]
            note = f" (no step failed for {' and '.join(bounds)}: lower bound, raise SWEEP_STEPS)" if bounds else ""
            add_target(f"UDP ChannelData {size} B: highest delivered packets/s with < 0.1 % loss (sweep), "
                       f"ours/{NAMES[other]}", (f"{r:.2f}" if r else "–") + note, goal, (r >= lim) if r else None)
        r = ratio(pick(sc, "null", "max_lossless_delivered_pps"), pick(sc, "coturn", "max_lossless_delivered_pps"))
        if r:
            add_target(f"(the kernel's ceiling here) UDP ChannelData {size} B lossless packets/s, null relay/coturn: "
                       f"no relay through the kernel's UDP stack gets a higher ratio on this machine",
                       f"{r:.2f}", "–", None)
        sc = f"udp-channel-{size}-half"
        rates = [h for h in halves if str(h.get("size")) == str(size)]
        e, n = pick(sc, "edge", "rtt_p99_us"), pick(sc, "null", "rtt_p99_us")
        if e and n:
            d = e["median"] - n["median"]
            extra = []
            for k, name in (("rtt_p50_us", "p50"), ("rtt_p999_us", "p99.9")):
                ek, nk = pick(sc, "edge", k), pick(sc, "null", k)
                if ek and nk:
                    extra.append(f"{name} {ek['median'] - nk['median']:+.0f}")
            by_round = paired(sc, "edge", sc, "null", "rtt_p99_us")
            if len(by_round) > 1:
                extra.append("p99 by round " + "/".join(f"{a - b:+.0f}" for a, b in by_round))
            fallback = " (some rounds fell back: see below)" if any(
                str(h.get("basis", "")).startswith("fallback") for h in rates) else ""
            rate_txt = "/".join(f"{h.get('pps'):,}" for h in rates) or "?"
            add_target(f"UDP ChannelData {size} B at half of ours' max lossless rate ({rate_txt} packets/s by "
                       f"round){fallback}: RTT p99 added over null relay, µs (p50 and p99.9 added, and the "
                       f"p99 added in each round, alongside)",
                       f"{d:+.0f} ({', '.join(extra)})", "≤ 50", d <= 50)
        else:
            add_target(f"UDP ChannelData {size} B at half of max: RTT p99 added over null relay, µs",
                       "–", "≤ 50", None)
        again = [abs(a - b) for a, b in paired(sc, "null", sc + "-again", "null", "rtt_p99_us")]
        if again:
            add_target(f"(this measurement's resolution here) the null relay run twice, back to back, at the same "
                       f"half-of-max rate: RTT p99 difference between the two runs, µs, median (max) over rounds; "
                       f"an added p99 smaller than this cannot be told from noise",
                       f"{statistics.median(again):.0f} ({max(again):.0f})", "–", None)
        sc = f"udp-channel-{size}-paced"
        r = ratio(pick(sc, "edge", "server_cpu_s_per_million"), pick(sc, "coturn", "server_cpu_s_per_million"))
        add_target(f"UDP ChannelData {size} B paced at {meta.get('paced_total_pps')} packets/s: server CPU-s per "
                   f"million, ours/coturn", f"{r:.2f}" if r else "–", "≤ 0.5", (r <= 0.5) if r else None)
        cpu_floor(sc, f"UDP ChannelData {size} B paced")
        sc = f"udp-channel-{size}-max"
        r = ratio(pick(sc, "edge", "server_cpu_s_per_million"), pick(sc, "coturn", "server_cpu_s_per_million"))
        add_target(f"UDP ChannelData {size} B flat out: server CPU-s per million, ours/coturn",
                   f"{r:.2f}" if r else "–", "≤ 0.5", (r <= 0.5) if r else None)
        cpu_floor(sc, f"UDP ChannelData {size} B flat out")
        for other, goal, lim in (("coturn", "≥ 1.5", 1.5), ("null", "≥ 0.7", 0.7)):
            r = ratio(pick(sc, "edge", "relayed_pps"), pick(sc, other, "relayed_pps"))
            add_target(f"(reference, closed loop) UDP ChannelData {size} B flat out: relayed packets/s, "
                       f"ours/{NAMES[other]}", f"{r:.2f}" if r else "–", goal, (r >= lim) if r else None)
    streams = [sc for sc in scenarios if sc and sc.startswith(("tcp-channel", "tls-channel"))]
    for sc in streams:
        r = ratio(pick(sc, "edge", "down_mbps"), pick(sc, "coturn", "down_mbps"))
        add_target(f"{sc}: delivered Mbit/s, ours/coturn", f"{r:.2f}" if r else "–", "≥ 1.5",
                   (r >= 1.5) if r else None)
        r = ratio(pick(sc, "null", "down_mbps"), pick(sc, "coturn", "down_mbps"))
        if r:
            add_target(f"(the kernel's ceiling here) {sc}: delivered Mbit/s, null relay/coturn: no relay of "
                       f"TURN-over-TCP frames through the kernel's TCP and UDP stacks gets a higher ratio on "
                       f"this machine", f"{r:.2f}", "–", None)
            r = ratio(pick(sc, "edge", "down_mbps"), pick(sc, "null", "down_mbps"))
            add_target(f"(reference) {sc}: delivered Mbit/s, ours/null relay", f"{r:.2f}" if r else "–", "–", None)
    r = ratio(pick("allocate", "edge", "allocs_per_s"), pick("allocate", "coturn", "allocs_per_s"))
    add_target("allocations/s incl. 401, ours/coturn", f"{r:.2f}" if r else "–", "≥ 10", (r >= 10) if r else None)
    r = ratio(pick("allocate", "null", "allocs_per_s"), pick("allocate", "coturn", "allocs_per_s"))
    if r:
        add_target("(the ceiling here) allocations/s, null relay's allocator/coturn: the same generator against "
                   "a server that only does the kernel work of an allocation (no authentication)",
                   f"{r:.2f}", "–", None)
        r = ratio(pick("allocate", "edge", "allocs_per_s"), pick("allocate", "null", "allocs_per_s"))
        add_target("(reference) allocations/s, ours/null relay's allocator", f"{r:.2f}" if r else "–", "–", None)
    r = ratio(pick("allocate", "coturn", "server_cpu_us_per_allocation"),
              pick("allocate", "edge", "server_cpu_us_per_allocation"))
    if r:
        add_target("(reference) allocations per server CPU-second, ours/coturn (the rate a server core "
                   "alone would sustain)", f"{r:.2f}", "≥ 10", r >= 10)
    e = pick("allocate", "edge", "rss_kib_per_allocation")
    if e:
        add_target("server RSS growth per allocation (KiB, ours)", f"{e['median']:.1f}", "≤ 2", e["median"] <= 2)
    md.append("## Against the targets of issue 6\n")
    md.append("| measure | measured | target | met |\n| --- | --- | --- | --- |")
    md += tgt
    md.append("")
    if halves:
        md.append("Rates of the half-of-max runs (`udp-channel-<size>-half`), by round: " + "; ".join(
            f"round {h.get('round')}, {h.get('size')} B: {h.get('pps'):,} packets/s ({h.get('basis')})"
            for h in halves) + ".\n")

    sweeps = [r for r in runs if r.get("sweep") is not None]
    if sweeps:
        md.append("## Loss sweeps, step by step\n")
        md.append("Offered packets/s in all → loss % (verdict); **bold** = the highest step with loss under "
                  "the limit. *lagging*: under the loss limit but less than 90 % back before the step ended "
                  "(queues growing); *generator*: the generator could not offer the rate.\n")
        for r in sorted(sweeps, key=lambda r: (r["scenario"] or "", SERVERS.index(r["server"])
                                               if r["server"] in SERVERS else 9, r["round"])):
            sw = r["sweep"]
            best = sw.get("max_lossless_step")
            cells = []
            for i, st in enumerate(sw.get("steps") or []):
                c = f"{st.get('offered_pps', 0):,.0f} → {st.get('loss_pct', 0):.3f} ({st.get('verdict')})"
                cells.append(f"**{c}**" if i == best else c)
            md.append(f"- {r['scenario']}, {NAMES.get(r['server'], r['server'])}, round {r['round']}: "
                      + ", ".join(cells) + f"; stopped: {sw.get('stop')}")
        md.append("")

    for sc in scenarios:
        row_keys = []
        for sv in SERVERS:
            for k in (summary[sc].get(sv) or {}):
                if k in METRICS and k not in row_keys:
                    row_keys.append(k)
        row_keys.sort(key=lambda k: list(METRICS).index(k))
        present = [sv for sv in SERVERS if sv in summary[sc]]
        md.append(f"## {sc}\n")
        head = "| metric | " + " | ".join(NAMES[s] for s in present)
        if "edge" in present and "coturn" in present:
            head += " | ours/coturn"
        if "edge" in present and "null" in present:
            head += " | ours/null"
        md.append(head + " |")
        md.append("|" + " --- |" * (head.count("|")))
        for k in row_keys:
            label, better, f = METRICS[k]
            cells = [fmt_stat(summary[sc][s].get(k), f) for s in present]
            line = f"| {label} | " + " | ".join(cells)
            if "edge" in present and "coturn" in present:
                rr = ratio(summary[sc]["edge"].get(k), summary[sc]["coturn"].get(k))
                line += f" | {rr:.2f}" if rr is not None else " | –"
            if "edge" in present and "null" in present:
                rr = ratio(summary[sc]["edge"].get(k), summary[sc]["null"].get(k))
                line += f" | {rr:.2f}" if rr is not None else " | –"
            md.append(line + " |")
        md.append("")
    bott = sorted({f"{r['server']}/{r['scenario']}: {r.get('bottleneck')}" for r in runs
                   if r.get("bottleneck") and r.get("round") == 1})
    if bott:
        md.append("## What limited each run (round 1, relay_load's own verdict)\n")
        md += [f"- {b}" for b in bott]
        md.append("")
    failures = [f"{r['server']}/{r['scenario']} r{r['round']}: {r.get('failures') or r.get('errors')}"
                for r in runs if r.get("failures") or r.get("errors") or r.get("exit")]
    if failures:
        md.append("## Failures\n")
        md += [f"- {f}" for f in failures]
        md.append("")

    os.makedirs(a.out, exist_ok=True)
    base = os.path.join(a.out, a.stamp)
    chart = make_chart(summary, scenarios, base + ".png")
    if chart:
        md.append(f"![chart]({os.path.basename(chart)})\n")
    else:
        md.append("_No chart: python3 has no matplotlib (`pip install matplotlib`)._\n")
    text = "\n".join(md)
    open(base + ".md", "w").write(text)
    open(os.path.join(a.out, "latest.md"), "w").write(
        text.replace(f"]({os.path.basename(base)}.png)", "](latest.png)"))
    if chart:
        shutil.copyfile(chart, os.path.join(a.out, "latest.png"))
    json.dump({"meta": meta, "summary": summary, "runs": runs}, open(base + ".json", "w"), indent=1)
    print(text)
    print(f"report.py: wrote {base}.json, {base}.md, {a.out}/latest.md"
          + (f", {chart}" if chart else ""), file=sys.stderr)


def make_chart(summary, scenarios, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    panels = [
        ("highest delivered packets/s with < 0.1 % loss (sweep)", "max_lossless_delivered_pps",
         [s for s in scenarios if s and s.endswith("-sweep")]),
        ("relayed packets/s, flat out (closed loop)", "relayed_pps",
         [s for s in scenarios if s and s.endswith("-max") and s.startswith("udp")]),
        ("delivered Mbit/s, TCP and TLS, flat out", "down_mbps",
         [s for s in scenarios if s and s.startswith(("tcp-", "tls-"))]),
        ("server CPU-s per million relayed", "server_cpu_s_per_million",
         [s for s in scenarios if s and s.endswith(("-max", "-paced", "-half"))]),
        ("RTT p99 µs (paced, half of max, flat out)", "rtt_p99_us",
         [s for s in scenarios if s and s.endswith(("-paced", "-half", "-max"))]),
        ("allocations/s (incl. 401)", "allocs_per_s", [s for s in scenarios if s == "allocate"]),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(20, 10))
    colors = {"null": "#999999", "edge": "#1f77b4", "coturn": "#d62728"}
    for ax, (title, key, scs) in zip(axes.flat, panels):
        ax.set_title(title)
        width = 0.27
        for i, sv in enumerate(SERVERS):
            xs, ys, lo, hi = [], [], [], []
            for j, sc in enumerate(scs):
                s = (summary.get(sc, {}).get(sv) or {}).get(key)
                if not s:
                    continue
                xs.append(j + (i - 1) * width)
                ys.append(s["median"])
                lo.append(s["median"] - s["min"])
                hi.append(s["max"] - s["median"])
            if xs:
                ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=NAMES[sv], color=colors[sv])
        ax.set_xticks(range(len(scs)))
        ax.set_xticklabels(scs, rotation=20, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("TURN relay: ours vs coturn vs null relay (median, bars = min–max)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
