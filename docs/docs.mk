# The docs and the stage diffs, included by the top Makefile.
#
#   make docs                 build the whole site under build/docs/ and check its links
#   make docs-build           build the site only
#   make docs-check           check a built site: internal links (linkchecker), no raw markup,
#                             plots sized for their pages, nothing fetched from the network
#   make docs-screenshots     headless Chromium pictures of the key pages, 1400 px wide, in
#                             build/docs-screenshots/, and every plot on them measured as
#                             laid out (600 px at least, never wider than its holder);
#                             installs chromium when missing
#   make diff FROM=a TO=b     the diff of two stages in the terminal: file summary, then colour
#
# The site: build/docs/index.html (the landing page), one Doxygen site per stage in
# build/docs/<stage>/ whose main page is that stage's course page (docs/stageN.md), the
# side-by-side diff of every pair of consecutive stages in build/docs/diffs/ (diff2html-cli,
# pinned in docs/package-lock.json), and the benchmark results in build/docs/bench/ when
# `make bench` has written them to build/bench/.

# Remember the default goal: this file may be included before the top Makefile's first rule.
DOCS_SAVED_DEFAULT_GOAL := $(.DEFAULT_GOAL)

# Debian packages the docs need. Node.js from another source (e.g. NodeSource) already ships
# npm and conflicts with Debian's npm package, so nodejs and npm are asked for only when npm
# is missing.
DEPS_DOCS := doxygen graphviz mscgen cmark-gfm linkchecker $(if $(shell command -v npm 2>/dev/null),,nodejs npm)

DOCS_STAGES := $(sort $(wildcard stage[0-9]-*))
DOCS_OUT    := build/docs
DOCS_WORK   := build/docs-work
DOCS_BENCH   = $(or $(BENCH_OUT),build/bench)
DOCS_JOBS   ?= $(shell nproc 2>/dev/null || echo 2)
DOCS_NPM    := docs/node_modules/.package-lock.json
DOCS_DIFF2HTML := docs/node_modules/.bin/diff2html

# Only the screenshots need a browser; `make docs-screenshots` installs it on demand.
DEPS_SCREENSHOTS := chromium
DOCS_SHOTS := build/docs-screenshots

# Each site's title names the Tornado release it reproduces.
DOCS_RELEASE_stage0-pre1.0       := Tornado 0.1 (2009, commit 2afa9734)
DOCS_RELEASE_stage1-v1.0         := Tornado 1.0 (2010)
DOCS_RELEASE_stage2-v2.0         := Tornado 2.0 (2011)
DOCS_RELEASE_stage3-configurable := Tornado 3.0 (2013)

# The Tornado ref each stage's \tornado{file,function} links to.
DOCS_REF_stage0-pre1.0       := 2afa9734
DOCS_REF_stage1-v1.0         := v1.0.0
DOCS_REF_stage2-v2.0         := v2.0.0
DOCS_REF_stage3-configurable := v3.0.0

# A diff that ignores the user's git configuration (colour, prefixes, external tools).
DOCS_GIT_DIFF := git -c core.quotepath=off diff --no-index --no-ext-diff --src-prefix=a/ --dst-prefix=b/

.PHONY: docs docs-build docs-check docs-prepare docs-diffs docs-clean docs-screenshots diff \
        $(addprefix docs-site-,$(DOCS_STAGES))

docs: deps
	@$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) docs-build
	@$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) docs-check
	@echo "Docs: $(CURDIR)/$(DOCS_OUT)/index.html"

docs-build:
	@start=$$(date +%s); \
	rm -rf $(DOCS_OUT) $(DOCS_WORK) && mkdir -p $(DOCS_OUT) $(DOCS_WORK) && \
	$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) docs-prepare && \
	$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) -j $(DOCS_JOBS) docs-diffs $(addprefix docs-site-,$(DOCS_STAGES)) && \
	python3 docs/site.py post --site $(DOCS_OUT) --work $(DOCS_WORK) && \
	python3 docs/site.py landing --site $(DOCS_OUT) --bench $(DOCS_BENCH) && \
	echo "Docs built in $$(( $$(date +%s) - start )) s: $(DOCS_OUT)/index.html"

# The course pages, with the benchmark plots (or the command that makes them) filled in.
docs-prepare:
	@python3 docs/site.py pages --work $(DOCS_WORK) --bench $(DOCS_BENCH) --site $(DOCS_OUT)
	@if [ -f $(DOCS_BENCH)/results.md ]; then echo "Benchmark results: $(DOCS_BENCH)/results.md"; \
	else echo "No benchmark results in $(DOCS_BENCH)/ (make bench makes them); the pages say so."; fi

