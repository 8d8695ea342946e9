#!/usr/bin/env python3
"""bench/mpi_report.py: writes the "Scale-out over MPI ranks" section of BENCHMARKS.md from one
run of `mpirun -np 4 pkrt_mpi_bench --benchmark_out=FILE --benchmark_out_format=json`
(bench/report.sh runs it). Replaces the section if present, else appends it; the rest of the
file is left as it is.

    python3 bench/mpi_report.py RESULTS.json BENCHMARKS.md [--command TEXT]
"""
import argparse
import json
import sys

BEGIN = "<!-- mpi-section: written by bench/mpi_report.py -->"
END = "<!-- end of mpi-section -->"


def rows_by_name(doc):
    out = {}
    for b in doc.get("benchmarks", []):
        name = b.get("run_name") or b.get("name", "")
        # Fixed iterations and manual time add suffixes; the report keys on the arguments.
        key = name.split("/iterations:")[0]
        out[key] = b
    return out


def section(doc, command):
    r = rows_by_name(doc)
    ctx = doc.get("context", {})
    lines = [BEGIN, "## Scale-out over MPI ranks", ""]
    lines.append(
        "`pkrt_mpi_bench` under `%s` (%s, %s CPUs, load average at start %s). heat2d, 512 x 512 cells in 16 tiles, "
        "tiles partition, CPU backend with one worker thread per rank; each iteration runs 50 epochs with the "
        "K2K exchange every epoch (`ShardedRuntime::run_until`). The baseline is the 1-rank run of the same "
        "binary, same run. **The development machine has 2 cores: 4 ranks (each with a worker, a pump and the "
        "exchanging thread) are oversubscribed, so the 4-rank rows measure contention, not scaling.**" % (
            command, ctx.get("date", "?")[:19], ctx.get("num_cpus", "?"),
            ", ".join("%.2f" % v for v in ctx.get("load_avg", [])) or "?"))
    lines.append("")
    lines.append("| ranks | K2K delay | epochs/s | vs 1 rank | K2K between ranks per epoch | MPI messages per epoch "
                 "| host time in exchanges |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    base = r.get("BM_Heat2dOverRanks/1/1", {}).get("items_per_second")
    for ranks, delay in ((1, 1), (2, 1), (4, 1), (2, 2), (4, 2)):
        b = r.get("BM_Heat2dOverRanks/%d/%d" % (ranks, delay))
        if b is None or b.get("error_occurred"):
            why = "not run" if b is None else b.get("error_message", "error")
            lines.append("| %d | %d | %s |  |  |  |  |" % (ranks, delay, why))
            continue
        eps = b.get("items_per_second", 0.0)
        ratio = "%.2fx" % (eps / base) if base else "n/a"
        lines.append("| %d | %d | %.0f | %s | %.0f messages, %.1f KiB | %.0f | %.0f%% |" % (
            ranks, delay, eps, ratio, b.get("k2k_messages_per_epoch", 0), b.get("k2k_bytes_per_epoch", 0) / 1024.0,
            b.get("mpi_messages_per_epoch", 0), 100 * b.get("exchange_share", 0)))
    lines.append("")
    lines.append(
        "MPI messages per epoch: point-to-point messages of all ranks together, one per rank pair with K2K, "
        "forwarded commands or replies for each other; besides them every rank joins one 8-byte "
        "`MPI_Iallreduce` per epoch (the exchange's consensus, which also carries failures). "
        "Host time in exchanges: the slowest rank's time inside the exchange (sends, receives and the consensus, "
        "which include waiting for peers, and the delivery) over the wall time. With delay 1 the grid waits for "
        "it; with delay 2 the grid computes the next epoch meanwhile, so a high share there costs little.")
    lines.append("")
    lines.append("| ranks | coordinated checkpoint (16 tiles, 2 MiB) | state saved per second |")
    lines.append("| --- | --- | --- |")
    for ranks in (1, 2, 4):
        b = r.get("BM_GlobalCheckpoint/%d" % ranks)
        if b is None or b.get("error_occurred"):
            lines.append("| %d | %s |  |" % (ranks, "not run" if b is None else b.get("error_message", "error")))
            continue
        lines.append("| %d | %.1f ms | %.0f MiB/s |" % (ranks, b.get("real_time", 0), b.get("bytes_per_second", 0) / 2**20))
    lines.append("")
    lines.append(
        "A checkpoint: every rank's set made durable (snapshot, zstd, files and manifest fsync'ed), then rank 0's "
        "global manifest. The cost model for a real cluster is in docs/scale-out.md.")
    lines.append(END)
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results")
    ap.add_argument("markdown")
    ap.add_argument("--command", default="mpirun -np 4 pkrt_mpi_bench")
    args = ap.parse_args()
    try:
        with open(args.results) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        print("mpi_report.py: cannot read %s: %s" % (args.results, e), file=sys.stderr)
        return 2
    try:
        with open(args.markdown) as f:
            text = f.read()
    except OSError:
        text = ""
    new = section(doc, args.command)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + new + tail
    else:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    with open(args.markdown, "w") as f:
        f.write(text)
    print("mpi_report.py: wrote the MPI section of %s" % args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
