#!/usr/bin/env python3
"""Builds the parts of the docs site that Doxygen and diff2html do not.

    site.py pages   --work DIR --bench DIR --site DIR   prepare the course pages for Doxygen
    site.py landing --site DIR --bench DIR              write the landing page, SITE/index.html

`pages` copies docs/stageN.md into WORK/pages/, replacing each line of the form

    <!-- bench: KEYWORD | caption -->

with the benchmark plots whose file names contain KEYWORD (copied next to the pages, where
Doxygen's IMAGE_PATH finds them), or, when the benchmark has not been run, with the command
that makes them. It also copies the benchmark results into SITE/bench/.

`landing` writes the landing page: one row per stage with direct links to the annotated
source of the loop and of IOStream's read path, the course page, and the diff pages. It also
renders docs/running.md ("Running it like FriendFeed") to SITE/running.html, with the same
bench markers filled in from SITE/bench/.
"""

import argparse
import html
import os
import re
import shutil
import subprocess
import sys

DOCS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS_DIR)

# The stages, oldest first: directory, course page, Tornado release, date, one-line design.
STAGES = [
    ("stage0-pre1.0", "stage0", "Tornado 0.1", "2afa9734", "2009",
     "An IOLoop singleton over epoll (select as the fallback), handlers by fd, timeouts in a "
     "sorted list; an IOStream over immutable-string buffers; HTTPServer.listen(port)."),
    ("stage1-v1.0", "stage1", "Tornado 1.0", "v1.0.0", "2010",
     "bind() + start(num_processes) prefork, PeriodicCallback, httputil.HTTPHeaders with "
     "repeated headers, a waker that works."),
    ("stage2-v2.0", "stage2", "Tornado 2.0", "v2.0.0", "2011",
     "IOStream buffers become deques of chunks with merge_prefix; eager reads, deferred "
     "callbacks; a FIFO callback list and a timeout heap with lazy cancellation."),
    ("stage3-configurable", "stage3", "Tornado 3.0", "v3.0.0", "2013",
     "Configurable IOLoop backends (epoll, poll, select) behind PollIOLoop; TCPServer, "
     "netutil, process.fork_processes; lazy registration and the write fast path."),
]

# Where the loop and the read path start, searched in this order in each stage's sources.
LOOP_FUNCTIONS = ["PollIOLoop::start", "IOLoop::start"]
READ_PATH = [  # (function, what it is)
    ("IOStream::read_until", "read_until(): the entry point"),
    ("IOStream::try_inline_read_", "try_inline_read_(): the fast path"),
    ("IOStream::handle_read_", "handle_read_(): READ events"),
    ("IOStream::read_to_buffer_", "read_to_buffer_(): socket to buffer"),
    ("IOStream::read_from_buffer_", "read_from_buffer_(): buffer to callback"),
]

PLOT_EXTENSIONS = (".svg", ".png")


def diff_name(old, new):
    """The file name of the side-by-side diff page of two stages."""
    return f"{old}--{new}.html"


def bench_plots(bench_dir):
    """The plots the benchmark wrote, as paths relative to its directory (plots/ included)."""
    found = []
    for base, _, files in os.walk(bench_dir):
        for name in files:
            if name.endswith(PLOT_EXTENSIONS):
                found.append(os.path.relpath(os.path.join(base, name), bench_dir))
    return sorted(found)


def bench_ready(bench_dir):
    return os.path.isfile(os.path.join(bench_dir, "results.md"))


# --- pages --------------------------------------------------------------------------------

BENCH_MARKER = re.compile(r"^\s*<!--\s*bench:\s*([^|>]+?)\s*(?:\|\s*(.*?))?\s*-->\s*$")


def bench_block(keyword, caption, bench_dir, work_dir):
    plots = [p for p in bench_plots(bench_dir) if keyword.lower() in os.path.basename(p).lower()]
    if bench_ready(bench_dir) and plots:
        lines = []
        for plot in plots:
            name = os.path.basename(plot)
            shutil.copy(os.path.join(bench_dir, plot), os.path.join(work_dir, name))
            title = caption or name
            lines.append(f'\\image html {name} "{title} ({name})"\n')
            lines.append("\n")
        lines.append("The full tables are in the <a href=\"../bench/results.md\">benchmark "
                     "results</a> (made by `make bench`).\n")
        return lines
    what = caption or keyword
    if bench_ready(bench_dir):
        return [
            f"> **Plot: {what}.** The last benchmark run made no plot named after "
            f"\"{keyword}\"; see the <a href=\"../bench/results.md\">benchmark results</a> "
            "and the plots on the <a href=\"../index.html\">course's front page</a>.\n"]
    return [
        f"> **Plot: {what}.** The benchmark has not been run on this machine yet. "
        "Run `make bench` (about 15 minutes; `make bench-quick` takes about one), then "
        "`make docs`: the plot appears here, taken from `build/bench/`.\n"]


