#!/usr/bin/env python3
"""Runs the libFuzzer targets of every stage (built by the fuzz preset) and reports them.

The targets are the lines of BUILD_DIR/fuzz-targets.txt ("<stage> <target> <binary> <corpus>"),
which tests/fuzz/CMakeLists.txt writes from its one list. Each run starts from a copy of the
committed corpus (new inputs stay in the build directory) and fails on a crash, a leak, an
UBSan report, or one input taking more than a second. A timeout whose input runs fast on its
own was the machine's load, not the input: the target then resumes for the rest of its budget.
Prints executions per second and in total for every target; the exit status is non-zero if
any target failed.

    run.py --seconds 60           every target for a minute, two at a time
    run.py --runs 10000000        every target for ten million executions
    run.py --merge SEED_DIR       minimise SEED_DIR plus the committed corpora into the corpora
"""
import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

ENV = {
    # Leaks are reported after every input that allocated more than it freed. No fill of new
    # blocks and a small quarantine: each input builds a stream and its buffers afresh, and
    # the defaults spend most of the time in page faults.
    "ASAN_OPTIONS": "detect_leaks=1:max_malloc_fill_size=0:quarantine_size_mb=16:"
                    "allocator_may_return_null=0:abort_on_error=0",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
}
LIBFUZZER = ["-timeout=1", "-error_exitcode=77", "-timeout_exitcode=78", "-detect_leaks=1",
             "-rss_limit_mb=2048", "-max_len=4096", "-print_final_stats=1", "-close_fd_mask=1"]


def targets(build_dir, only):
    manifest = pathlib.Path(build_dir) / "fuzz-targets.txt"
    if not manifest.exists():
        sys.exit(f"{manifest} is missing: configure and build the fuzz preset first")
    rows = [line.split() for line in manifest.read_text().splitlines() if line.strip()]
    return [r for r in rows if not only or re.search(only, f"{r[0]}-{r[1]}")]


