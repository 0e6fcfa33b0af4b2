#!/usr/bin/env python3
"""Builds the parts of the docs site that Doxygen and diff2html do not.

    site.py pages   --work DIR --bench DIR --site DIR   prepare the course pages for Doxygen
    site.py diff    --old A --new B --raw F --out F     a stage diff with paths inside the stage,
                                                        its files in the order of the story
    site.py post    --site DIR                          finish Doxygen's and diff2html's pages
    site.py landing --site DIR --bench DIR              write the landing page, SITE/index.html,
                                                        the results page and the reference pages
    site.py check   --site DIR                          fail on raw markup, badly sized plots and
                                                        anything that needs the network to render
    site.py screenshots --site DIR --out DIR            headless Chromium pictures of key pages

`pages` copies docs/stageN.md into WORK/pages/, replacing each line of the form

    <!-- bench: KEYWORD | caption -->

with the benchmark plots whose file names contain KEYWORD (copied next to the pages, where
Doxygen's IMAGE_PATH finds them), or, when the benchmark has not been run, with the command
that makes them. It also copies the benchmark results into SITE/bench/.

`landing` writes the landing page: one row per stage with direct links to the annotated
source of the loop and of IOStream's read path, the course page, and the diff pages; the
benchmark's results.md rendered by cmark-gfm; and the reference pages written in Markdown
beside this script (running, designs, exercises, glossary; their bench markers filled in
from SITE/bench/) plus one printable page of the four course pages.
"""

import argparse
import fnmatch
import glob
import html
import json
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

# Where each plot's table is on the results page (the headings cmark-gfm gives an id).
PLOT_SECTIONS = {"hello": "hello-world", "syscalls": "system-calls", "transfers": "transfers",
                 "pipelining": "pipelining", "idle": "idle-connections", "timers": "timers"}

# What each plot shows, in words: the caption under it on the landing page.
PLOT_CAPTIONS = {
    "hello": "Hello-world throughput of every stage and of the peers (wrk keep-alive GET /)",
    "syscalls": "System calls per request, by kind, for every stage and the peers",
    "transfers": "Transfer time against size, log-log: uploads and downloads per stage, "
                 "with slope-1 (linear) and slope-2 (quadratic) guides",
    "pipelining": "Pipelined GET / on one connection: microseconds per request, by burst size",
    "idle": "Latency of one GET / while N idle connections are open, per backend",
    "timers": "Timers: insert N, cancel half, run the rest (CPU seconds)",
}


def peers_measured(bench_dir):
    """Whether the last benchmark run measured the peers (real Tornado and nginx)."""
    try:
        with open(os.path.join(bench_dir, "results.json"), encoding="utf-8") as f:
            targets = [x.get("target", "") for x in
                       json.load(f)["workloads"].get("hello", {}).get("summary", [])]
    except (OSError, ValueError, KeyError):
        return False
    return any(t.startswith(("tornado", "nginx")) for t in targets)


def plot_caption(keyword, caption, bench_dir):
    """A caption that only speaks of the peers when they were measured."""
    caption = caption or PLOT_CAPTIONS.get(keyword, keyword)
    if keyword in ("hello", "syscalls") and not peers_measured(bench_dir):
        caption = re.sub(r",? and (of )?the peers| against real Tornado and nginx", "", caption)
        caption += " (the peers, real Tornado and nginx, were not run: make deps-peers)"
    return caption


def bench_block(keyword, caption, bench_dir, work_dir):
    plots = [p for p in bench_plots(bench_dir) if keyword.lower() in os.path.basename(p).lower()]
    section = PLOT_SECTIONS.get(keyword.lower(), "")
    results = '<a href="../bench/results.html' + (f"#{section}" if section else "") + '">'
    if bench_ready(bench_dir) and plots:
        lines = []
        for plot in plots:
            name = os.path.basename(plot)
            shutil.copy(os.path.join(bench_dir, plot), os.path.join(work_dir, name))
            title = plot_caption(keyword, caption, bench_dir).replace('"', "'")
            lines.append(f'\\image html {name} "{title}"\n')
            lines.append("\n")
        lines.append(f"The numbers behind the plot are in the {results}benchmark "
                     "results</a> (made by `make bench`).\n")
        return lines
    what = caption or keyword
    if bench_ready(bench_dir):
        return [
            f"> **Plot: {what}.** The last benchmark run made no plot named after "
            f"\"{keyword}\"; see the {results}benchmark results</a> "
            "and the plots on the <a href=\"../index.html\">course's front page</a>.\n"]
    return [
        f"> **Plot: {what}.** The benchmark has not been run on this machine yet. "
        "Run `make bench` (about 15 minutes; `make bench-quick` takes a few), then "
        "`make docs`: the plot appears here, taken from `build/bench/`.\n"]


# An inline code span holding a quote: Doxygen 1.9 reads `...' as its old `quoted' style
# and garbles the rest of the paragraph (code and text swapped, -- made a dash). A span of
# two backticks is never read that way, so such spans get two.
CODE_SPAN = re.compile(r"``[^`\n]+``|`([^`\n]+)`")


def fix_code_spans(lines):
    out, fenced = [], False
    for line in lines:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced:
            # Spans are paired from the left, as Markdown pairs them; only those holding a
            # quote change.
            line = CODE_SPAN.sub(lambda m: f"``{m.group(1)}``" if m.group(1) and "'" in
                                 m.group(1) else m.group(0), line)
        out.append(line)
    return out


