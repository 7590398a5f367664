# adcs.enrollment: one-command demo and test suite. Run as root on Debian/Ubuntu (the lab binds ports 53, 88,
# 135, 389 and 636 on loopback addresses of its own and installs Samba with apt-get when it is missing).
SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT        := $(abspath .)
PY_NEWEST   ?= $(shell tests/tools/find-python.sh 3.12 2>/dev/null || tests/tools/find-python.sh 3.13 2>/dev/null)
PY_OLDEST   ?= $(shell tests/tools/find-python.sh 3.11 2>/dev/null || command -v python3)
VENV        := $(ROOT)/.venv
VENV_OLDEST := $(ROOT)/.venv-oldest
VENV_CERTIPY:= $(ROOT)/.venv-certipy
COLLECTIONS := $(ROOT)/.build/collections
LAB         := PYTHONPATH=$(ROOT)/tests/lab $(VENV)/bin/python -m adcslab
APT_PACKAGES:= samba samba-ad-dc samba-ad-provision samba-dsdb-modules samba-vfs-modules winbind krb5-user \
               ldb-tools python3-samba openssl ca-certificates libkrb5-dev gcc

export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)

.PHONY: help demo test unit lab-tests integration sanity lint bench lab-up lab-down lab-status lab-show lab-ca lab-faults \
        system-deps venv clean

help:
	@echo "make demo        set up, start the lab, run the demo playbook against it and show the result"
	@echo "make test        set up and run the whole suite (unit, lab, sanity, integration; newest and oldest ansible-core)"
	@echo "make lab-up      start the lab AD and lab CA (reuses a healthy running lab); lab-down stops it"
	@echo "make bench       benchmarks against the lab"

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(VENV)/.stamp: requirements-dev.txt
	@test -n "$(PY_NEWEST)" || { echo "no Python >= 3.12 found: the newest ansible-core needs it" >&2; exit 1; }
	rm -rf $(VENV) && $(PY_NEWEST) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

$(VENV_OLDEST)/.stamp: requirements-oldest.txt
	rm -rf $(VENV_OLDEST) && $(PY_OLDEST) -m venv $(VENV_OLDEST)
	$(VENV_OLDEST)/bin/pip install -q -r requirements-oldest.txt
	touch $@

$(VENV_CERTIPY)/.stamp: tests/requirements-certipy.txt
	rm -rf $(VENV_CERTIPY) && $(PY_NEWEST) -m venv $(VENV_CERTIPY)
	$(VENV_CERTIPY)/bin/pip install -q -r tests/requirements-certipy.txt
	touch $@

$(COLLECTIONS)/ansible_collections/adcs/enrollment:
	mkdir -p $(COLLECTIONS)/ansible_collections/adcs
	ln -sfn $(ROOT) $@

venv: $(VENV)/.stamp $(VENV_OLDEST)/.stamp $(VENV_CERTIPY)/.stamp $(COLLECTIONS)/ansible_collections/adcs/enrollment

lab-up: system-deps $(VENV)/.stamp
	$(LAB) up

lab-down:
	@if [ -x $(VENV)/bin/python ]; then $(LAB) down; else PYTHONPATH=$(ROOT)/tests/lab python3 -m adcslab down; fi

lab-status:
	@$(LAB) status

lab-show:
	@$(LAB) show

demo: system-deps venv lab-up
	$(VENV)/bin/ansible-playbook -i localhost, -c local adcs.enrollment.demo \
	  -e ansible_python_interpreter=$(VENV)/bin/python -e lab_json=$(ROOT)/tests/lab/state/lab.json

unit: venv
	tests/tools/pytest.sh $(VENV) tests/unit
	tests/tools/pytest.sh $(VENV_OLDEST) tests/unit

lab-tests: venv lab-up
	tests/tools/pytest.sh $(VENV) tests/lab/tests

integration: venv lab-up
	ADCS_PYTHON=$(VENV)/bin/python tests/tools/pytest.sh $(VENV) tests/integration
	ADCS_PYTHON=$(VENV_OLDEST)/bin/python tests/tools/pytest.sh $(VENV_OLDEST) tests/integration

sanity: venv
	tests/tools/sanity.sh $(VENV)

lint:
	tests/tools/lint.sh

bench: venv lab-up
	tests/tools/pytest.sh $(VENV) tests/bench -s

test: system-deps venv
	tests/tools/run-suite.sh

clean: lab-down
	rm -rf .build tests/output tests/lab/state

# Lab CA administration and fault knobs, e.g. `make lab-ca ARGS="approve 12"`, `make lab-ca ARGS="renew-ca --new-key"`,
# `make lab-faults ARGS="set delay_seconds=5"`
lab-ca:
	@$(LAB) ca $(ARGS)

lab-faults:
	@$(LAB) faults $(ARGS)
