#!/usr/bin/env python3
"""bench/report.py: turns one Google Benchmark JSON run of pkrt_bench into BENCHMARKS.md (every
figure against its in-run baseline, the ratio, the target, pass/fail, and for a miss the
reason and what would close it) and the data + gnuplot scripts for bench/snapshot_latency.png and
bench/latency_cdf.png.

Standard library only. Usage:
  report.py RESULTS.json --markdown BENCHMARKS.md --plot-data DIR [--cdf-dir CDFDIR] [--command "how it ran"]
Writes DIR/snapshot_latency.dat and DIR/snapshot_latency.gp, and, when CDFDIR holds the round-trip
benchmarks' .cdf files (PKRT_BENCH_CDF_DIR of the run), DIR/latency_cdf.gp (run gnuplot on each .gp).
Exit status 0 whether targets pass or not (the table says); 2 on unusable input.
"""
import argparse
import os
import datetime
import json
import re
import sys

SUFFIX = re.compile(r"^(iterations:\d+|repeats:\d+|manual_time|real_time|min_time:.*|threads:\d+)$")


def base_name(name):
    return "/".join(p for p in name.split("/") if not SUFFIX.match(p))


class Results:
    def __init__(self, doc):
        self.context = doc.get("context", {})
        self.rows = {}
        for b in doc.get("benchmarks", []):
            key = base_name(b.get("run_name") or b["name"])
            agg = b.get("aggregate_name")
            if b.get("run_type") == "aggregate" and agg not in ("median",):
                continue
            # Prefer the median of repetitions; otherwise the (single) iteration run.
            if key in self.rows and self.rows[key].get("aggregate_name") == "median":
                continue
            self.rows[key] = b

    def get(self, name):
        b = self.rows.get(name)
        if b is None or b.get("error_occurred"):
            return None
        return b

    def skipped(self, name):
        b = self.rows.get(name)
        if b is None:
            return "not run"
        if b.get("error_occurred"):
            return b.get("error_message", "error")
        return None

    def time_ns(self, name):
        b = self.get(name)
        if b is None:
            return None
        scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[b.get("time_unit", "ns")]
        return b["real_time"] * scale

    def value(self, name, key):
        b = self.get(name)
        return None if b is None else b.get(key)

    def load_cdfs(self, directory):
        """The round-trip CDFs the benchmarks wrote ($PKRT_BENCH_CDF_DIR): name -> (path, points)."""
        self.cdfs = {}
        if not directory or not os.path.isdir(directory):
            return
        for entry in sorted(os.listdir(directory)):
            if not entry.endswith(".cdf"):
                continue
            path = os.path.join(directory, entry)
            name, points = None, []
            with open(path) as f:
                for line in f:
                    if line.startswith("# benchmark: "):
                        name = line[len("# benchmark: "):].strip()
                    elif line.strip() and not line.startswith("#"):
                        edge, frac = line.split()
                        points.append((float(edge), float(frac)))
            if name and points:
                self.cdfs[name] = (path, points)

    def cdf_fraction_above(self, name, ns):
        """Share of a benchmark's samples above ns (bucket resolution), from its CDF file."""
        entry = getattr(self, "cdfs", {}).get(name)
        if entry is None:
            return None
        below = 0.0
        for edge, frac in entry[1]:
            if edge > ns:
                break
            below = frac
        return 1.0 - below


def fmt_time(ns):
    if ns is None:
        return "n/a"
    if ns < 1e3:
        return "%.1f ns" % ns
    if ns < 1e6:
        return "%.2f us" % (ns / 1e3)
    if ns < 1e9:
        return "%.2f ms" % (ns / 1e6)
    return "%.2f s" % (ns / 1e9)


def fmt_rate(v, unit):
    if v is None:
        return "n/a"
    if unit == "B/s":
        return "%.2f GB/s" % (v / 1e9)
    if v >= 1e6:
        return "%.2f M%s" % (v / 1e6, unit)
    if v >= 1e3:
        return "%.1f k%s" % (v / 1e3, unit)
    return "%.1f %s" % (v, unit)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_x(v):
    return "n/a" if v is None else "%.2f" % v


def fmt_num(v):
    if v is None:
        return "n/a"
    return "%.3g" % v


def fmt_pct(v):
    return "n/a" if v is None else "%.2f%%" % (v * 100)


def per_record_ns(r, name):
    """ns per item (record, message) of a benchmark that sets items processed."""
    v = r.value(name, "items_per_second")
    return None if not v else 1e9 / v


MIB64 = 64 << 20
POLICIES = ("latency", "balanced", "low_power")