def stage_nav(i):
    """Previous and next stage, the diffs on either side, the reference pages."""
    stage = STAGES[i][0]
    parts = []
    if i > 0:
        prev = STAGES[i - 1][0]
        parts.append(f'<a href="../{prev}/index.html">← previous stage: {prev}</a>')
        parts.append(f'<a href="../diffs/{diff_name(prev, stage)}">diff {prev} → {stage}</a>')
    parts.append('<a href="../index.html">all stages</a>')
    if i + 1 < len(STAGES):
        nxt = STAGES[i + 1][0]
        parts.append(f'<a href="../diffs/{diff_name(stage, nxt)}">diff {stage} → {nxt}</a>')
        parts.append(f'<a href="../{nxt}/index.html">next stage: {nxt} →</a>')
    parts += ['<a href="../designs.html">the four designs</a>',
              '<a href="../exercises.html">hints and answers</a>',
              '<a href="../glossary.html">glossary</a>']
    return f'<div class="stage-nav">{" · ".join(parts)}</div>\n'


def stage_sequence(bench_dir, short):
    """The measured calls of one keep-alive request of a stage, from results.json."""
    try:
        with open(os.path.join(bench_dir, "results.json"), encoding="utf-8") as f:
            rows = json.load(f)["workloads"].get("hello", {}).get("sequences") or []
    except (OSError, ValueError, KeyError):
        return None
    return next((x["calls"] for x in rows if x.get("stage") == short and x.get("calls")), None)


def sequence_block(short, bench_dir):
    """A Doxygen \\msc chart of the system calls of one keep-alive request, as measured."""
    calls = stage_sequence(bench_dir, short)
    if not calls:
        return ["> **Sequence: one keep-alive request's system calls.** The benchmark records "
                "it under `strace -f` (`make bench` or `make bench-quick`, then `make docs`).\n"]
    body = msc_arcs(calls, short)
    return ["The system calls of the second of two GET / on one keep-alive connection, as "
            f"this stage's server made them under `strace -f` in the last benchmark run "
            f"({len(calls)} calls; a crossed arrow failed with EAGAIN):\n", "\n",
            f"\\msc \"{short}: one keep-alive request, measured\"\n"] + body + [
            "\\endmsc\n", "\n"]


def msc_arcs(calls, short):
    lines = ['  hscale="1.4";\n',
             f'  server [label="{short} server"], kernel [label="kernel"];\n']
    for call in calls:
        label = call["text"].replace("\\", "\\\\").replace('"', '\\"')
        arrow = "-x" if call.get("failed") else "=>"
        lines.append(f'  server {arrow} kernel [label="{label}"];\n')
    return lines


def cmd_pages(args):
    pages_dir = os.path.join(args.work, "pages")
    os.makedirs(pages_dir, exist_ok=True)
    for i, (_, page, *_) in enumerate(STAGES):
        src = os.path.join(DOCS_DIR, page + ".md")
        out = []
        with open(src, encoding="utf-8") as f:
            for line in f:
                m = BENCH_MARKER.match(line)
                if m:
                    out.extend(bench_block(m.group(1), m.group(2), args.bench, pages_dir))
                elif line.strip() == "<!-- sequence -->":
                    out.extend(sequence_block(page, args.bench))
                elif line.startswith("Back to the <a href=\"../index.html\">"):
                    out.append(stage_nav(i))
                else:
                    out.append(line)
        out = fix_code_spans(out)
        out += ["\n", stage_nav(i)]
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


# --- diffs --------------------------------------------------------------------------------

# The order a release's story is told in: the loop, its backends, the stream, the server and
# its layers, the program, the examples; build files last.
STORY_ORDER = ["util.h", "util.cc", "ioloop.h", "ioloop.cc", "platform/", "iostream.h",
               "iostream.cc", "tcpserver.", "netutil.", "process.", "concurrent.",
               "httpserver.h", "httpserver.cc", "httputil.h", "httputil.cc", "main.cc",
               "examples/", "stage_features.h", "CMakeLists.txt"]


def story_key(path):
    for i, prefix in enumerate(STORY_ORDER):
        if path.startswith(prefix):
            return (i, path)
    return (len(STORY_ORDER) - 1.5, path)


def cmd_diff(args):
    """Rewrites `git diff --no-index OLD NEW`: paths inside the stage (so that a changed file
    is not shown as renamed), files in the order of the story."""
    with open(args.raw, encoding="utf-8") as f:
        text = f.read()
    blocks = re.split(r"(?m)^(?=diff --git )", text)
    out = []
    for block in blocks:
        if not block.startswith("diff --git "):
            continue
        for stage in (args.old, args.new):
            block = re.sub(r"(?m)^(diff --git .*|--- .*|\+\+\+ .*)$",
                           lambda m: m.group(1).replace(f"a/{stage}/", "a/")
                           .replace(f"b/{stage}/", "b/"), block)
        block = re.sub(r"(?m)^(similarity index|rename from|rename to) .*\n", "", block)
        m = re.match(r"diff --git a/(\S+) b/(\S+)", block)
        path = m.group(2) if m else ""
        # A file of the same path in both stages is a change, not a rename.
        block = re.sub(r"(?m)^diff --git a/(\S+) b/\S+$",
                       lambda m: f"diff --git a/{path} b/{path}", block, count=1)
        out.append((story_key(path), block))
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("".join(b for _, b in sorted(out)))