def start(row, args, work, resumed=None):
    """Starts one target for the whole budget, or, with `resumed` (the job a busy-machine
    timeout ended), for what is left of it, on the corpus that job had grown."""
    stage, target, binary, corpus = row
    name = f"{stage}-{target}"
    run_corpus = work / "corpus" / name
    if not run_corpus.exists():
        shutil.copytree(corpus, run_corpus) if pathlib.Path(corpus).exists() else run_corpus.mkdir(
            parents=True)
    artifacts = work / "artifacts"
    artifacts.mkdir(exist_ok=True)
    done = resumed["done"] if resumed else 0
    begin = resumed["begin"] if resumed else time.time()
    command = ["nice", binary, *LIBFUZZER, budget_left(args, done, begin),
               f"-artifact_prefix={artifacts}/{name}-", str(run_corpus)]
    log = open(work / f"{name}.log", "a" if resumed else "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, **ENV})
    return {"name": name, "row": row, "process": process, "log": work / f"{name}.log",
            "begin": begin, "command": command, "done": done,
            "resumes": resumed["resumes"] + 1 if resumed else 0}


def budget_left(args, done, begin):
    """What is left of a target's budget (`done` runs so far, begun at `begin`) as libFuzzer's
    option, or None once nothing is."""
    if args.runs:
        return f"-runs={args.runs - done}" if done < args.runs else None
    left = round(args.seconds - (time.time() - begin))
    return f"-max_total_time={left}" if left >= 1 else None


def stats(log_path):
    """The executions of the last run in a target's log (a resumed run appends to it)."""
    text = log_path.read_text(errors="replace")
    found = dict(re.findall(r"^stat::(\w+):\s+(\d+)", text, re.M))
    return int(found.get("number_of_executed_units", 0)), text


def slow_alone(binary, artifact):
    """Whether a timeout's input is slow on its own: the slowest of three reruns, in ms. An
    input that libFuzzer's alarm caught only because the machine was busy runs fast here."""
    times = []
    for _ in range(3):
        out = subprocess.run([binary, "-timeout=10", artifact], capture_output=True, text=True,
                             env={**os.environ, **ENV}).stderr
        m = re.search(r"Executed .* in (\d+) ms", out)
        times.append(int(m.group(1)) if m else 10_000)
    return max(times)


def fuzz(args):
    work = pathlib.Path(args.build_dir) / "fuzz-work"
    work.mkdir(exist_ok=True)
    queue, running, results = targets(args.build_dir, args.only), [], []
    while queue or running:
        while queue and len(running) < args.jobs:
            running.append(start(queue.pop(0), args, work))
        time.sleep(0.5)
        for job in [j for j in running if j["process"].poll() is not None]:
            running.remove(job)
            executions, text = stats(job["log"])
            executions += job["done"]
            seconds = time.time() - job["begin"]
            code = job["process"].returncode
            skipped = "fuzz target skipped" in text
            ok = code == 0
            artifact = re.findall(r"Test unit written to (\S+)", text)
            if code == 78 and artifact:
                # A timeout counts only if the input is slow on its own, not on a busy machine.
                binary = job["command"][1]
                ms = slow_alone(binary, artifact[-1])
                ok = ms < 1000
                print(f"{job['name']}: timeout; alone the input takes {ms} ms: "
                      f"{'not reproduced, the machine was busy' if ok else 'confirmed'}")
                # The rest of the budget runs on: a long campaign on a laptop in use would
                # otherwise end at the first alarm the machine's load set off.
                job["done"] = executions
                if ok and job["resumes"] < 20 and budget_left(args, executions, job["begin"]):
                    print(f"{job['name']}: resumed after {executions} runs", flush=True)
                    running.append(start(job["row"], args, work, resumed=job))
                    continue
            results.append((job["name"], executions, seconds, ok, skipped))
            status = ("skipped" if skipped else "ok" if code == 0 else
                      "ok (busy-machine timeout)" if ok else f"FAILED (exit {code})")
            if job["resumes"]:
                status += f", resumed {job['resumes']}x after busy-machine timeouts"
            print(f"{job['name']:28} {executions:>11} runs {seconds:7.0f} s "
                  f"{executions / max(seconds, 1e-9):>9.0f}/s  {status}", flush=True)
            if code != 0 and not ok:
                print("\n".join(text.splitlines()[-60:]))
    failed = [r for r in results if not r[3]]
    total = sum(r[1] for r in results)
    print(f"{len(results)} targets, {total} executions, {len(failed)} failed")
    return 1 if failed else 0


def merge(args):
    """Each target's corpus becomes the smallest set of inputs, committed corpus and seeds
    together, that keeps the coverage of every stage's binary."""
    by_target = {}
    for stage, target, binary, corpus in targets(args.build_dir, args.only):
        by_target.setdefault((target, corpus), []).append(binary)
    for (target, corpus), binaries in by_target.items():
        corpus = pathlib.Path(corpus)
        sources = [d for d in (corpus, pathlib.Path(args.merge) / target) if d.exists()]
        with tempfile.TemporaryDirectory() as fresh:
            for binary in binaries:
                subprocess.run([binary, "-merge=1", *LIBFUZZER[:1], "-max_len=4096", fresh,
                                *map(str, sources)], env={**os.environ, **ENV}, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if corpus.exists():
                shutil.rmtree(corpus)
            shutil.copytree(fresh, corpus)
        print(f"{target}: {len(list(corpus.iterdir()))} inputs")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", default="build/fuzz")
    parser.add_argument("--seconds", type=int, default=60, help="per target")
    parser.add_argument("--runs", type=int, default=0, help="per target, instead of --seconds")
    parser.add_argument("--jobs", type=int, default=2, help="targets run at the same time")
    parser.add_argument("--only", help="regex on <stage>-<target>, e.g. 'stage3-request'")
    parser.add_argument("--merge", metavar="SEED_DIR")
    args = parser.parse_args()
    sys.exit(merge(args) if args.merge else fuzz(args))


if __name__ == "__main__":
    main()