def build_rows(r):
    """Each row: figure, measured, baseline, ratio, op, target, why-if-missed, kind."""
    rows = []

    def add(figure, measured, baseline, value, op, target, why, kind="target", band=0.0, target_text=None,
            ratio_text=None):
        # band: run-to-run noise allowed around a target of equality (stated in the table).
        # target_text / ratio_text: how the table states an absolute target (value is then
        # measured / limit, and target 1.0).
        if value is None:
            result = "n/a"
        elif op == "<=":
            result = "PASS" if value <= target * (1 + band) else "FAIL"
        else:
            result = "PASS" if value >= target * (1 - band) else "FAIL"
        rows.append(dict(figure=figure, measured=measured, baseline=baseline, ratio=value, op=op,
                         target=target, result=result, why=why, kind=kind, band=band,
                         target_text=target_text, ratio_text=ratio_text or "%.3fx"))

    # 1. Messaging round trip: percentiles from each benchmark's own histogram (one sample per
    # round trip), all timed the same way (two steady_clock reads around it).
    rt = "BM_RingRoundTrip/"
    fut = rt + "echo_cpu/future"

    def lat(name, key="p50_ns"):
        return r.value(name, key)

    boost_p50 = lat(rt + "boost_spsc")
    ring_p50 = lat(rt + "pkrt_ring")
    fut_p50, fut_p99, fut_p999 = lat(fut), lat(fut, "p99_ns"), lat(fut, "p999_ns")
    cb_p50 = lat(rt + "echo_cpu/callback")
    gap100_p50 = lat(fut + "/gap:100us")
    gap10_p50, gap10_p99 = lat(fut + "/gap:10ms"), lat(fut + "/gap:10ms", "p99_ns")
    wake100_p50, wake10_p50 = lat(rt + "futex_wake/gap:100us"), lat(rt + "futex_wake/gap:10ms")

    def sw(name):
        return fmt_num(r.value(name, "switches_per_op"))

    def per_policy(suffix, key="p50_ns"):
        return "; ".join("%s %s" % (p, fmt_time(lat(fut + suffix + "/policy:" + p, key))) for p in POLICIES)

    policies_text = "; ".join(
        "%s %s / %s (%s switches)" % (p, fmt_time(lat(fut + "/policy:" + p)), fmt_time(lat(fut + "/policy:" + p, "p99_ns")),
                                      sw(fut + "/policy:" + p)) for p in POLICIES)
    load = r.context.get("load_avg", [])
    load_text = ("%.1f" % load[0]) if load else "?"
    threads_text = ("`send().get()` involves three threads on two cores: the sender (it spins on its "
                    "record for the poll policy's budget, draining its actor's K2H ring itself, then "
                    "parks), block 0's worker (it spins, then sleeps in a futex until a send rings the "
                    "doorbell) and the pump (it spins, yields, then sleeps until a block wakes it). ")
    fix_text = ("What would close it (runtime, host/): with fewer cores than runtime threads, "
                "pollers must not spin through their whole budget (yield between polls, or let the "
                "pump sleep at once while a sender drains its own reply), so that the thread with "
                "the work is never waiting for a core held by a spinner.")
    rp = "BM_RingRoundTripPaired/echo_cpu/future/vs_boost"

    def rp_value(key):
        return r.value(rp, key)

    def rp_spread(prefix):
        lo, hi = rp_value(prefix + "_ratio_min"), rp_value(prefix + "_ratio_max")
        return "n/a" if lo is None or hi is None else "%.2f-%.2fx" % (lo, hi)

    rt_pair_note = ("Paired: the median over 9 alternating windows of `send().get()` and the Boost ping-pong "
                    "(A B, then B A) of each pair's ratio to that pair's Boost p50 (this run's pairs ranged "
                    "%s), so both sides see the same machine; the percentile table below has the unpaired "
                    "benchmarks. ")
    add("`send().get()` round trip p50, host -> echo actor -> host (CPU backend, default poll policy)",
        fmt_time(rp_value("p50_ns")), "Boost.Lockfree spsc ping-pong p50 " + fmt_time(rp_value("boost_p50_ns")),
        rp_value("p50_ratio_median"), "<=", 3.0,
        rt_pair_note % rp_spread("p50") + "The ring is not the cost: pkrt's bare ring ping-pong measures p50 %s (%sx Boost) and chained "
        "reply callbacks (block and pump only) %s. %sWhen every hand-off is a spinning thread a round "
        "trip has no context switch; this run measured %s switches per round trip (Boost ping-pong: "
        "%s), and each one is a thread that slept or lost its core, microseconds on this VM (a futex "
        "round trip after 100 us idle: %s p50). p50 / p99 (switches per round trip) per poll policy: "
        "%s. The run started at a load average of %s on 2 cores. %s"
        % (fmt_time(ring_p50), fmt_x(ratio(ring_p50, boost_p50)), fmt_time(cb_p50), threads_text, sw(fut),
           sw(rt + "boost_spsc"), fmt_time(wake100_p50), policies_text, load_text, fix_text))
    limit = None if boost_p50 is None else 10 * boost_p50
    add("`send().get()` round trip p99 (same runs)", fmt_time(rp_value("p99_ns")), "Boost.Lockfree spsc ping-pong p50 " +
        fmt_time(rp_value("boost_p50_ns")), rp_value("p99_ratio_median"), "<=", 10.0,
        rt_pair_note % rp_spread("p99") + "In the unpaired benchmark %s of the round trips took longer than 10x the Boost p50 (%s); the target allows 1%%. "
        "Those are the round trips that went through the scheduler (%s switches per round trip on "
        "average): a parked sender woken by the pump, or a worker woken by the doorbell while a "
        "spinner holds the other core. p99.9 is %s. p99 per poll policy: %s. %s"
        % (fmt_pct(r.cdf_fraction_above(fut, limit) if limit else None), fmt_time(limit), sw(fut),
           fmt_time(fut_p999), per_policy("", "p99_ns"), fix_text))
    gap_policies = [(p, lat(fut + "/gap:10ms/policy:" + p)) for p in POLICIES]
    measured_gaps = [x for x in gap_policies if x[1] is not None]
    slowest = max(measured_gaps, key=lambda x: x[1]) if measured_gaps else (None, None)
    fastest = min(measured_gaps, key=lambda x: x[1]) if measured_gaps else (None, None)
    add("Round trip after 10 ms idle, p50 (one `send().get()` after the sender slept 10 ms)", fmt_time(gap10_p50),
        "absolute target 50 us", ratio(gap10_p50, 50e3), "<=", 1.0,
        "After 10 ms every poller has given up spinning and sleeps, so the command has to wake block "
        "0's worker at least. On this machine the cheapest such round trip, a thread asleep in a futex "
        "woken and answering after 10 ms idle, costs %s p50 (%s switches per round trip); the runtime's "
        "costs %s (%s switches per round trip), p99 %s; after 100 us idle %s (futex baseline %s). p50 "
        "after 10 ms idle per poll policy: %s. %s What would close it (runtime, host/): after an "
        "idle gap, wake only block 0's worker (the sender completes its own reply) and let the "
        "sender park rather than spin while it runs; the futex baseline above is the floor this "
        "machine allows."
        % (fmt_time(wake10_p50), sw(rt + "futex_wake/gap:10ms"), fmt_time(gap10_p50), sw(fut + "/gap:10ms"),
           fmt_time(gap10_p99), fmt_time(gap100_p50), fmt_time(wake100_p50), per_policy("/gap:10ms"),
           "The policy that spins longest (latency) is the slowest here and the one that spins least "
           "(low_power) the fastest: the woken worker waits for a core while the sender and the pump "
           "spin." if (slowest[0], fastest[0]) == ("latency", "low_power") else
           "The policies do not order by how long they spin in this run (slowest %s, fastest %s): the "
           "wake-ups themselves dominate." % (slowest[0] or "n/a", fastest[0] or "n/a")),
        target_text="<= 50 us (absolute)", ratio_text="%.3fx of 50 us")
    add("Round trip, bare pkrt ring ping-pong (two host threads), p50", fmt_time(ring_p50),
        "Boost.Lockfree p50 " + fmt_time(boost_p50), ratio(ring_p50, boost_p50), "<=", 1.0, "", kind="info")
    add("Round trip, echo actor with chained reply callbacks, p50", fmt_time(cb_p50),
        "Boost.Lockfree p50 " + fmt_time(boost_p50), ratio(cb_p50, boost_p50), "<=", 1.0, "", kind="info")
    add("Round trip after 10 ms idle, futex wake-up baseline, p50", fmt_time(wake10_p50), "absolute target 50 us",
        ratio(wake10_p50, 50e3), "<=", 1.0, "", kind="info", ratio_text="%.3fx of 50 us")
    add("Round trip after 10 ms idle, p50, vs the futex wake-up baseline", fmt_time(gap10_p50),
        "futex wake-up " + fmt_time(wake10_p50), ratio(gap10_p50, wake10_p50), "<=", 1.0, "", kind="info")
    add("Round trip after 100 us idle, p50, vs the futex wake-up baseline", fmt_time(gap100_p50),
        "futex wake-up " + fmt_time(wake100_p50), ratio(gap100_p50, wake100_p50), "<=", 1.0, "", kind="info")

    # 2. Messaging throughput: messages per second from one host thread, against a Boost spsc
    # queue drained by a consumer thread.
    tp = "BM_RingThroughput/"

    def rate(name):
        return r.value(tp + name, "items_per_second")

    boost_tp = rate("boost_spsc")
    ring_tp = rate("pkrt_ring")
    post_tp, batch_tp, single_tp = rate("echo_cpu/post"), rate("echo_cpu/send_batch"), rate("echo_cpu/post_single")
    post_log, batch_log, single_log = (rate("echo_cpu/post/log"), rate("echo_cpu/send_batch/log"),
                                       rate("echo_cpu/post_single/log"))
    rec32 = per_record_ns(r, "BM_ReplayAppend/pkrt_log_batch/32")

    def per_msg(v):
        return fmt_time(None if not v else 1e9 / v)

    def busy(name):
        """Share of the wall time the feeding thread was on a core (its CPU time / real time)."""
        b = r.get(tp + name)
        return None if b is None or not b.get("real_time") else b["cpu_time"] / b["real_time"]

    def tp_why(name, rate_value):
        share = busy(name)
        text = ("Per message this is %s end to end (1 / the rate) against %s for the Boost queue; pkrt's "
                "bare ring, one slot per publish, moves %s (%sx Boost). The feeding thread was on a core "
                "%s of the time (its CPU time over wall time) and the process made %s context switches "
                "per message. " % (per_msg(rate_value), per_msg(boost_tp), fmt_rate(ring_tp, "msg/s"),
                                   fmt_x(ratio(ring_tp, boost_tp)), fmt_pct(share), sw_tp(name)))
        if share is not None and share < 0.7:
            text += ("The feeder spent much of the run off its core: when the H2K ring (1024 slots) is "
                     "full the sender backs off (spin, yield, then a timed sleep: host/send_path.cpp, "
                     "wait_for_room), and while it sleeps the block drains the ring and idles. What "
                     "would close it (runtime, host/): wake a sender waiting for room when the block "
                     "hands slots back (a futex, like the doorbell in the other direction) instead of "
                     "a timed sleep.")
        else:
            text += ("The feeder was on its core most of the time, so the cost is mostly its own per-message work: "
                     "`post_batch` %s per message, one `post` per call %s."
                     % (per_msg(post_tp), per_msg(single_tp)))
        return text

    def sw_tp(name):
        return fmt_num(r.value(tp + name, "switches_per_op"))

    pp = "BM_RingThroughputPaired/echo_cpu/"

    def paired(name):
        """(rate, baseline rate, median ratio, 'min-max' text) of a paired throughput benchmark."""
        v = lambda k: r.value(pp + name, k)
        lo, hi = v("ratio_min"), v("ratio_max")
        spread = "n/a" if lo is None or hi is None else "%.2f-%.2fx" % (lo, hi)
        return v("rate"), v("baseline_rate"), v("ratio_median"), spread

    pair_note = ("Paired: the median of 9 alternating windows of the feed and its baseline (A B, then "
                 "B A; this run's pairs ranged %s), so both sides see the same machine. ")
    post_p, post_pb, post_pr, post_ps = paired("post/vs_boost")
    batch_p, batch_pb, batch_pr, batch_ps = paired("send_batch/vs_boost")
    postlog_p, postlog_pb, postlog_pr, postlog_ps = paired("post/log_vs_none")
    batchlog_p, batchlog_pb, batchlog_pr, batchlog_ps = paired("send_batch/log_vs_none")

    add("`post_batch` throughput (64 commands per call), host -> echo actor (CPU backend)", fmt_rate(post_p, "msg/s"),
        "Boost.Lockfree spsc " + fmt_rate(post_pb, "msg/s"), post_pr, ">=", 0.5,
        pair_note % post_ps + tp_why("echo_cpu/post", post_tp))
    add("`send_batch` throughput (64 commands per call, a future each, `get()` each)", fmt_rate(batch_p, "msg/s"),
        "Boost.Lockfree spsc " + fmt_rate(batch_pb, "msg/s"), batch_pr, ">=", 0.5,
        pair_note % batch_ps + tp_why("echo_cpu/send_batch", batch_tp) +
        " A send costs %s per message more than a post in this run: a request record (a batch takes "
        "its records with one free-list CAS; the reply is written into the record in place; get() "
        "frees it), and a reply slot on K2H per command that the thread in get() consumes. So every "
        "message moves two cache lines between the cores (its H2K slot one way, its reply the "
        "other) where the Boost queue moves one: about 0.5x Boost is the ceiling while both are "
        "bound by those transfers. On this 2-vCPU machine a runtime also runs in a slow mode about "
        "half as fast, for its whole life (docs/performance.md, 'Two modes'); the same benchmark "
        "with every thread on one core (`taskset -c 0`) gives what that mode gives. What would "
        "close more of it: fewer RMWs per record (claim, completion, free and the reference count "
        "are one each), or replies packed several to a K2H slot."
        % fmt_time(None if not (batch_tp and post_tp) else 1e9 / batch_tp - 1e9 / post_tp))
    log_why = ("With the log the sender mirrors every H2K slot as it publishes it (under the ring "
               "lane's lock, one append_batch per publish) and the pump every K2H slot it consumes "
               "(posts are then acknowledged in runs, so that the log holds each one's applied "
               "epoch): %s per message more than without (paired medians), against %s per record for "
               "append_batch of 32 measured alone. Each record's CRC is computed from the registers "
               "that copy it (replay/record_crc.hpp); what is left per publish is the clock read, "
               "the counters update and the store fence that waits for the streamed records, and "
               "per message the record built beside its slot. What would close more of it: "
               "appending outside the lane lock, or records built straight from the slots.")
    add("`post_batch` throughput with the replay log on", fmt_rate(postlog_p, "msg/s"),
        "without " + fmt_rate(postlog_pb, "msg/s"), postlog_pr, ">=", 0.5,
        pair_note % postlog_ps +
        log_why % (fmt_time(None if not (postlog_p and postlog_pb) else 1e9 / postlog_p - 1e9 / postlog_pb),
                   fmt_time(rec32)))
    add("`send_batch` throughput with the replay log on", fmt_rate(batchlog_p, "msg/s"),
        "without " + fmt_rate(batchlog_pb, "msg/s"), batchlog_pr, ">=", 0.5,
        pair_note % batchlog_ps +
        log_why % (fmt_time(None if not (batchlog_p and batchlog_pb) else 1e9 / batchlog_p - 1e9 / batchlog_pb),
                   fmt_time(rec32)))
    add("`post_batch` throughput, unpaired (its own benchmark, a minute from the baseline's)", fmt_rate(post_tp, "msg/s"),
        "Boost.Lockfree spsc " + fmt_rate(boost_tp, "msg/s"), ratio(post_tp, boost_tp), ">=", 0.0, "", kind="info")
    add("`send_batch` throughput, unpaired", fmt_rate(batch_tp, "msg/s"),
        "Boost.Lockfree spsc " + fmt_rate(boost_tp, "msg/s"), ratio(batch_tp, boost_tp), ">=", 0.0, "", kind="info")
    add("`post_batch` with the replay log, unpaired", fmt_rate(post_log, "msg/s"),
        "without " + fmt_rate(post_tp, "msg/s"), ratio(post_log, post_tp), ">=", 0.0, "", kind="info")
    add("`send_batch` with the replay log, unpaired", fmt_rate(batch_log, "msg/s"),
        "without " + fmt_rate(batch_tp, "msg/s"), ratio(batch_log, batch_tp), ">=", 0.0, "", kind="info")
    add("`post` throughput, one command per call", fmt_rate(single_tp, "msg/s"),
        "Boost.Lockfree spsc " + fmt_rate(boost_tp, "msg/s"), ratio(single_tp, boost_tp), ">=", 0.0, "", kind="info")
    add("`post` one per call with the replay log on", fmt_rate(single_log, "msg/s"),
        "without " + fmt_rate(single_tp, "msg/s"), ratio(single_log, single_tp), ">=", 0.0, "", kind="info")
    add("Throughput, bare pkrt ring", fmt_rate(ring_tp, "msg/s"), "Boost.Lockfree " + fmt_rate(boost_tp, "msg/s"),
        ratio(ring_tp, boost_tp), ">=", 1.0, "", kind="info")

    # CUDA backend (measured only where a GPU is present)
    cuda_p50 = r.value(rt + "echo_cuda/future", "p50_ns")
    launch_p50 = r.value("BM_CudaLaunchSync/empty", "p50_ns")
    add("CUDA round trip `send().get()` p50", fmt_time(cuda_p50), "empty kernel launch + cudaStreamSynchronize p50 " +
        fmt_time(launch_p50), ratio(cuda_p50, launch_p50), "<=", 1.0, "", kind="info")
    cuda_post = rate("echo_cuda/post")
    add("CUDA `post_batch` throughput", fmt_rate(cuda_post, "msg/s"), "Boost.Lockfree spsc (host) " +
        fmt_rate(boost_tp, "msg/s"), ratio(cuda_post, boost_tp), ">=", 0.0, "", kind="info")

    # 3. CRC32
    isal_1m = r.value("BM_Crc32/isal/1048576", "bytes_per_second")
    host_1m = r.value("BM_Crc32/pkrt_host/1048576", "bytes_per_second")

    def paired(name, size):
        key = "BM_Crc32/paired:%s/%d" % (name, size)
        return (r.value(key, "a_bytes_per_second"), r.value(key, "b_bytes_per_second"), r.value(key, "ratio"))

    pa, pb, pr = paired("pkrt_host_vs_isal", 1 << 20)
    add("CRC32, runtime host path `pkrt::crc32`, 1 MiB (paired)", fmt_rate(pa, "B/s"), "ISA-L " + fmt_rate(pb, "B/s"),
        pr, ">=", 0.9, "pkrt::crc32 is ISA-L itself; a miss is run-to-run noise.")
    isal_64 = r.value("BM_Crc32/isal/67108864", "bytes_per_second")
    pa, pb, pr = paired("pkrt_host_vs_isal", 64 << 20)
    add("CRC32, runtime host path, 64 MiB (paired)", fmt_rate(pa, "B/s"), "ISA-L " + fmt_rate(pb, "B/s"),
        pr, ">=", 0.9, "", kind="info")
    s8 = r.value("BM_Crc32/kernel_slice8/67108864", "bytes_per_second")
    c1, s8p, cr = paired("kernel_chunked_t1_vs_kernel_slice8", 64 << 20)
    add("CRC32, kernels' chunked CRC on the host, 1 thread, 64 MiB (paired)", fmt_rate(c1, "B/s"),
        "plain slice-by-8 " + fmt_rate(s8p, "B/s"), cr, ">=", 1.0,
        "Both run the same slice-by-8 inner loop (the combine of 1024 chunk CRCs costs <0.1%), "
        "so the ratio is 1.0 up to run-to-run noise. To be faster per thread than the plain "
        "loop, crc32_chunks would interleave 3-4 chunks per thread (independent CRC dependency "
        "chains; slice-by-8 is latency-bound), which would help the GPU too.", band=0.02)
    c2, c1p, sr = paired("kernel_chunked_t2_vs_kernel_chunked_t1", 64 << 20)
    load = r.context.get("load_avg", [])
    add("CRC32, kernels' chunked CRC, 2 threads vs 1, 64 MiB (paired)", fmt_rate(c2, "B/s"), "1 thread " + fmt_rate(c1p, "B/s"),
        sr, ">=", 1.5,
        "Two threads need two free cores; the run started at a load average of %s on 2 cores, so "
        "the second thread mostly waited for a core. The loop is compute-bound (slice-by-8 at "
        "~2 GB/s per thread, far below memory bandwidth) and chunks are split evenly, so on an idle "
        "machine it scales ~2x; re-run bench/report.sh when the machine is quiet."
        % (("%.1f" % load[0]) if load else "?"))
    zl = r.value("BM_Crc32/zlib/1048576", "bytes_per_second")
    ld = r.value("BM_Crc32/libdeflate/1048576", "bytes_per_second")
    s81 = r.value("BM_Crc32/kernel_slice8/1048576", "bytes_per_second")
    add("CRC32 1 MiB: libdeflate / zlib / kernels' slice-by-8", "%s / %s / %s" % (fmt_rate(ld, "B/s"), fmt_rate(zl, "B/s"),
                                                                         fmt_rate(s81, "B/s")),
        "ISA-L " + fmt_rate(isal_1m, "B/s"), ratio(s81, isal_1m), ">=", 0.0,
        "", kind="info")

    # 4. Snapshots
    full = "BM_SnapshotLatency/%d/full" % MIB64
    delta = "BM_SnapshotLatency/%d/delta" % MIB64
    floor = "BM_SnapshotLatency/%d/floor" % MIB64
    sfloor = "BM_SnapshotLatency/%d/stall_floor" % MIB64
    full_ms = r.value(full, "durable_ms")
    delta_ms = r.value(delta, "durable_ms")
    floor_ms = r.value(floor, "durable_ms")
    sfloor_ms = r.value(sfloor, "durable_ms")
    stall_ms = r.value(full, "stall_ms")
    dstall_ms = r.value(delta, "stall_ms")
    s8_ms = None if s8 is None else MIB64 / s8 * 1e3
    isal_ms = None if isal_64 is None else MIB64 / isal_64 * 1e3

    def ms(v):
        return "n/a" if v is None else "%.1f ms" % v

    # Paired floors (run after every snapshot, same load) when present; else the separate runs.
    pf = r.value(full, "paired_floor_ms")
    psf = r.value(full, "paired_stall_floor_ms")
    if pf is not None and psf is not None:
        floor_ms, sfloor_ms, floor_kind = pf, psf, "paired "
    else:
        floor_kind = ""
    fw = r.value(full, "bytes_written")
    add("Full snapshot, 64 MiB, request to durable (CPU backend)", ms(full_ms),
        floor_kind + "floor: memcpy + ISA-L CRC + write + fsync " + ms(floor_ms), ratio(full_ms, floor_ms), "<=", 1.5,
        "The product path does more than the floor: the actor stall (%s, see below), the pump's "
        "copy of every chunk into the host mirror and one ISA-L CRC of the whole mirror (a full "
        "snapshot changes every chunk), word delta + byte shuffle + zstd of every chunk, the file "
        "assembled in memory, then write + fsync + rename + fsync of the directory. The mirror "
        "itself goes to the writer (copied only while the writer still holds the previous "
        "image). zstd makes the file %s smaller than the floor's (%s vs 64 MiB written), which "
        "is why it comes close at all, and the floor's fsync time swings with whatever else "
        "writes to the disk. What would close more of it: write the chunks as they are compressed "
        "(writev of header, table and chunk buffers) instead of assembling the file in memory "
        "(docs/performance.md)."
        % (ms(stall_ms), "n/a" if fw is None else "%.1fx" % (MIB64 / fw),
           "n/a" if fw is None else "%.2f MB" % (fw / 1e6)))
    fused_ms = r.value("BM_SnapshotLatency/%d/stall_fused" % MIB64, "durable_ms")
    add("Actor stall, full snapshot, 64 MiB (CPU backend)", ms(stall_ms),
        floor_kind + "memcpy + ISA-L CRC of the state " + ms(sfloor_ms), ratio(stall_ms, sfloor_ms), "<=", 1.2,
        "On the CPU backend serve_snapshot copies each 64 KiB chunk into staging and CRCs it with "
        "ISA-L while it is still in cache (crc32_update_native), one pass over memory, where the "
        "floor copies the whole state and then reads it again for the CRC. The same loop measured "
        "alone in this run (stall_fused) takes %s: %sx the floor. The device pass keeps the "
        "portable slice-by-8 after a whole-image copy; on this host that CRC alone would take %s "
        "for 64 MiB (vs %s for ISA-L). A miss here is run-to-run noise: re-run bench/report.sh."
        % (ms(fused_ms), "n/a" if ratio(fused_ms, sfloor_ms) is None else "%.2f" % ratio(fused_ms, sfloor_ms),
           ms(s8_ms), ms(isal_ms)))
    dw = r.value(delta, "bytes_written")
    dc = r.value(delta, "bytes_copied")
    add("Delta snapshot (1% of chunks changed) vs full, 64 MiB, request to durable", ms(delta_ms),
        "full " + ms(full_ms), ratio(delta_ms, full_ms), "<=", 0.1,
        "A delta's host work is proportional to what changed: the pump copies only the changed "
        "chunks into the mirror (%s here), checks each against the device's chunk CRC and the "
        "device's chunk CRCs against its image CRC (no CRC of the whole mirror), hands the "
        "mirror to the writer without a copy, and the writer encodes and writes only those "
        "chunks (%s). What stays proportional to the whole state is the device side: the stall "
        "(%s of the delta's %s) copies and CRCs every chunk to find the changed ones. A miss "
        "here would mean a slow fsync of the small file in a noisy moment: re-run."
        % ("n/a" if dc is None else "%.2f MB" % (dc / 1e6), "n/a" if dw is None else "%.2f MB" % (dw / 1e6),
           ms(dstall_ms), ms(delta_ms)))
    add("Delta vs full, 64 MiB, bytes written", "n/a" if dw is None else "%.2f MB" % (dw / 1e6),
        "full " + ("n/a" if fw is None else "%.2f MB" % (fw / 1e6)), ratio(dw, fw), "<=", 0.1, "", kind="info")

    # 5. Replay append, per record (items = records in every variant)
    app1 = per_record_ns(r, "BM_ReplayAppend/pkrt_log")
    b1, b32, b256 = (per_record_ns(r, "BM_ReplayAppend/pkrt_log_batch/%d" % n) for n in (1, 32, 256))
    mc = per_record_ns(r, "BM_ReplayAppend/memcpy_mmap")
    pw = per_record_ns(r, "BM_ReplayAppend/pwrite_cursor")
    p_mu = r.time_ns("BM_ReplayAppend/part:mutex")
    p_clk = r.time_ns("BM_ReplayAppend/part:clock")
    p_crc = per_record_ns(r, "BM_ReplayAppend/part:record_crc")
    crc_path = r.value("BM_ReplayAppend/part:record_crc", "label") or "unknown path"
    crc_isal = r.time_ns("BM_Crc32/isal/128")
    amortized = None if None in (p_mu, p_clk) else (p_mu + p_clk) / 32
    floor_est = None if None in (mc, p_crc) else mc + p_crc
    parts = ("Measured alone in this run: the record's CRC32 as append_batch computes it "
             "(replay/record_crc.hpp, %s) %s per record (ISA-L's generic CRC on 128 bytes: %s), the mutex %s "
             "and the clock read %s, the last two paid once per batch (%s per record at 32). A batch "
             "of 32 costs %s per record, one record per call %s with append (%s with append_batch), a "
             "batch of 256 %s. "
             % (crc_path, fmt_time(p_crc), fmt_time(crc_isal), fmt_time(p_mu), fmt_time(p_clk), fmt_time(amortized),
                fmt_time(b32), fmt_time(app1), fmt_time(b1), fmt_time(b256)))
    add("Replay log append per record, `append_batch` of 32", fmt_time(b32), "memcpy into a pre-faulted map " +
        fmt_time(mc), ratio(b32, mc), "<=", 3.0,
        parts + "A memcpy plus the record CRC measured alone add up to %s per record here; append_batch "
        "computes each CRC from the registers that copy the record (one pass), so a miss means the CPU "
        "took the ISA-L path (no VPCLMULQDQ: see the label) or a noisy moment." % fmt_time(floor_est))
    add("Replay log append per record, `append_batch` of 32, vs pwrite + cursor write", fmt_time(b32),
        "pwrite + cursor " + fmt_time(pw), ratio(b32, pw), "<=", 0.03,
        parts + "It needs append <= %s per record; the record CRC alone is %s."
        % (fmt_time(None if pw is None else 0.03 * pw), fmt_time(p_crc)))
    add("Replay log append, one record per call (`append`)", fmt_time(app1), "memcpy into a pre-faulted map " +
        fmt_time(mc), ratio(app1, mc), "<=", 0.0, "", kind="info")
    add("Replay log append, `append_batch` of 256", fmt_time(b256), "memcpy into a pre-faulted map " + fmt_time(mc),
        ratio(b256, mc), "<=", 0.0, "", kind="info")

    # 6. heat2d
    def h(mode):
        return (r.value("BM_Heat2dEpochs/" + mode, "epochs_per_s"),
                r.value("BM_Heat2dEpochs/" + mode, "baseline_epochs_per_s"),
                r.value("BM_Heat2dEpochs/" + mode, "ratio_vs_none"))
    rep, rep_base, rep_ratio = h("replay")
    dig, dig_base, dig_ratio = h("replay_digest")
    ck, ck_base, ck_ratio = h("checkpoint_100")
    add("heat2d epochs/s with the replay log (paired runs)", fmt_rate(rep, "epochs/s"),
        "without, alternating with it " + fmt_rate(rep_base, "epochs/s"), rep_ratio, ">=", 0.95,
        "Recording is a copy per slot and heat2d publishes a few slots per epoch; a miss here "
        "is noise (median of five paired repetitions on a shared 2-core machine). Re-run "
        "bench/report.sh.")
    add("heat2d epochs/s with replay log + digests every 10 epochs", fmt_rate(dig, "epochs/s"),
        "without " + fmt_rate(dig_base, "epochs/s"), dig_ratio, ">=", 0.0, "", kind="info")
    add("heat2d epochs/s with checkpoints every 100 epochs", fmt_rate(ck, "epochs/s"),
        "without " + fmt_rate(ck_base, "epochs/s"), ck_ratio, ">=", 0.0, "", kind="info")

    # 7. zstd
    r0 = r.value("BM_Compress/level:1/shuffle:0", "ratio")
    r1 = r.value("BM_Compress/level:1/shuffle:1", "ratio")
    rd = r.value("BM_Compress/level:1/shuffle:delta", "ratio")

    def x(v):
        return "n/a" if v is None else "%.2f" % v

    add("zstd level 1 ratio on heat2d state, with the checkpoint's shuffle filter (word delta + byte shuffle)",
        x(rd), "without " + x(r0), ratio(rd, r0), ">=", 1.5,
        "The checkpoint writer's default filter (filter 2) differences neighbouring 32-bit words "
        "before the byte shuffle. A byte shuffle alone makes the exponent and high-mantissa "
        "planes compressible but leaves the two low mantissa planes of a diffusing field noisy: "
        "it measures %s here (x%s vs none), on a field 200 epochs from random; its gain grows as "
        "the field smooths (x1.5 after ~1000 epochs). The field and zstd are deterministic, so "
        "these ratios do not vary between runs; only the speeds do." % (x(r1), x(ratio(r1, r0))))
    add("zstd level 1 ratio, byte shuffle alone (filter 1)", x(r1), "without " + x(r0), ratio(r1, r0),
        ">=", 1.5, "", kind="info")
    return rows