def diff_summary(old, new):
    """The newer stage's own account of what changed, rendered: its course page's section."""
    page = next(p for s, p, *_ in STAGES if s == new)
    with open(os.path.join(DOCS_DIR, page + ".md"), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"(?ms)^## What changed from the previous stage\n(.*?)(?=^## )", text)
    if not m:
        return ""
    section = m.group(1).strip()
    # The first paragraph links this very page; the rest is the summary.
    section = section.split("\n\n", 1)[1] if "\n\n" in section else section
    section = re.sub(r"\btornado::(\w+)", r"\1", section)
    return markdown(section)


def diff_stats(path):
    files, added, deleted = 0, 0, 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("diff --git "):
                files += 1
            elif line.startswith("+") and not line.startswith("+++ "):
                added += 1
            elif line.startswith("-") and not line.startswith("--- "):
                deleted += 1
    return files, added, deleted


# --- post: what Doxygen and diff2html leave to finish -----------------------------------

REF_OF = {stage: ref for stage, _, _, ref, *_ in STAGES}
TORNADO_REF = re.compile(r'(<a class="tornado-ref" href="https://github\.com/tornadoweb/tornado/'
                         r'blob/([^/"]+)/([^"#]+))(">[^<]*<code>([^<]*)</code></a>)')


def tornado_lines():
    """{(ref, file, function): line} from docs/tornado-lines.tsv, made once from Tornado's
    repository: the line where each function or class is defined at each stage's ref."""
    table = {}
    with open(os.path.join(DOCS_DIR, "tornado-lines.tsv"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            ref, path, function, number = line.rstrip("\n").split("\t")
            table[(ref, path, function)] = int(number)
    return table


def tornado_line(table, ref, path, function):
    """The line of `function`; a method not found on its class is looked up on the class's
    base (3.0's IOStream methods live on BaseIOStream), a missing name gives None."""
    if (ref, path, function) in table:
        return table[(ref, path, function)]
    method = function.rsplit(".", 1)[-1]
    if "." in function:
        for (r, p, f), number in sorted(table.items(), key=lambda x: x[1]):
            if r == ref and p == path and f.endswith("." + method):
                return number
    return None


def link_tornado_lines(site):
    table = tornado_lines()
    missing = set()
    for stage in REF_OF:
        for page in glob.glob(os.path.join(site, stage, "*.html")):
            with open(page, encoding="utf-8") as f:
                text = f.read()
            if "tornado-ref" not in text:
                continue

            def add_line(m):
                line = tornado_line(table, m.group(2), m.group(3), m.group(5))
                if line is None:
                    if m.group(5):
                        missing.add((m.group(2), m.group(3), m.group(5)))
                    return m.group(0)
                return f"{m.group(1)}#L{line}{m.group(4)}"
            new = TORNADO_REF.sub(add_line, text)
            if new != text:
                with open(page, "w", encoding="utf-8") as f:
                    f.write(new)
    for ref, path, function in sorted(missing):
        print(f"site.py: no line known for {path} {function} at {ref} "
              "(docs/tornado-lines.tsv): linked to the file", file=sys.stderr)


DIFF_CSS = """
body { margin: 0.6em 0.5em; }
nav.course, h1, p.howto, div.summary { margin-left: 1em; margin-right: 1em; }
div.summary { max-width: 70em; }
div.summary li { margin: 0.2em 0; }
/* Both sides must hold a 100-column line at 1,400 px: a smaller font, narrower margins. */
.d2h-diff-table { font-size: 10px; font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.d2h-code-side-line { padding: 0 0 0 3.3em; width: calc(100% - 3.3em); }
.d2h-code-side-linenumber { width: 3.1em; padding: 0 0.3em; }
.d2h-file-wrapper { margin-left: 0; margin-right: 0; }
.d2h-file-side-diff { overflow-x: auto; }
"""


def finish_diff(site, old, new, work):
    path = os.path.join(site, "diffs", diff_name(old, new))
    with open(path, encoding="utf-8") as f:
        text = f.read()
    # highlight.js's colours from the copy npm installed, not from a CDN.
    text = re.sub(r'<link rel="stylesheet" href="https://cdnjs\.cloudflare\.com/[^"]*'
                  r'highlight\.js/[^"]*/github\.min\.css" />',
                  '<link rel="stylesheet" href="highlight-github.min.css" />', text)
    i = [s for s, *_ in STAGES].index(new)
    old_ref, new_ref = REF_OF[old], REF_OF[new]
    nav = (f'<a href="../index.html">tornado-stages: all stages</a> · '
           f'<a href="../{old}/index.html">{old}</a> (<a href="../{old}/files.html">files</a>) · '
           f'<a href="../{new}/index.html">{new}</a> (<a href="../{new}/files.html">files</a>) · '
           f'<a class="ext" href="https://github.com/tornadoweb/tornado/compare/{old_ref}...'
           f'{new_ref}">Tornado\'s own changes, {old_ref}…{new_ref}</a>')
    if i > 1:
        before = STAGES[i - 2][0]
        nav += f' · <a href="{diff_name(before, old)}">← previous diff</a>'
    if i + 1 < len(STAGES):
        nav += f' · <a href="{diff_name(new, STAGES[i + 1][0])}">next diff →</a>'
    files, added, deleted = diff_stats(os.path.join(work, "diffs", f"{old}--{new}.diff"))
    summary = (f'<div class="summary"><h2>Summary</h2><p>{files} files changed, {added} lines '
               f'added, {deleted} removed; the files below follow the story (the loop, the '
               f'stream, the server, then the program and the build). What the release '
               f'changed, as <a href="../{new}/index.html">{new}</a>\'s course page tells '
               f'it:</p>{diff_summary(old, new)}</div>')
    text = text.replace("<!--course-nav-->", nav)
    text = text.replace("<!--course-summary-->", summary)
    text = text.replace("<!--course-command-->",
                        html.escape(f"make diff FROM={old} TO={new}"))
    if "Both sides must hold" not in text:  # After diff2html's own styles, to override them.
        head, tail = text.rsplit("</style>", 1)
        text = head + DIFF_CSS + "</style>" + tail
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def cmd_post(args):
    link_tornado_lines(args.site)
    stages = [s for s, *_ in STAGES if os.path.isdir(os.path.join(args.site, s))]
    css = os.path.join(DOCS_DIR, "node_modules", "highlight.js", "styles", "github.min.css")
    shutil.copy(css, os.path.join(args.site, "diffs", "highlight-github.min.css"))
    for old, new in zip(stages, stages[1:]):
        finish_diff(args.site, old, new, args.work)


def markdown(text):
    """Markdown to HTML with GitHub's tables, by cmark-gfm (Debian's package)."""
    proc = subprocess.run(["cmark-gfm", "--unsafe", "-e", "table", "-e", "autolink",
                           "-e", "strikethrough"], input=text, capture_output=True,
                          text=True, check=True)
    return proc.stdout



# --- bench markers in reference pages ---------------------------------------------------

def fill_bench_markers(text, bench_dir):
    """Each `<!-- bench: keyword | caption -->` line of a reference page becomes the plots of
    `bench_dir` (SITE/bench/) whose names hold the keyword, or a note that the benchmark has
    not run."""
    out = []
    for line in text.splitlines(keepends=True):
        m = BENCH_MARKER.match(line)
        if not m:
            out.append(line)
            continue
        keyword, caption = m.group(1), m.group(2) or m.group(1)
        plots = [p for p in bench_plots(bench_dir)
                 if keyword.lower() in os.path.basename(p).lower()]
        if plots:
            out.extend(f'<figure class="plot"><a href="bench/{html.escape(p)}">'
                       f'<img src="bench/{html.escape(p)}" alt="{html.escape(caption)}"></a>'
                       f"<figcaption>{html.escape(caption)}</figcaption></figure>\n\n"
                       for p in plots)
        else:
            out.append(f"> **Plot: {caption}.** The benchmark has not been run on this machine "
                       "yet: `make bench` (or `make bench-quick`), then `make docs`.\n\n")
    return "".join(out)


# --- landing ------------------------------------------------------------------------------

def find_definition(stage, function):
    """(file, line) of `function`'s definition in a stage's .cc files, or None. A method of
    IOStream may be defined on its base class (3.0's BaseIOStream)."""
    cls, name = function.split("::")
    pattern = re.compile(r"^\S.*\b(?:Base)?" + re.escape(cls) + r"::" + re.escape(name) + r"\(")
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
        figures = []
        order = list(PLOT_SECTIONS)
        for p in sorted(bench_plots(bench), key=lambda p: (
                order.index(os.path.splitext(os.path.basename(p))[0])
                if os.path.splitext(os.path.basename(p))[0] in order else len(order), p)):
            key = os.path.splitext(os.path.basename(p))[0]
            caption = plot_caption(key, None, bench)
            section = PLOT_SECTIONS.get(key)
            table = (f' · <a href="bench/results.html#{section}">the numbers</a>'
                     if section else "")
            figures.append(
                f'<figure class=plot><a href="bench/{html.escape(p)}">'
                f'<img src="bench/{html.escape(p)}" alt="{html.escape(caption)}"></a>'
                f"<figcaption>{html.escape(caption)}{table}</figcaption></figure>")
        plots = "".join(figures)
        extra = " · ".join(link("bench/" + n, n) for n in sorted(os.listdir(bench))
                           if n.endswith((".md", ".json", ".txt", ".csv"))
                           and os.path.isfile(os.path.join(bench, n)))
        write_results_page(bench)
        extra = link("bench/results.html", "the tables") + " · " + extra
        bench_html = (f"<p>The latest benchmark run on this machine: {extra}. Each plot "
                      f"opens at full size when clicked.</p>{plots}"
                      "<p>Run <code>make bench</code> again, then <code>make docs</code>, "
                      "to refresh them.</p>")
    else:
        bench_html = ("<p>The benchmark has not been run on this machine yet. Run "
                      "<code>make bench</code> (the full run, about 15 minutes on 2 cores) or "
                      "<code>make bench-quick</code> (a few minutes), then <code>make "
                      "docs</code>: the plots and tables appear here and on each stage's "
                      "course page. They are written to <code>build/bench/</code>.</p>")
    write_reference_pages(site)

    page = TEMPLATE.format(rows="".join(rows), diffs="".join(diffs), bench=bench_html)
    with open(os.path.join(site, "index.html"), "w", encoding="utf-8") as f:
        f.write(page)
    shutil.copy(os.path.join(DOCS_DIR, "landing.css"), os.path.join(site, "landing.css"))


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

<h2>For the lecture</h2>
<ul>
<li><a href="designs.html">The four designs side by side</a>: buffers, callbacks, timeouts,
poller, poll cap, accept and TLS of each stage, every cell linked to its code; with the
diagrams of one loop iteration per stage, of a request's path, and of one keep-alive request's
system calls as measured under strace.</li>
<li><a href="exercises.html">Every exercise with a hint and a worked answer</a>, and the shape
the benchmark should show.</li>
<li><a href="glossary.html">Glossary</a> of the terms the pages use.</li>
<li><a href="print.html">The four course pages on one printable page</a>.</li>
</ul>

<h2>Stage diffs</h2>
<ul>{diffs}</ul>
<p>Each stage starts as a copy of the one before and changes only what that Tornado release
changed, so a diff reads as the story of the release.</p>

<h2 id="benchmark-results">Benchmark results</h2>
{bench}

<h2>Building these pages</h2>
<p><code>make docs</code> builds this site under <code>build/docs/</code> (Doxygen for each
stage, diff2html for the diffs) and checks every internal link.</p>
</body>
</html>
"""


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def heading_ids(body):
    """Gives every <h2> an id (its words), and the first heading of each workload the short
    id the plots link to."""
    used = set()

    def add_id(m):
        title = re.sub(r"<[^>]+>", "", m.group(1))
        ident = slug(title)[:60].strip("-")
        for key, short in PLOT_SECTIONS.items():
            words = {"syscalls": "system calls", "idle": "idle connections"}.get(key, key)
            if words in title.lower() and short not in used and (
                    key != "hello" or "system calls" not in title.lower()):
                ident = short
                break
        while ident in used:
            ident += "-2"
        used.add(ident)
        return f'<h2 id="{ident}">{m.group(1)}</h2>'
    return re.sub(r"<h2>(.*?)</h2>", add_id, body)


def write_results_page(bench):
    with open(os.path.join(bench, "results.md"), encoding="utf-8") as f:
        results = f.read()
    # The plots are on the front page and on the course pages; the results page is the tables.
    results = re.sub(r"(?ms)^## Plots\n.*?(?=^## |\Z)", "", results)
    results = re.sub(r"(?m)^# .*\n", "", results, count=1)
    body = heading_ids(markdown(results))
    body = body.replace("<table>", '<div class="table"><table>').replace(
        "</table>", "</table></div>")
    with open(os.path.join(bench, "results.html"), "w", encoding="utf-8") as f:
        f.write(RESULTS_TEMPLATE.format(results=body))


# The reference pages beside the course pages: Markdown in docs/, rendered by cmark-gfm.
REFERENCE_PAGES = [("running", "Running it like FriendFeed"),
                   ("designs", "The four designs side by side"),
                   ("exercises", "Exercises: hints and worked answers"),
                   ("glossary", "Glossary")]


# [text](code:STAGE/FILE#needle): a link to the first line of FILE holding `needle`, on the
# stage's annotated source page, so that the link follows the code when lines move.
CODE_LINK = re.compile(r"\(code:([^#)]+)#([^)]+)\)")


def code_link(site, path, needle):
    stage, relpath = path.split("/", 1)
    with open(os.path.join(ROOT, stage, relpath), encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if needle in line and not line.lstrip().startswith("//"):
                break
        else:
            sys.exit(f"site.py: no line holding {needle!r} in {path}")
    page = source_page(relpath)
    anchor = f"l{number:05d}"
    target = os.path.join(site, stage, page)
    if not os.path.isfile(target):
        sys.exit(f"site.py: Doxygen made no source page {target} for {path}")
    return f"{stage}/{page}#{anchor}"


def render_diagrams(site):
    """docs/diagrams/*.dot to SVG by Graphviz, into SITE/diagrams/."""
    out = os.path.join(site, "diagrams")
    os.makedirs(out, exist_ok=True)
    for src in sorted(glob.glob(os.path.join(DOCS_DIR, "diagrams", "*.dot"))):
        name = os.path.splitext(os.path.basename(src))[0]
        subprocess.run(["dot", "-Tsvg", src, "-o", os.path.join(out, name + ".svg")],
                       check=True)


def sequence_msc(stage, calls):
    """An mscgen chart of one keep-alive request as the server's system calls saw it."""
    return "msc {\n" + "".join(msc_arcs(calls, stage)) + "}\n"


def sequences_html(site):
    """The measured keep-alive sequences of the last benchmark run, drawn by mscgen."""
    try:
        with open(os.path.join(site, "bench", "results.json"), encoding="utf-8") as f:
            sequences = json.load(f)["workloads"].get("hello", {}).get("sequences") or []
    except (OSError, ValueError, KeyError):
        sequences = []
    sequences = [x for x in sequences if x.get("calls")]
    if not sequences:
        return ("The benchmark draws these from a measured run: each stage serves two GET / "
                "on one connection under `strace -f`. Run `make bench` (or `make "
                "bench-quick`), then `make docs`.\n")
    out = os.path.join(site, "diagrams")
    os.makedirs(out, exist_ok=True)
    parts = ["Each stage served two GET / on one keep-alive connection under `strace -f` "
             "(in the last benchmark run); these are the system calls its server made for "
             "the second request, from the arrival of its bytes to the answer, drawn by "
             "mscgen. A crossed arrow is a call that failed (EAGAIN).\n"]
    for x in sequences:
        name = f"sequence-{x['stage']}"
        with open(os.path.join(out, name + ".msc"), "w", encoding="utf-8") as f:
            f.write(sequence_msc(x["stage"], x["calls"]))
        subprocess.run(["mscgen", "-T", "svg", "-i", os.path.join(out, name + ".msc"),
                        "-o", os.path.join(out, name + ".svg")], check=True,
                       capture_output=True)
        parts.append(f"\n### {x['stage']}: {len(x['calls'])} system calls\n\n"
                     f'<img class="diagram" src="diagrams/{name}.svg" '
                     f'alt="{x["stage"]}: the system calls of one keep-alive request">\n')
    return "".join(parts)



def write_reference_pages(site):
    nav = ('<p class=nav><a href="index.html">tornado-stages: all stages</a> · ' +
           " · ".join(f'<a href="{n}.html">{html.escape(t)}</a>' for n, t in REFERENCE_PAGES) +
           ' · <a href="print.html">the four course pages on one page</a></p>')
    render_diagrams(site)
    for name, title in REFERENCE_PAGES:
        src = os.path.join(DOCS_DIR, name + ".md")
        if not os.path.isfile(src):
            continue
        with open(src, encoding="utf-8") as f:
            text = f.read()
        text = CODE_LINK.sub(lambda m: f"({code_link(site, m.group(1), m.group(2))})", text)
        text = text.replace("<!-- sequences -->", sequences_html(site))
        text = fill_bench_markers(text, os.path.join(site, "bench"))
        body = markdown(text)
        body = re.sub(r"<h2>(.*?)</h2>",
                      lambda m: f'<h2 id="{slug(re.sub("<[^>]+>", "", m.group(1)))}">'
                                f"{m.group(1)}</h2>", body)
        with open(os.path.join(site, name + ".html"), "w", encoding="utf-8") as f:
            f.write(PAGE_TEMPLATE.format(title=html.escape(title), nav=nav, body=body))
    write_print_page(site, nav)


def write_print_page(site, nav):
    """The four course pages, as Doxygen rendered them, on one page for printing."""
    parts = []
    for stage, *_ in STAGES:
        path = os.path.join(site, stage, "index.html")
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            text = f.read()
        m = re.search(r'(?s)<div class="header">.*?<div class="headertitle">'
                      r'<div class="title">(.*?)</div>.*?<div class="contents">(.*)'
                      r'</div><!-- contents -->', text)
        if not m:
            sys.exit(f"site.py: no contents found in {path}")
        title, body = m.group(1), m.group(2)
        body = re.sub(r'(?s)<div class="toc">.*?</div>\s*', "", body, count=1)
        # Links and images point into the stage's own site.
        body = re.sub(r'(href|src|data)="(?!https?:|#|\.\./)([^"]+)"', rf'\1="{stage}/\2"',
                      body)
        body = re.sub(r'(href|src|data)="\.\./([^"]+)"', r'\1="\2"', body)
        body = re.sub(r'(?s)<div class="stage-nav">.*?</div>', "", body)
        parts.append(f'<section class="stage" id="{stage}"><h1>{title}</h1>{body}</section>')
    with open(os.path.join(site, "print.html"), "w", encoding="utf-8") as f:
        f.write(PRINT_TEMPLATE.format(nav=nav, body="".join(parts)))


PAGE_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tornado-stages: {title}</title>
<link rel="stylesheet" href="landing.css">
</head>
<body>
{nav}
{body}
</body>
</html>
"""

PRINT_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tornado-stages: the four course pages</title>
<link rel="stylesheet" href="stage0-pre1.0/doxygen.css">
<link rel="stylesheet" href="stage0-pre1.0/extra.css">
<link rel="stylesheet" href="landing.css">
<style>
section.stage {{ page-break-before: always; }}
section.stage:first-of-type {{ page-break-before: auto; }}
@media print {{ p.nav {{ display: none; }} a {{ color: inherit; text-decoration: none; }} }}
</style>
</head>
<body class="print">
{nav}
{body}
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
<p>The tables of the last <code>make bench</code> run, rendered from what the benchmark wrote
(<a href="results.md">results.md</a>, and every number in <a href="results.json">results.json</a>);
the plots are on the <a href="../index.html#benchmark-results">front page</a> and on each
stage's course page.</p>
{results}
</body>
</html>
"""


# --- check and screenshots ----------------------------------------------------------------

from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr", "param"}
# Elements whose text is code, not prose: source listings, diff lines, scripts.
SKIPPED_TAGS = {"code", "script", "style", "tt", "kbd", "samp"}
SKIPPED_CLASSES = ("fragment", "d2h-file-wrapper", "line")


class PageReader(HTMLParser):
    """Collects a page's running text, its <pre> text, and what it loads."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack = []  # (tag, skipped, in_pre)
        self.text, self.pre, self.loads, self.images = [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "data"):
            if a.get(key):
                self.loads.append(a[key])
        if tag == "link" and a.get("href") and "stylesheet" in (a.get("rel") or ""):
            self.loads.append(a["href"])
        if tag in ("img", "object") and (a.get("src") or a.get("data")):
            self.images.append(a)
        if tag in VOID:
            return
        skipped = bool(self.stack and self.stack[-1][1]) or tag in SKIPPED_TAGS or any(
            c in SKIPPED_CLASSES for c in (a.get("class") or "").split())
        in_pre = bool(self.stack and self.stack[-1][2]) or tag == "pre"
        self.stack.append((tag, skipped, in_pre))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID and self.stack and self.stack[-1][0] == tag:
            self.stack.pop()

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        skipped = self.stack and self.stack[-1][1]
        in_pre = self.stack and self.stack[-1][2]
        if in_pre:
            self.pre.append(data)
        elif not skipped:
            self.text.append(data)


RAW_IN_TEXT = [
    (re.compile(r"(?m)^\s*///"), "a literal /// at a line start"),
    (re.compile(r"\\(par|htmlonly|endhtmlonly|image|ref|brief|code|endcode)\b"),
     "a Doxygen command shown as text"),
    (re.compile(r"\*\*\S"), "Markdown ** shown as text"),
    (re.compile(r'<a (class|href)='), "HTML shown as text"),
    (re.compile(r"`"), "a Markdown backtick shown as text"),
    (re.compile(r"&(#\d+|[a-z]+);"), "an HTML entity shown as text"),
]
RAW_IN_PRE = [
    (re.compile(r"(?m)^\s*///"), "a literal /// in a <pre>"),
    (re.compile(r"\\(par|htmlonly|endhtmlonly)\b"), "a Doxygen command in a <pre>"),
    (re.compile(r'<a (class|href)='), "HTML shown in a <pre>"),
    (re.compile(r"(?m)^\s*\|[^\n]*\|\s*\n\s*\|\s*:?-{3,}"), "a Markdown table in a <pre>"),
]
# A plot as a page shows it: at least 600 px wide, and no wider than the narrowest place it
# is shown in at 1,400 px (a course page's contents, beside the 380 px navigation tree).
PLOT_MIN, PLOT_MAX = 600, 960


def svg_size(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        head = f.read(4000)
    m = re.search(r"<svg\b[^>]*>", head)
    tag = m.group(0) if m else ""
    w = re.search(r'\swidth="([\d.]+)(px)?"', tag)
    h = re.search(r'\sheight="([\d.]+)(px)?"', tag)
    return (float(w.group(1)) if w else None, float(h.group(1)) if h else None)


def is_plot(src):
    return os.path.splitext(os.path.basename(src))[0] in PLOT_SECTIONS


def cmd_check(args):
    site = args.site
    problems, reported = [], []
    pages = sorted(glob.glob(os.path.join(site, "**", "*.html"), recursive=True))
    for page in pages:
        rel = os.path.relpath(page, site)
        with open(page, encoding="utf-8", errors="replace") as f:
            text = f.read()
        if any(fnmatch.fnmatch(rel, pattern) for pattern in args.report_only):
            mine, problems = problems, reported
        reader = PageReader()
        reader.feed(text)
        running, pre = "".join(reader.text), "".join(reader.pre)
        for pattern, what in RAW_IN_TEXT:
            m = pattern.search(running)
            if m:
                problems.append(f"{rel}: {what}: "
                                f"{running[max(0, m.start() - 40):m.end() + 40]!r}")
        for pattern, what in RAW_IN_PRE:
            m = pattern.search(pre)
            if m:
                problems.append(f"{rel}: {what}: {pre[max(0, m.start() - 40):m.end() + 40]!r}")
        m = re.search(r"<code>[^<]*&amp;(#\d+|[a-z]+);", text)
        if m:
            problems.append(f"{rel}: an HTML entity shown inside code: {m.group(0)[-60:]!r}")
        m = re.search(r"<code>[^<]*(\*\*\S|\\ilinebr|&lt;/?(td|tr|a|code|b|p)\b)", text)
        if m:
            problems.append(f"{rel}: markup shown inside code (a code span that ran on): "
                            f"{m.group(0)[-80:]!r}")
        for url in reader.loads:
            if re.match(r"^(https?:)?//", url):
                problems.append(f"{rel}: loads {url} from the network")
        for m in re.finditer(r"(@import\s+[\"']?|url\(\s*[\"']?)(https?:)?//[^)\"']+", text):
            problems.append(f"{rel}: its style loads {m.group(0)} from the network")
        for image in reader.images:
            src = image.get("src") or image.get("data")
            if not is_plot(src) or re.match(r"^(https?:)?//", src):
                continue
            path = os.path.normpath(os.path.join(os.path.dirname(page), src.split("#")[0]))
            if not os.path.isfile(path):
                problems.append(f"{rel}: plot {src} is missing")
                continue
            width, height = svg_size(path) if path.endswith(".svg") else (None, None)
            if width is None or height is None:
                problems.append(f"{rel}: plot {src} has no width and height of its own")
            elif not PLOT_MIN <= width <= PLOT_MAX:
                problems.append(f"{rel}: plot {src} is {width:g} px wide "
                                f"(shown between {PLOT_MIN} and {PLOT_MAX} px)")
            shown = image.get("width")
            if shown and shown.rstrip("px").isdigit() and int(shown.rstrip("px")) < PLOT_MIN:
                problems.append(f"{rel}: plot {src} is shown {shown} wide")
        if problems is reported:
            problems = mine
    for css in glob.glob(os.path.join(site, "**", "*.css"), recursive=True):
        with open(css, encoding="utf-8", errors="replace") as f:
            for m in re.finditer(r"(@import\s+[\"']?|url\(\s*[\"']?)(https?:)?//[^)\"']+",
                                 f.read()):
                problems.append(f"{os.path.relpath(css, site)}: loads {m.group(0)} "
                                "from the network")
    if reported:
        print(f"site.py check: {len(reported)} problems reported, not failed, on pages matching "
              f"{' '.join(args.report_only)}:", file=sys.stderr)
        for p in reported[:40]:
            print("  " + p[:200], file=sys.stderr)
    if problems:
        print(f"site.py check: {len(problems)} problems in {site}/:", file=sys.stderr)
        for p in problems[:200]:
            print("  " + p, file=sys.stderr)
        sys.exit(1)
    print(f"No raw markup, badly sized plot or network resource in {len(pages)} pages.")


# The pages a reader starts from, and what to call their pictures.
def key_pages(site):
    pages = [("landing", "index.html")]
    for stage, page, *_ in STAGES:
        pages.append((f"course-{page}", f"{stage}/index.html"))
    pages.append(("class-stage3-PollIOLoop", "stage3-configurable/classtornado_1_1PollIOLoop.html"))
    pages.append(("class-stage0-IOStream", "stage0-pre1.0/classtornado_1_1IOStream.html"))
    for (old, *_), (new, *_) in zip(STAGES, STAGES[1:]):
        pages.append((f"diff-{old}--{new}", f"diffs/{diff_name(old, new)}"))
    pages += [("results", "bench/results.html"), ("designs", "designs.html"),
              ("exercises", "exercises.html"), ("glossary", "glossary.html")]
    return [(n, p) for n, p in pages if os.path.isfile(os.path.join(site, p))]


# Measures, in the browser, every plot of a page: its shown width against 600 px and against
# the width of the element that holds it.
MEASURE_SCRIPT = """<script>
window.addEventListener('load', () => {
  const plots = [...document.querySelectorAll('img, object')].filter(e =>
    /(^|\\/)(%s)\\.svg$/.test(e.getAttribute('src') || e.getAttribute('data') || ''));
  document.body.setAttribute('data-plot-widths', JSON.stringify(plots.map(e => {
    const box = e.getBoundingClientRect();
    let holder = e.parentElement;
    while (holder && holder.clientWidth === 0) holder = holder.parentElement;
    return [e.getAttribute('src') || e.getAttribute('data'), Math.round(box.width),
            holder ? holder.clientWidth : 0];
  })));
});
</script>"""


def measure_plots(browser, site, page):
    """[(plot, shown width, holder width)] of a page at 1400 px, measured by Chromium."""
    path = os.path.join(site, page)
    probe = os.path.join(os.path.dirname(path), ".measure-" + os.path.basename(path))
    with open(path, encoding="utf-8") as f:
        text = f.read()
    script = MEASURE_SCRIPT % "|".join(PLOT_SECTIONS)
    with open(probe, "w", encoding="utf-8") as f:
        f.write(text.replace("</body>", script + "</body>", 1))
    try:
        proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                               "--window-size=1400,2000", "--virtual-time-budget=3000",
                               "--dump-dom", "file://" + os.path.abspath(probe)],
                              capture_output=True, text=True, timeout=120)
    finally:
        os.remove(probe)
    m = re.search(r'data-plot-widths="([^"]*)"', proc.stdout)
    return json.loads(html.unescape(m.group(1))) if m else None


