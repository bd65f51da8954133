# statewall — everything a fresh Debian machine (Python 3.11, root) needs, installed on demand.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
DEBPKGS := iproute2 nftables iptables iperf3 hping3 vsftpd curl tcpdump ethtool conntrack ipset gcc libc6-dev liburing-dev rsyslog chromium chromium-driver
# Each Debian package's main command, to tell whether it is already there (liburing-dev: its header,
# for the live pump's io_uring writes).
DEBCMDS := ip nft iptables iperf3 hping3 vsftpd curl tcpdump ethtool conntrack ipset gcc rsyslogd chromium chromedriver

.PHONY: all setup debs demo test bench fuzz lint fmt clean

all: test

# setup.py builds the compiled fast path (src/statewall/_fastpath.c) into the source tree.
$(STAMP): pyproject.toml setup.py src/statewall/_fastpath.c src/statewall/_fastpath_api.h src/statewall/live/_tunpump.c
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Debian packages for the live lab and the kernel differential tests; only as root, only when missing.
debs:
	@missing=0; for c in $(DEBCMDS); do command -v $$c >/dev/null 2>&1 || [ -x /usr/sbin/$$c ] || missing=1; done; \
	[ -f /usr/include/liburing.h ] || missing=1; \
	if [ $$missing = 1 ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages: $(DEBPKGS)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBPKGS) >/dev/null; \
	  else echo "not root: skipping Debian packages ($(DEBPKGS)); root-only tests will skip"; fi; \
	fi

# The Debian packages first: the C extensions build with what they bring (gcc, liburing-dev).
setup: debs $(STAMP)

demo: setup
	$(VENV)/bin/statewall demo

# Two pytest workers, one per core of the 2-CPU machines the suite must fit (15 minutes); a file's
# tests stay on one worker (--dist loadfile): they share module-level fixtures and rely on their order.
test: setup
	$(VPY) -m pytest -n 2 --dist loadfile

bench: setup
	$(VPY) -m bench.run

# Millions of fuzzed packets per kind of configuration; exit 1 on any exception or must-drop forwarded.
fuzz: setup
	$(VPY) -m bench.fuzz

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

fmt: setup
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache src/statewall/*.so src/statewall/live/*.so