# One Doxygen site per stage; any warning fails the build.
$(addprefix docs-site-,$(DOCS_STAGES)): docs-site-%:
	@echo "Doxygen: $*"
	@mkdir -p $(DOCS_OUT)/$*
	@DOCS_STAGE=$* DOCS_TITLE="$*: $(DOCS_RELEASE_$*)" DOCS_REF=$(DOCS_REF_$*) \
	 DOCS_PAGE=$(DOCS_WORK)/pages/$(firstword $(subst -, ,$*)).md \
	 DOCS_PAGES_DIR=$(DOCS_WORK)/pages DOCS_OUT=$(DOCS_OUT)/$* \
	 DOCS_WARN_LOG=$(DOCS_WORK)/$*.warnings doxygen docs/Doxyfile; \
	status=$$?; \
	if [ -s $(DOCS_WORK)/$*.warnings ] || [ $$status -ne 0 ]; then \
	  cat $(DOCS_WORK)/$*.warnings; \
	  echo "Doxygen warnings in $* (treated as errors; log: $(DOCS_WORK)/$*.warnings)"; exit 1; \
	fi

# Every pair of consecutive stages as a side-by-side HTML page.
docs-diffs: $(DOCS_NPM)
	@mkdir -p $(DOCS_OUT)/diffs $(DOCS_WORK)/diffs
	@set -e; prev=; for s in $(DOCS_STAGES); do \
	  if [ -n "$$prev" ]; then \
	    echo "diff2html: $$prev -> $$s"; \
	    $(DOCS_GIT_DIFF) --no-color $$prev $$s > $(DOCS_WORK)/diffs/$$prev--$$s.raw || [ $$? -eq 1 ]; \
	    python3 docs/site.py diff --old $$prev --new $$s --raw $(DOCS_WORK)/diffs/$$prev--$$s.raw \
	      --out $(DOCS_WORK)/diffs/$$prev--$$s.diff; \
	    $(DOCS_DIFF2HTML) --style side --format html --input file --summary open \
	      --diffStyle word --matching lines --colorScheme light \
	      --htmlWrapperTemplate docs/diff-template.html \
	      --title "$$prev → $$s" --file $(DOCS_OUT)/diffs/$$prev--$$s.html \
	      -- $(DOCS_WORK)/diffs/$$prev--$$s.diff; \
	  fi; prev=$$s; done

$(DOCS_NPM): docs/package.json docs/package-lock.json
	npm ci --prefix docs --no-audit --no-fund --loglevel=error
	@touch $@

# Every link between files of the site must resolve (external links are not fetched); the
# landing page's links must also find their anchors (source lines, files of a diff page).
docs-check:
	@[ -f $(DOCS_OUT)/index.html ] || { echo "No site in $(DOCS_OUT)/: run make docs-build first"; exit 2; }
	@site=$(DOCS_OUT); tmp=; \
	if [ "$$(id -u)" = 0 ]; then \
	  tmp=$$(mktemp -d) && chmod 755 $$tmp && cp -r $(DOCS_OUT) $$tmp/docs && \
	  chmod -R a+rX $$tmp && site=$$tmp/docs; \
	  echo "(linkchecker reads as user nobody when run as root: checking a readable copy in $$tmp)"; \
	fi; \
	echo "linkchecker: every internal link of $(DOCS_OUT)/"; \
	linkchecker --config docs/linkcheckerrc --no-status $$site/index.html; status=$$?; \
	if [ $$status = 0 ]; then \
	  echo "linkchecker: the landing page's links and their anchors"; \
	  linkchecker --config docs/linkcheckerrc-anchors --no-status --recursion-level=1 $$site/index.html; \
	  status=$$?; \
	fi; \
	[ -z "$$tmp" ] || rm -rf $$tmp; \
	if [ $$status != 0 ]; then echo "Broken links in $(DOCS_OUT)/ (see above)"; exit 1; fi
	@echo "No broken internal links."
	@python3 docs/site.py check --site $(DOCS_OUT)

# Pictures of the pages a reader starts from, as a browser 1400 px wide shows them.
docs-screenshots:
	@[ -f $(DOCS_OUT)/index.html ] || { echo "No site in $(DOCS_OUT)/: run make docs first"; exit 2; }
	@$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) deps DEPS="$(DEPS_SCREENSHOTS)"
	python3 docs/site.py screenshots --site $(DOCS_OUT) --out $(DOCS_SHOTS)

docs-clean:
	rm -rf $(DOCS_OUT) $(DOCS_WORK) $(DOCS_SHOTS) docs/node_modules

# The diff of two stages in the terminal: which files changed, then the changes in colour.
diff:
	@if [ -z "$(FROM)" ] || [ -z "$(TO)" ] || [ ! -d "$(FROM)" ] || [ ! -d "$(TO)" ]; then \
	  echo "usage: make diff FROM=<stage> TO=<stage>   (stages: $(DOCS_STAGES))"; exit 2; fi
	@$(DOCS_GIT_DIFF) --stat=120 --summary --color=always $(FROM) $(TO) || [ $$? -eq 1 ]
	@echo
	@$(DOCS_GIT_DIFF) --color=always $(FROM) $(TO) || [ $$? -eq 1 ]

.DEFAULT_GOAL := $(DOCS_SAVED_DEFAULT_GOAL)