def noise_warning(r):
    """A warning when the in-run baselines themselves did not get the two cores they spin on (another
    process held one): ratios against them then say nothing about pkrt."""
    problems = []
    sw = r.value("BM_RingRoundTrip/boost_spsc", "switches_per_op")
    if sw is not None and sw > 0.05:
        problems.append("the Boost ping-pong made %s context switches per round trip (0 when both of its "
                        "threads have a core)" % fmt_num(sw))
    b = r.get("BM_RingThroughput/boost_spsc")
    if b is not None and b.get("real_time"):
        share = b["cpu_time"] / b["real_time"]
        if share < 0.8:
            problems.append("the Boost throughput producer was on a core %s of the time" % fmt_pct(share))
    if not problems:
        return None
    return ("**The baselines did not have two cores in this run**: %s. Another process shared the cores, so "
            "the messaging ratios below compare pkrt with a slowed-down baseline; re-run bench/report.sh on a "
            "quiet machine." % "; ".join(problems))


def cuda_rows(r):
    names = ["BM_RingRoundTrip/echo_cuda/future", "BM_RingRoundTrip/echo_cuda/future/gap:10ms",
             "BM_CudaLaunchSync/empty", "BM_RingThroughput/echo_cuda/post", "BM_RingThroughput/echo_cuda/send_batch",
             "BM_SnapshotLatency/%d/full_cuda" % MIB64, "BM_Heat2dEpochs/none_cuda",
             "BM_SnapshotStallDevice/blocks:1/%d" % MIB64]
    out = []
    for n in names:
        why = r.skipped(n)
        if why is not None:
            out.append("| `%s` | %s |" % (n, why.replace("|", "/")[:160]))
        elif r.value(n, "p50_ns") is not None:
            out.append("| `%s` | measured: p50 %s, p99 %s |" % (n, fmt_time(r.value(n, "p50_ns")),
                                                               fmt_time(r.value(n, "p99_ns"))))
        elif n.startswith("BM_RingThroughput/"):
            out.append("| `%s` | measured: %s |" % (n, fmt_rate(r.value(n, "items_per_second"), "msg/s")))
        else:
            out.append("| `%s` | measured: %s |" % (n, fmt_time(r.time_ns(n))))
    return out