def cmd_pages(args):
    pages_dir = os.path.join(args.work, "pages")
    os.makedirs(pages_dir, exist_ok=True)
    for _, page, *_ in STAGES:
        src = os.path.join(DOCS_DIR, page + ".md")
        out = []
        with open(src, encoding="utf-8") as f:
            for line in f:
                m = BENCH_MARKER.match(line)
                if m:
                    out.extend(bench_block(m.group(1), m.group(2), args.bench, pages_dir))
                else:
                    out.append(line)
        with open(os.path.join(pages_dir, page + ".md"), "w", encoding="utf-8") as f:
            f.writelines(out)
    if bench_ready(args.bench):
        # The results with their plots, keeping the layout results.md links to.
        for base, _, files in os.walk(args.bench):
            for name in files:
                if name.endswith(PLOT_EXTENSIONS + (".md", ".json", ".txt", ".csv")):
                    rel = os.path.relpath(os.path.join(base, name), args.bench)
                    dest = os.path.join(args.site, "bench", rel)
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    shutil.copy(os.path.join(base, name), dest)


# --- running.html -------------------------------------------------------------------------

def write_running_page(site):
    """docs/running.md as SITE/running.html, rendered by cmark-gfm (Debian's cmark-gfm)."""
    with open(os.path.join(DOCS_DIR, "running.md"), encoding="utf-8") as f:
        lines = f.readlines()
    out = []
    for line in lines:
        m = BENCH_MARKER.match(line)
        if not m:
            out.append(line)
            continue
        keyword, caption = m.group(1), m.group(2) or m.group(1)
        bench = os.path.join(site, "bench")
        plots = [p for p in bench_plots(bench) if keyword.lower() in os.path.basename(p).lower()]
        if plots:
            out.extend(f'<figure><img src="bench/{html.escape(p)}" alt="{html.escape(caption)}">'
                       f"<figcaption>{html.escape(caption)} ({html.escape(p)})</figcaption>"
                       "</figure>\n\n" for p in plots)
        else:
            out.append(f"> **Plot: {caption}.** The benchmark has not been run on this machine "
                       "yet: `make bench` (or `make bench-quick`), then `make docs`.\n\n")
    # --unsafe keeps the page's own HTML (links, figures); the page is ours, not a reader's.
    body = subprocess.run(["cmark-gfm", "--unsafe", "-e", "table"], input="".join(out),
                          capture_output=True, text=True, check=True).stdout
    with open(os.path.join(site, "running.html"), "w", encoding="utf-8") as f:
        f.write(RUNNING_TEMPLATE.format(body=body))