def cmd_screenshots(args):
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                   "google-chrome"))), None)
    if not browser:
        sys.exit("site.py: no chromium on PATH (make docs-screenshots installs it)")
    os.makedirs(args.out, exist_ok=True)
    for name, page in key_pages(args.site):
        out = os.path.join(os.path.abspath(args.out), name + ".png")
        url = "file://" + os.path.abspath(os.path.join(args.site, page))
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", f"--screenshot={out}",
                        f"--window-size=1400,{args.height}", url],
                       capture_output=True, timeout=120)
        print(("" if os.path.isfile(out) else "FAILED ") + out)
    # The plots as the browser lays them out: at least 600 px, never wider than their holder.
    bad = []
    for name, page in key_pages(args.site):
        widths = measure_plots(browser, args.site, page)
        if widths is None:
            bad.append(f"{page}: the plots could not be measured")
            continue
        for src, shown, holder in widths:
            if shown < PLOT_MIN or (holder and shown > holder):
                bad.append(f"{page}: plot {src} shown {shown} px wide in {holder} px")
        if widths:
            print(f"{page}: {len(widths)} plots, shown "
                  f"{min(w for _, w, _ in widths)}-{max(w for _, w, _ in widths)} px wide")
    if bad:
        print("\n".join(bad), file=sys.stderr)
        sys.exit(1)



def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pages")
    p.add_argument("--work", required=True)
    p.add_argument("--bench", required=True)
    p.add_argument("--site", required=True)
    p.set_defaults(func=cmd_pages)
    p = sub.add_parser("diff")
    p.add_argument("--old", required=True)
    p.add_argument("--new", required=True)
    p.add_argument("--raw", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_diff)
    p = sub.add_parser("post")
    p.add_argument("--site", required=True)
    p.add_argument("--work", required=True)
    p.set_defaults(func=cmd_post)
    p = sub.add_parser("check")
    p.add_argument("--site", required=True)
    p.add_argument("--report-only", nargs="*", default=[], metavar="GLOB",
                   help="pages (relative to the site) whose problems are printed, not failed")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("screenshots")
    p.add_argument("--site", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--height", type=int, default=2000)
    p.set_defaults(func=cmd_screenshots)
    p = sub.add_parser("landing")
    p.add_argument("--site", required=True)
    p.add_argument("--bench", required=True)
    p.set_defaults(func=cmd_landing)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