def latency_rows(r):
    """Every benchmark that reported percentiles, in run order, against the Boost p50."""
    boost_p50 = r.value("BM_RingRoundTrip/boost_spsc", "p50_ns")
    out = []
    for name in r.rows:
        if r.value(name, "p50_ns") is None:
            continue
        samples = r.value(name, "samples")
        out.append("| `%s` | %s | %s | %s | %s | %s | %s |" % (
            name, fmt_time(r.value(name, "p50_ns")), fmt_time(r.value(name, "p99_ns")),
            fmt_time(r.value(name, "p999_ns")), "n/a" if samples is None else "%d" % samples,
            fmt_num(r.value(name, "switches_per_op")), fmt_x(ratio(r.value(name, "p50_ns"), boost_p50))))
    return out


def write_markdown(r, rows, path, command, results_path, cdf_png):
    ctx = r.context
    lines = []
    lines.append("# Benchmarks")
    lines.append("")
    lines.append("Generated by `bench/report.sh` from one run of `pkrt_bench` (%s). Every figure is a ratio "
                 "against a baseline measured in the same run: the machines are shared and noisy, "
                 "absolute numbers are not comparable across runs. Targets are for the CPU backend; "
                 "GPU figures are modelled until measured on one (docs/performance.md)." % command)
    lines.append("")
    lines.append("Run: %s, %s CPUs at %s MHz, load average at start %s (other work shares these cores)." % (
        ctx.get("date", "?"), ctx.get("num_cpus", "?"), ctx.get("mhz_per_cpu", "?"),
        ", ".join("%.2f" % v for v in ctx.get("load_avg", [])) or "?"))
    lines.append("")
    warning = noise_warning(r)
    if warning:
        lines.append(warning)
        lines.append("")
    lines.append("## Targets")
    lines.append("")
    lines.append("| figure | measured | baseline (same run) | ratio | target | result |")
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        if row["kind"] != "target":
            continue
        rv = "n/a" if row["ratio"] is None else row["ratio_text"] % row["ratio"]
        tgt = row["target_text"] or "%s %.2fx" % (row["op"], row["target"])
        if row.get("band"):
            tgt += " (%d%% noise band)" % round(row["band"] * 100)
        lines.append("| %s | %s | %s | %s | %s | %s |" % (row["figure"], row["measured"], row["baseline"], rv, tgt,
                                                      row["result"]))
    lines.append("")
    passed = sum(1 for x in rows if x["kind"] == "target" and x["result"] == "PASS")
    total = sum(1 for x in rows if x["kind"] == "target")
    lines.append("%d of %d targets met." % (passed, total))
    lines.append("")
    misses = [x for x in rows if x["kind"] == "target" and x["result"] != "PASS" and x["why"]]
    if misses:
        lines.append("## Why a target is missed, and what would close it")
        lines.append("")
        for row in misses:
            lines.append("- **%s** (%s): %s" % (row["figure"], "no data" if row["ratio"] is None else row["ratio_text"] % row["ratio"],
                                                row["why"]))
        lines.append("")
    lines.append("## Context figures (same run, no target)")
    lines.append("")
    lines.append("| figure | measured | baseline | ratio |")
    lines.append("| --- | --- | --- | --- |")
    for row in rows:
        if row["kind"] != "info":
            continue
        rv = "n/a" if row["ratio"] is None else row["ratio_text"] % row["ratio"]
        lines.append("| %s | %s | %s | %s |" % (row["figure"], row["measured"], row["baseline"], rv))
    lines.append("")
    lines.append("## Round-trip latency percentiles")
    lines.append("")
    lines.append("One sample per round trip (send to reply in hand, two steady_clock reads in every variant), "
                 "in a log-bucketed histogram (bench/latency_histogram.hpp, buckets at most 1.6% wide). "
                 "`gap:<t>`: one round trip after the sender slept <t> (not timed), so the pollers' "
                 "back-off shows; `futex_wake`: their baseline, a round trip to a thread asleep in a "
                 "futex; `policy:<p>`: RuntimeOptions::poll (the default on the CPU backend is "
                 "balanced). Switches: context switches of the whole process per round trip (0 when "
                 "every hand-off is between spinning threads; a gap variant counts the sender's own "
                 "sleep). A p99.9 of a few hundred samples is close to their maximum.")
    lines.append("")
    if cdf_png:
        lines.append("![round-trip latency CDF](%s)" % cdf_png)
        lines.append("")
    lines.append("| benchmark | p50 | p99 | p99.9 | samples | switches per round trip | p50 vs Boost p50 |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    lines.extend(latency_rows(r))
    lines.append("")
    lines.append("## Snapshot latency against state size")
    lines.append("")
    lines.append("![snapshot latency](bench/snapshot_latency.png)")
    lines.append("")
    lines.append("| state | full: to durable | full: stall | delta: to durable | delta: stall | floor: durable | floor: stall |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    for size in snapshot_sizes(r):
        def v(mode, key):
            val = r.value("BM_SnapshotLatency/%d/%s" % (size, mode), key)
            return "n/a" if val is None else "%.3g ms" % val
        lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (human_bytes(size), v("full", "durable_ms"), v("full", "stall_ms"),
                                                           v("delta", "durable_ms"), v("delta", "stall_ms"),
                                                           v("floor", "durable_ms"), v("stall_floor", "durable_ms")))
    lines.append("")
    lines.append("## Staging pool")
    lines.append("")
    lines.append("`BM_SnapshotAllPooled`: a full `snapshot_all` of heat2d (16 actors, 2048 x 2048 cells) "
                 "through a staging pool of 16, 4 (a quarter, the default rule for states above 256 MiB) or 1 actor image(s), each timed "
                 "snapshot alternating with an untimed one-pass snapshot of a second runtime (the baseline). "
                 "Time: request to the last image on the host. Hold: first image copied to the last (a pooled "
                 "snapshot holds the grid at its cut at least that long; a one-pass one does not hold it). "
                 "Device stall: the blocks' copy + CRC summed over the images.")
    lines.append("")
    lines.append("| pool | waves | device staging | of the state | request to last image | vs one pass | hold | device stall |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for slots in (16, 4, 1):
        name = "BM_SnapshotAllPooled/slots:%d" % slots
        b = r.get(name)
        if b is None:
            lines.append("| %d image%s | %s |  |  |  |  |  |  |" % (slots, "" if slots == 1 else "s", r.skipped(name)))
            continue
        t = r.time_ns(name)
        lines.append("| %d image%s | %d | %.1f MiB | %.0f%% | %.2f ms | %.2fx | %.2f ms | %.2f ms |" % (
            slots, "" if slots == 1 else "s", b.get("waves", 0), b.get("staging_MiB", 0), 100 * b.get("staging_fraction", 0),
            t / 1e6, b.get("ratio_vs_one_pass", 0), b.get("hold_ms", 0), b.get("stall_ms", 0)))
    lines.append("")
    lines.append("## CUDA variants")
    lines.append("")
    lines.append("| benchmark | status |")
    lines.append("| --- | --- |")
    lines.extend(cuda_rows(r))
    lines.append("")
    lines.append("Raw results: `%s` (not committed). Re-run: `bash bench/report.sh`; the cost model, the "
                 "profiles and the proposed fixes are in docs/performance.md." % results_path)
    lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def snapshot_sizes(r):
    sizes = set()
    for key in r.rows:
        m = re.match(r"^BM_SnapshotLatency/(\d+)/", key)
        if m:
            sizes.add(int(m.group(1)))
    return sorted(sizes)


def human_bytes(n):
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return "%d %s" % (n >> shift, unit)
    return "%d B" % n


def write_plot(r, out_dir, png):
    dat = out_dir + "/snapshot_latency.dat"
    gp = out_dir + "/snapshot_latency.gp"
    with open(dat, "w") as f:
        f.write("# bytes full_durable_ms full_stall_ms delta_durable_ms floor_durable_ms stall_floor_ms\n")
        for size in snapshot_sizes(r):
            vals = [r.value("BM_SnapshotLatency/%d/full" % size, "durable_ms"),
                    r.value("BM_SnapshotLatency/%d/full" % size, "stall_ms"),
                    r.value("BM_SnapshotLatency/%d/delta" % size, "durable_ms"),
                    r.value("BM_SnapshotLatency/%d/floor" % size, "durable_ms"),
                    r.value("BM_SnapshotLatency/%d/stall_floor" % size, "durable_ms")]
            f.write("%d %s\n" % (size, " ".join("NaN" if v is None or v <= 0 else "%.6g" % v for v in vals)))
    with open(gp, "w") as f:
        f.write("""set terminal pngcairo size 1000,650 enhanced font 'DejaVu Sans,11'
set output '%s'
set title 'pkrt snapshot latency vs state size (CPU backend; one run, %s)'
set logscale xy
set xlabel 'actor state (bytes)'
set ylabel 'milliseconds'
set xtics ('4 KiB' 4096, '64 KiB' 65536, '1 MiB' 1048576, '16 MiB' 16777216, '256 MiB' 268435456)
set xrange [2048:536870912]
set grid xtics ytics mxtics mytics
set key top left
set datafile missing 'NaN'
plot '%s' using 1:2 with linespoints lw 2 pt 7 title 'full: request to durable', \\
     '' using 1:4 with linespoints lw 2 pt 5 title 'delta (1%%): request to durable', \\
     '' using 1:3 with linespoints lw 2 pt 9 title 'actor stall (full)', \\
     '' using 1:5 with lines lw 2 dt 2 lc rgb 'black' title 'floor: memcpy + CRC + write + fsync', \\
     '' using 1:6 with lines lw 2 dt 3 lc rgb 'gray40' title 'stall floor: memcpy + CRC'
""" % (png, r.context.get("date", "")[:10], dat))
    return gp


CDF_SERIES = (
    ("BM_RingRoundTrip/boost_spsc", "Boost.Lockfree spsc ping-pong", "lc rgb 'black' dt 2"),
    ("BM_RingRoundTrip/pkrt_ring", "bare pkrt ring ping-pong", "lc rgb 'gray40' dt 3"),
    ("BM_RingRoundTrip/echo_cpu/future", "send().get(), back to back", "lc rgb '#1f77b4'"),
    ("BM_RingRoundTrip/echo_cpu/future/gap:100us", "send().get() after 100 us idle", "lc rgb '#ff7f0e'"),
    ("BM_RingRoundTrip/echo_cpu/future/gap:10ms", "send().get() after 10 ms idle", "lc rgb '#d62728'"),
    ("BM_RingRoundTrip/futex_wake/gap:10ms", "futex wake-up after 10 ms idle (baseline)", "lc rgb '#9467bd' dt 2"),
    ("BM_RingRoundTrip/echo_cuda/future", "CUDA send().get()", "lc rgb '#2ca02c'"),
    ("BM_CudaLaunchSync/empty", "CUDA empty launch + sync", "lc rgb '#2ca02c' dt 2"),
)


def write_cdf_plot(r, out_dir, png):
    """gnuplot script drawing the round-trip CDFs (left) and their tails, 1 - CDF (right), from the
    benchmarks' own .cdf files. Returns the script's path, or None (and removes a stale script)
    when this run wrote no CDFs."""
    gp = out_dir + "/latency_cdf.gp"
    series = [(r.cdfs[name][0], label, style) for name, label, style in CDF_SERIES if name in r.cdfs]
    if not series:
        if os.path.exists(gp):
            os.remove(gp)
        return None

    def plot(column):
        return ", \\\n     ".join("'%s' using 1:%s with steps lw 2 %s title '%s'" % (path, column, style, label)
                                    for path, label, style in series)

    with open(gp, "w") as f:
        f.write("""set terminal pngcairo size 1300,640 enhanced font 'DejaVu Sans,10'
set output '%s'
set multiplot layout 1,2 margins 0.06,0.98,0.22,0.9 spacing 0.08 title 'pkrt round-trip latency, CPU backend (one run, %s; one sample per round trip)'
set logscale x
set xlabel 'round trip (ns)'
set format x '10^{%%T}'
set grid xtics ytics mxtics
set key at screen 0.5, screen 0.01 center bottom
set title 'CDF'
set ylabel 'fraction of round trips <= x'
set yrange [0:1]
plot %s
unset key
set title 'tail: 1 - CDF'
set logscale y
set format y '10^{%%T}'
set ylabel 'fraction of round trips > x'
set yrange [1e-5:1]
plot %s
unset multiplot
""" % (png, r.context.get("date", "")[:10], plot("2"), plot("(1-$2)")))
    return gp


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results")
    ap.add_argument("--markdown", required=True)
    ap.add_argument("--plot-data", required=True, help="directory for the .dat and .gp files")
    ap.add_argument("--png", default="bench/snapshot_latency.png")
    ap.add_argument("--cdf-dir", help="the benchmarks' .cdf files ($PKRT_BENCH_CDF_DIR); default: bench-cdf "
                                       "next to RESULTS.json")
    ap.add_argument("--cdf-png", default="bench/latency_cdf.png")
    ap.add_argument("--command", default="bench/report.sh")
    args = ap.parse_args()
    try:
        with open(args.results) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        print("report.py: cannot read %s: %s" % (args.results, e), file=sys.stderr)
        return 2
    r = Results(doc)
    if not r.rows:
        print("report.py: %s holds no benchmark results" % args.results, file=sys.stderr)
        return 2
    r.load_cdfs(args.cdf_dir or os.path.join(os.path.dirname(os.path.abspath(args.results)), "bench-cdf"))
    rows = build_rows(r)
    cdf_gp = write_cdf_plot(r, args.plot_data, args.cdf_png)
    cdf_png = None if cdf_gp is None else os.path.relpath(args.cdf_png, os.path.dirname(os.path.abspath(args.markdown)))
    write_markdown(r, rows, args.markdown, args.command, os.path.relpath(args.results), cdf_png)
    write_plot(r, args.plot_data, args.png)
    for row in rows:
        if row["kind"] == "target":
            rv = "n/a" if row["ratio"] is None else "%.3f" % row["ratio"]
            print("%-4s %-7s %s" % (row["result"], rv, row["figure"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
