# The FriendFeed deployment of a stage (common/deploy/deploy.py), included by the top Makefile
# after its DEPS list, to which it adds its packages.
#
#   make deploy STAGE=stage3-configurable N=4   nginx + N instances under Supervisor
#   make deploy-stop                            stop it all
#
# Everything runs as the invoking user from build/deploy/ on free ports: the deployment's own
# supervisord (socket, pid file, logs) and nginx (-p build/deploy/nginx). Debian's packages
# also install system services; those are never used.

deploy_saved_goal := $(.DEFAULT_GOAL)

N          ?= 4
DEPLOY_DIR ?= build/deploy

# Debian's supervisor and nginx-light (the smallest nginx that proxies and serves files).
# cmark-gfm renders the course page about it (docs/running.md) in make docs.
DEPS_DEPLOY := supervisor nginx-light cmark-gfm
DEPS += $(DEPS_DEPLOY)

.PHONY: deploy deploy-stage deploy-stop

# The stage is checked before anything is built.
deploy-stage:
	@case "$(STAGE)" in stage[1-9]-*) ;; *) echo "make deploy: STAGE must be stage1 or later, e.g. STAGE=stage3-configurable"; exit 2;; esac

deploy: deploy-stage build
	python3 common/deploy/deploy.py start --instances $(N) --dir $(DEPLOY_DIR) \
	  --server $(BUILD_DIR)/$(STAGE)/$(call stage_prefix,$(STAGE))-server

deploy-stop:
	python3 common/deploy/deploy.py stop --dir $(DEPLOY_DIR)

.DEFAULT_GOAL := $(deploy_saved_goal)