RUNNING_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tornado-stages: running it like FriendFeed</title>
<link rel="stylesheet" href="landing.css">
<style>
  pre {{ background: #f4f4f4; padding: 0.6em 0.9em; overflow-x: auto; }}
  pre code {{ padding: 0; background: none; }}
  blockquote {{ border-left: 4px solid #ccc; margin-left: 0; padding-left: 1em; }}
  figure img {{ max-width: 100%; }}
</style>
</head>
<body class=page>
{body}
</body>
</html>
"""


# --- landing ------------------------------------------------------------------------------

def find_definition(stage, function):
    """(file, line) of `function`'s definition in a stage's .cc files, or None."""
    cls, name = function.split("::")
    pattern = re.compile(r"^\S.*\b" + re.escape(cls) + r"::" + re.escape(name) + r"\(")
    for base, _, files in sorted(os.walk(os.path.join(ROOT, stage))):
        for fname in sorted(files):
            if not fname.endswith(".cc"):
                continue
            path = os.path.join(base, fname)
            with open(path, encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    if pattern.match(line):
                        return os.path.relpath(path, os.path.join(ROOT, stage)), number
    return None


def source_page(relpath):
    """Doxygen's name for the annotated source page of a file."""
    name = os.path.basename(relpath)
    return name.replace("_", "__").replace(".", "_8") + "_source.html"


def source_link(site, stage, function):
    found = find_definition(stage, function)
    if not found:
        return None
    relpath, line = found
    page = source_page(relpath)
    anchor = f"l{line:05d}"
    path = os.path.join(site, stage, page)
    if not os.path.isfile(path):
        sys.exit(f"site.py: Doxygen made no source page {path} for {function}")
    with open(path, encoding="utf-8") as f:
        if f'id="{anchor}"' not in f.read():
            sys.exit(f"site.py: {stage}/{page} has no line anchor {anchor} for {function}")
    return f"{stage}/{page}#{anchor}", relpath, line, function


def diff_anchors(site, old, new):
    """Maps each file of a diff page (its path inside the stage) to its anchor on the page."""
    anchors = {}
    path = os.path.join(site, "diffs", diff_name(old, new))
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for anchor, label in re.findall(r'<a href="#(d2h-[0-9a-z]+)" class="d2h-file-name">([^<]*)<',
                                    text):
        label = html.unescape(label)
        m = re.match(r"^\{.*? → .*?\}/(.*)$", label)
        rel = m.group(1) if m else label.split("/", 1)[-1]
        anchors.setdefault(rel, anchor)
    return anchors


def link(href, text):
    return f'<a href="{html.escape(href, quote=True)}">{html.escape(text)}</a>'


def cmd_landing(args):
    site = args.site
    present = [s for s in STAGES if os.path.isdir(os.path.join(site, s[0]))]
    rows = []
    for i, (stage, page, release, ref, year, design) in enumerate(present):
        prev = present[i - 1][0] if i > 0 else None
        nxt = present[i + 1][0] if i + 1 < len(present) else None

        def changed(relpath):
            """A link to `relpath` on the diff page that brought this stage (or, for the first
            stage, on the diff page that changed it next)."""
            old, new = (prev, stage) if prev else (stage, nxt)
            if not new:
                return ""
            anchor = diff_anchors(site, old, new).get(relpath)
            href = f"diffs/{diff_name(old, new)}" + (f"#{anchor}" if anchor else "")
            verb = "changed by" if prev else "next changed by"
            if not anchor:
                return f"<br><span class=chg>unchanged in {link(href, old + ' → ' + new)}</span>"
            return (f"<br><span class=chg>{verb} "
                    f"{link(href, relpath + ' in ' + old + ' → ' + new)}</span>")

        loop = next(filter(None, (source_link(site, stage, f) for f in LOOP_FUNCTIONS)), None)
        if not loop:
            sys.exit(f"site.py: no IOLoop start() definition found in {stage}")
        href, loop_file, loop_line, loop_function = loop
        cells_loop = (f"{link(href, loop_function + '()')}"
                      f"<br><span class=where>{html.escape(loop_file)}:{loop_line}</span>"
                      f"{changed(loop_file)}")
        read_items = []
        read_file = None
        for function, label in READ_PATH:
            found = source_link(site, stage, function)
            if found:
                read_file = found[1]
                read_items.append(f"<li>{link(found[0], label)}</li>")
        if not read_items:
            sys.exit(f"site.py: no IOStream read path found in {stage}")
        cells_read = (f"<span class=where>{html.escape(read_file)}</span>"
                      f"<ul>{''.join(read_items)}</ul>{changed(read_file)}")
        original = f"https://github.com/tornadoweb/tornado/tree/{ref}/tornado"
        rows.append(f"""
<tr>
  <th>{link(stage + '/index.html', stage)}<br><span class=rel>{release} ({year})</span></th>
  <td>{html.escape(design)}<br>
      {link(stage + '/index.html', 'Course page')} ·
      {link(stage + '/annotated.html', 'Classes')} ·
      {link(stage + '/files.html', 'Files')} ·
      <a class=ext href="{original}">Tornado {html.escape(ref)} source</a></td>
  <td>{cells_loop}</td>
  <td>{cells_read}</td>
  <td>{link('diffs/' + diff_name(prev, stage), prev + ' → ' + stage) if prev else 'first stage'}</td>
</tr>""")

    diffs = []
    for (old, *_), (new, *_) in zip(present, present[1:]):
        diffs.append(f"<li>{link('diffs/' + diff_name(old, new), old + ' → ' + new)}</li>")

    bench = os.path.join(site, "bench")
    if os.path.isfile(os.path.join(bench, "results.md")):
        plots = "".join(
            f'<figure><img src="bench/{html.escape(p)}" alt="{html.escape(p)}">'
            f"<figcaption>{html.escape(os.path.basename(p))}</figcaption></figure>"
            for p in bench_plots(bench))
        extra = " · ".join(link("bench/" + n, n) for n in sorted(os.listdir(bench))
                           if n.endswith((".md", ".json", ".txt", ".csv"))
                           and os.path.isfile(os.path.join(bench, n)))
        with open(os.path.join(bench, "results.md"), encoding="utf-8") as f:
            results = f.read()
        with open(os.path.join(bench, "results.html"), "w", encoding="utf-8") as f:
            f.write(RESULTS_TEMPLATE.format(results=html.escape(results)))
        extra = link("bench/results.html", "the tables") + " · " + extra
        bench_html = (f"<p>The latest benchmark run on this machine: {extra}.</p>{plots}"
                      "<p>Run <code>make bench</code> again, then <code>make docs</code>, "
                      "to refresh them.</p>")
    else:
        bench_html = ("<p>The benchmark has not been run on this machine yet. Run "
                      "<code>make bench</code> (the full run, about 15 minutes on 2 cores) or "
                      "<code>make bench-quick</code> (about a minute), then <code>make "
                      "docs</code>: the plots and tables appear here and on each stage's "
                      "course page. They are written to <code>build/bench/</code>.</p>")

    page = TEMPLATE.format(rows="".join(rows), diffs="".join(diffs), bench=bench_html)
    with open(os.path.join(site, "index.html"), "w", encoding="utf-8") as f:
        f.write(page)
    shutil.copy(os.path.join(DOCS_DIR, "landing.css"), os.path.join(site, "landing.css"))
    write_running_page(site)


TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tornado-stages: the course</title>
<link rel="stylesheet" href="landing.css">
</head>
<body>
<h1>tornado-stages</h1>
<p class=lead>How an event-driven web server is built, told through four historical designs of
<a class=ext href="https://github.com/tornadoweb/tornado">Tornado</a>'s server core, each one
re-implemented in C++20. Every stage serves the same course app and passes the same tests, so
the differences you read and measure are the differences between the designs.</p>

<h2>How to read the course</h2>
<ol>
<li>Start with a stage's <b>course page</b>: what the design is, why it was made, the order to
read its files in, its historical weaknesses, and three exercises.</li>
<li>Read the <b>annotated source</b>. Every class and public function names the Tornado function
it reproduces and links to it, so you can keep the Python open beside the C++. Function names
in the source are links; each documented function has call and caller graphs.</li>
<li>Read the <b>diff</b> to the next stage: it shows only what that Tornado release changed.
In a terminal: <code>make diff FROM=stage1-v1.0 TO=stage2-v2.0</code>.</li>
<li>Run the <b>benchmark</b> and see the weaknesses as numbers.</li>
</ol>

<h2>The stages</h2>
<table class=stages>
<thead><tr><th>Stage</th><th>Design</th><th>The loop: IOLoop::start</th>
<th>IOStream's read path</th><th>Diff from the previous stage</th></tr></thead>
<tbody>{rows}
</tbody>
</table>
<p class=note>The "changed by" links open the diff page at that file.</p>

<h2>Running it like FriendFeed</h2>
<p><a href="running.html">Running it like FriendFeed</a>: stages 1-3 in development with
Tornado 1.0's autoreload (<code>make serve ARGS=--autoreload</code>, a rebuild restarts the
server) and in production as FriendFeed ran Tornado, nginx in front of single-process
instances that Supervisor keeps alive (<code>make deploy STAGE=stage3-configurable N=4</code>),
with the benchmark of that setup against prefork.</p>

<h2>Stage diffs</h2>
<ul>{diffs}</ul>
<p>Each stage starts as a copy of the one before and changes only what that Tornado release
changed, so a diff reads as the story of the release.</p>

<h2>Benchmark results</h2>
{bench}

<h2>Building these pages</h2>
<p><code>make docs</code> builds this site under <code>build/docs/</code> (Doxygen for each
stage, diff2html for the diffs) and checks every internal link.</p>
</body>
</html>
"""


RESULTS_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tornado-stages: benchmark results</title>
<link rel="stylesheet" href="../landing.css">
</head>
<body>
<p><a href="../index.html">tornado-stages: the course</a></p>
<h1>Benchmark results</h1>
<p>The tables of the last <code>make bench</code> run, as the benchmark wrote them
(<a href="results.md">results.md</a>); the plots are on the front page.</p>
<pre class=results>{results}</pre>
</body>
</html>
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pages")
    p.add_argument("--work", required=True)
    p.add_argument("--bench", required=True)
    p.add_argument("--site", required=True)
    p.set_defaults(func=cmd_pages)
    p = sub.add_parser("landing")
    p.add_argument("--site", required=True)
    p.add_argument("--bench", required=True)
    p.set_defaults(func=cmd_landing)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
