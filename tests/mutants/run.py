#!/usr/bin/env python3
"""Mutation check of the suite: each mutant in mutants.py must make its tests fail.

The tree is copied (the files git tracks or would track, as they are in the working tree) to
build/mutants/src and built in build/mutants/src/build, so the real build is never touched. The
tests of every mutant first run on the unmutated copy and must pass there; then, one mutant at
a time, the snippet is replaced, only the mutant's targets are rebuilt, its tests run, and the
file is put back. A mutant whose tests still pass is "missed": a missing test.

  run.py [--only NAME[,NAME...]] [--list] [--jobs N] [--reuse-copy]

Exit status: 0 when every mutant is caught, 1 when one is missed or fails to build, 2 when a
snippet is not found or the unmutated tests fail.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from mutants import MUTANTS  # noqa: E402

WORK = os.path.join(ROOT, "build", "mutants")
SRC = os.path.join(WORK, "src")
# The copy's build directory sits where the dev preset puts it (build/ in the source tree) and
# is configured like the dev build, so compiler commands match the real build's and ccache
# (base_dir, no hash_dir) answers every file a mutant does not touch.
BUILD = os.path.join(SRC, "build")


def run(cmd, log, **kw):
    with open(log, "w") as out:
        return subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, **kw).returncode


def copy_tree():
    # Tracked files and new ones not ignored: the tree as it is being edited.
    listing = ["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    files = subprocess.run(listing, check=True, capture_output=True).stdout.decode().split("\0")
    # Files are replaced, not the directory: the build inside it stays, and copy2 keeps each
    # file's time, so only what changed since the last run is rebuilt.
    for f in files:
        if not f or not os.path.isfile(os.path.join(ROOT, f)):
            continue
        dest = os.path.join(SRC, f)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, f), dest)


def check_snippets(mutants):
    bad = []
    for m in mutants:
        path = os.path.join(SRC, m["file"])
        text = open(path, encoding="utf-8").read() if os.path.isfile(path) else None
        count = text.count(m["find"]) if text is not None else -1
        if count != 1:
            where = "file not found" if count < 0 else f"snippet found {count} times, not once"
            bad.append(f"  {m['name']}: {m['file']}: {where}:\n    {m['find']!r}")
    if bad:
        print("mutants.py is out of date with the code (update the snippets):", file=sys.stderr)
        print("\n".join(bad), file=sys.stderr)
        sys.exit(2)


def build(targets, jobs, log):
    return run(["cmake", "--build", BUILD, "-j", str(jobs), "--target", *targets], log)


def ctest(regex, jobs, log):
    # --no-tests=error: a regex that matches nothing must not count as a catch or a pass.
    return run(["ctest", "--test-dir", BUILD, "-R", regex, "-j", str(jobs), "--no-tests=error",
                "--output-on-failure"], log)


def tail(log, lines=30):
    with open(log, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated mutant names")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--reuse-copy", action="store_true",
                        help="keep build/mutants/src as it is instead of copying the tree again")
    args = parser.parse_args()

    mutants = MUTANTS
    if args.only:
        names = args.only.split(",")
        unknown = [n for n in names if n not in {m["name"] for m in MUTANTS}]
        if unknown:
            sys.exit(f"unknown mutant(s): {', '.join(unknown)}")
        mutants = [m for m in MUTANTS if m["name"] in names]
    if args.list:
        for m in mutants:
            print(f"{m['name']:40} {m['file']:32} {m['what']}")
        return 0

    started = time.monotonic()
    os.makedirs(WORK, exist_ok=True)
    if not (args.reuse_copy and os.path.isdir(SRC)):
        copy_tree()
    check_snippets(mutants)
    cmake_args = ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"] if shutil.which("ccache") else []
    cmake_args.append("-DTORNADO_WERROR=ON")
    log = os.path.join(WORK, "configure.log")
    if run(["cmake", "--preset", "dev", "-S", SRC, "-B", BUILD, *cmake_args], log) != 0:
        print(tail(log), file=sys.stderr)
        sys.exit("configure failed")

    targets = sorted({t for m in mutants for t in m["targets"]})
    print(f"building the unmutated copy: {' '.join(targets)}", flush=True)
    log = os.path.join(WORK, "baseline-build.log")
    if build(targets, args.jobs, log) != 0:
        print(tail(log), file=sys.stderr)
        sys.exit(2)
    # One ctest run per regex: ctest's regular expressions allow only a few groups.
    print("running their tests on the unmutated copy", flush=True)
    for regex in sorted({m["tests"] for m in mutants}):
        log = os.path.join(WORK, "baseline-tests.log")
        if ctest(regex, args.jobs, log) != 0:
            print(tail(log, 60), file=sys.stderr)
            print(f"the unmutated tree fails {regex}: a catch would mean nothing", file=sys.stderr)
            sys.exit(2)

    rows = []
    for m in mutants:
        path = os.path.join(SRC, m["file"])
        original = open(path, encoding="utf-8").read()
        t0 = time.monotonic()
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(original.replace(m["find"], m["replace"], 1))
            log = os.path.join(WORK, m["name"] + ".log")
            if build(m["targets"], args.jobs, log) != 0:
                result = "BUILD FAILED"
            else:
                result = "caught" if ctest(m["tests"], args.jobs, log) != 0 else "MISSED"
        finally:
            with open(path, "w", encoding="utf-8") as f:
                f.write(original)
        seconds = time.monotonic() - t0
        rows.append((m["name"], m["file"], result, seconds))
        print(f"  {m['name']}: {result} ({seconds:.0f} s; log {log})", flush=True)

    print()
    print(f"| {'mutant':40} | {'file':30} | {'result':12} | {'time':>6} |")
    print(f"|{'-' * 42}|{'-' * 32}|{'-' * 14}|{'-' * 8}|")
    for name, file, result, seconds in rows:
        print(f"| {name:40} | {file:30} | {result:12} | {seconds:5.0f}s |")
    caught = sum(1 for r in rows if r[2] == "caught")
    print(f"\n{caught} of {len(rows)} mutants caught in {time.monotonic() - started:.0f} s")
    return 0 if caught == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
