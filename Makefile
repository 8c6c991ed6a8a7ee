# pgfunnel — plain Makefile.  Everything is overridable from the command line:
#   make CFLAGS="-O0 -g"        debug build
#   make sanitize               ASan+UBSan build, then runs every test with it
#   make tsan                   TSan build of the worker pool / log unit tests
#   make check                  unit + integration tests (what CI runs)
#   make fuzz                   libFuzzer harnesses, FUZZ_SECONDS (60) each; fuzz-ci: 10 s each
# Objects go to $(BUILD) so several flavours can coexist without clobbering.

CC      ?= cc
BUILD   ?= build
BIN     ?= pgfunnel
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Werror -Wformat=2 -Wmissing-prototypes -Wstrict-prototypes \
           -Wshadow -Wpointer-arith -Wundef
PKGS    := libevent_core libevent_extra libevent_pthreads libevent_openssl libpq inih openssl libidn \
           libsystemd
DEPS_OK := $(BUILD)/.deps-ok

# pkg-config is queried lazily so that `make deps` can run before it exists.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ALL_CFLAGS = -std=gnu11 $(WARN) $(CPPFLAGS) $(CFLAGS) -D_GNU_SOURCE -Iproxy $(PKG_CFLAGS) -MMD -MP
ALL_LIBS   = $(PKG_LIBS) -lpthread $(LDLIBS)

SRCS      := $(wildcard proxy/*.c)
GEN_OBJS  := $(BUILD)/gen/dashboard_page.o
OBJS      := $(SRCS:proxy/%.c=$(BUILD)/proxy/%.o) $(GEN_OBJS)
LIB_OBJS  := $(filter-out $(BUILD)/proxy/main.o,$(OBJS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%)
ITEST_SRCS := $(wildcard tests/integration/itest_*.c)
ITEST_BINS := $(ITEST_SRCS:tests/integration/%.c=$(BUILD)/tests/integration/%)
TOOL_SRCS := $(wildcard tools/*.c)
TOOL_BINS := $(TOOL_SRCS:tools/%.c=$(BUILD)/tools/%)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/tests/fuzz/%)

.PHONY: all deps check unit integration integration-loops sanitize tsan format format-check demo bench clean fuzz \
        fuzz-build fuzz-bins fuzz-ci man-page install uninstall deb

all: $(BIN)

deps: $(DEPS_OK)
$(DEPS_OK):
	@bash tools/deps.sh
	@mkdir -p $(BUILD) && touch $@

$(BIN): $(OBJS) | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(ALL_LIBS)

$(BUILD)/proxy/%.o: proxy/%.c | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The dashboard page (proxy/dashboard/index.html) is served from the binary: it
# becomes a C array here, with od and sed (coreutils, always there; xxd is not).
$(BUILD)/gen/dashboard_page.c: proxy/dashboard/index.html Makefile
	@mkdir -p $(dir $@)
	@{ echo '/* generated from $< by the Makefile: do not edit */'; \
	   echo '#include "dashboard.h"'; \
	   echo 'const unsigned char dash_index_html[] = {'; \
	   od -An -v -tx1 $< | sed -e 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	   echo '0x00}; /* a NUL after the page: not counted in the length */'; \
	   echo 'const size_t dash_index_html_len = sizeof(dash_index_html) - 1;'; } > $@.tmp
	@mv $@.tmp $@

$(BUILD)/gen/%.o: $(BUILD)/gen/%.c | $(DEPS_OK)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/tests/unit/%: tests/unit/%.c $(LIB_OBJS) | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIB_OBJS) $(ALL_LIBS) -lcmocka

$(BUILD)/tests/integration/%: tests/integration/%.c | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(ALL_LIBS) -lcmocka

# libFuzzer harnesses: only built inside `make fuzz-build` (BUILD=build-fuzz, clang).
$(BUILD)/tests/fuzz/%: tests/fuzz/%.c $(LIB_OBJS) | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/fuzz -fsanitize=fuzzer -o $@ $< $(LIB_OBJS) $(ALL_LIBS)

$(BUILD)/tools/%: tools/%.c | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(ALL_LIBS)

unit: $(UNIT_BINS)
	@bash tests/run-unit.sh $(UNIT_BINS)

integration: $(BIN) $(ITEST_BINS) $(TOOL_BINS)
	@PGFUNNEL_BIN=$(abspath $(BIN)) ITEST_DIR=$(abspath $(BUILD)/tests/integration) \
	 TOOLS_DIR=$(abspath $(BUILD)/tools) bash tests/integration/run.sh

# What CI runs (README's test command).  The integration suite runs once,
# with the ASan+UBSan binary: a sanitizer report in the pooler's stderr fails
# the test that caused it.  The optimized build still has to compile with
# -Werror and pass the unit tests; `make integration` runs the suite against it.
check: all
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory sanitize
	@$(MAKE) --no-print-directory tsan
	@$(MAKE) --no-print-directory fuzz-ci

SAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
# The suite runs with event_loops = 1 (the default); these files run a second
# time with 4 loops (t_loops.sh always uses 4).
LOOPS_TESTS := t_pooling|t_prepared|t_admin|t_timeouts|t_failures|t_chaos|t_cancel
sanitize:
	@$(MAKE) --no-print-directory BUILD=build-asan BIN=build-asan/pgfunnel \
	    CFLAGS="$(SAN_FLAGS)" LDLIBS="-fsanitize=address,undefined" all unit integration
	@$(MAKE) --no-print-directory BUILD=build-asan BIN=build-asan/pgfunnel \
	    CFLAGS="$(SAN_FLAGS)" LDLIBS="-fsanitize=address,undefined" integration-loops

# The integration files of LOOPS_TESTS with event_loops = 4.
integration-loops: $(BIN) $(ITEST_BINS) $(TOOL_BINS)
	@PF_EVENT_LOOPS=4 PGFUNNEL_BIN=$(abspath $(BIN)) ITEST_DIR=$(abspath $(BUILD)/tests/integration) \
	 TOOLS_DIR=$(abspath $(BUILD)/tools) bash tests/integration/run.sh '^($(LOOPS_TESTS))\.sh:'

# ThreadSanitizer: the worker pool, log and loop-set unit tests, then the daemon with
# 4 event loops under pgbench, console commands and reloads (t_loops.sh).
tsan:
	@$(MAKE) --no-print-directory BUILD=build-tsan BIN=build-tsan/pgfunnel \
	    CFLAGS="-O1 -g -fsanitize=thread" LDLIBS="-fsanitize=thread" \
	    build-tsan/tests/unit/test_workq build-tsan/tests/unit/test_log \
	    build-tsan/tests/unit/test_loops build-tsan/pgfunnel \
	    $(TOOL_SRCS:tools/%.c=build-tsan/tools/%)
	TSAN_OPTIONS=halt_on_error=1 build-tsan/tests/unit/test_workq
	TSAN_OPTIONS=halt_on_error=1 build-tsan/tests/unit/test_log
	TSAN_OPTIONS=halt_on_error=1 build-tsan/tests/unit/test_loops
	@TSAN_OPTIONS="halt_on_error=0 $${TSAN_OPTIONS:-}" PF_EVENT_LOOPS=4 \
	 PGFUNNEL_BIN=$(abspath build-tsan/pgfunnel) TOOLS_DIR=$(abspath build-tsan/tools) \
	 TEST_TIMEOUT=180 bash tests/integration/run.sh '^t_loops\.sh:'

# ---- fuzzing: clang's libFuzzer with ASan+UBSan over every parser of untrusted
# bytes (tests/fuzz/README.md).  The proxy objects get coverage instrumentation
# (fuzzer-no-link) in their own build dir; seeds are in tests/fuzz/corpus/NAME/.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_BUILD   ?= build-fuzz
FUZZ_FLAGS   := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
                -fno-sanitize-recover=all
FUZZ_NAMES   := $(FUZZ_SRCS:tests/fuzz/fuzz_%.c=%)
fuzz-build:
	@echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);' \
	     'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' \
	 | $(FUZZ_CC) -x c -fsanitize=fuzzer -o /dev/null - 2>/dev/null || { \
	    echo "fuzz: '$(FUZZ_CC) -fsanitize=fuzzer' does not link;" \
	         "install clang and libclang-rt-dev (Debian 12: clang-14, libclang-rt-14-dev)" >&2; exit 1; }
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) CFLAGS="$(FUZZ_FLAGS)" \
	    LDLIBS="-fsanitize=address,undefined" fuzz-bins
fuzz-bins: $(FUZZ_BINS)
fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_BUILD=$(FUZZ_BUILD) bash tests/fuzz/run.sh $(FUZZ_NAMES)
# For CI: 10 s per harness, non-zero exit on any crash, leak or sanitizer report.
fuzz-ci:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10

FORMAT_FILES = $(wildcard proxy/*.c proxy/*.h tests/unit/*.c tests/integration/*.c tools/*.c)
format:
	clang-format -i $(FORMAT_FILES)
format-check:
	@clang-format --dry-run --Werror $(FORMAT_FILES) && echo "format-check: $(words $(FORMAT_FILES)) files clean"

# ---- install: the usual GNU layout under PREFIX, staged under DESTDIR ----
# make install [PREFIX=/usr/local] [DESTDIR=/tmp/stage]; make uninstall with the same.
# The installed configuration is the sample with the service's paths set
# (INI_SERVICE_EDITS); an existing one is never overwritten.  The Debian
# package sets PREFIX=/usr SYSCONFDIR=/etc BINDIR=/usr/sbin SYSTEMDUNITDIR=/lib/systemd/system.
PREFIX         ?= /usr/local
BINDIR         ?= $(PREFIX)/bin
DATAROOTDIR    ?= $(PREFIX)/share
MANDIR         ?= $(DATAROOTDIR)/man
DOCDIR         ?= $(DATAROOTDIR)/doc/pgfunnel
SQLDIR         ?= $(DATAROOTDIR)/pgfunnel/sql
SYSCONFDIR     ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
RUNSTATEDIR    ?= /run
LOGDIR         ?= /var/log/pgfunnel
INSTALL        ?= install
CONFDIR         = $(SYSCONFDIR)/pgfunnel
INI_SERVICE_EDITS = \
	-e '1i ;; Installed for the pgfunnel service: paths set for it, md5 logins from userlist.txt.' \
	-e 's|^unix_socket_dir = /tmp$$|unix_socket_dir = $(RUNSTATEDIR)/pgfunnel|' \
	-e 's|^;logfile =$$|logfile = $(LOGDIR)/pgfunnel.log|' \
	-e 's|^;pidfile =$$|pidfile = $(RUNSTATEDIR)/pgfunnel/pgfunnel.pid|' \
	-e 's|^auth_type = trust$$|auth_type = md5|' \
	-e 's|^;auth_file =$$|auth_file = $(CONFDIR)/userlist.txt|'
UNIT_EDITS = -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g'
INSTALLED_FILES = $(BINDIR)/pgfunnel $(MANDIR)/man1/pgfunnel.1 $(MANDIR)/man5/pgfunnel.ini.5 \
	$(SQLDIR)/auth_query.sql $(DOCDIR)/README.md $(DOCDIR)/admin.md \
	$(DOCDIR)/examples/pgfunnel.ini $(DOCDIR)/examples/pgbouncer-compat.ini \
	$(SYSTEMDUNITDIR)/pgfunnel.service $(SYSCONFDIR)/logrotate.d/pgfunnel

install: $(BIN)
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
	    $(DESTDIR)$(SQLDIR) $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(SYSTEMDUNITDIR) \
	    $(DESTDIR)$(SYSCONFDIR)/logrotate.d $(DESTDIR)$(CONFDIR)
	$(INSTALL) -m 755 $(BIN) $(DESTDIR)$(BINDIR)/pgfunnel
	$(INSTALL) -m 644 man/pgfunnel.1 $(DESTDIR)$(MANDIR)/man1/pgfunnel.1
	$(INSTALL) -m 644 man/pgfunnel.ini.5 $(DESTDIR)$(MANDIR)/man5/pgfunnel.ini.5
	$(INSTALL) -m 644 sql/auth_query.sql $(DESTDIR)$(SQLDIR)/auth_query.sql
	$(INSTALL) -m 644 README.md docs/admin.md $(DESTDIR)$(DOCDIR)/
	$(INSTALL) -m 644 conf/pgfunnel.ini conf/pgbouncer-compat.ini $(DESTDIR)$(DOCDIR)/examples/
	sed $(UNIT_EDITS) conf/pgfunnel.service > $(DESTDIR)$(SYSTEMDUNITDIR)/pgfunnel.service
	chmod 644 $(DESTDIR)$(SYSTEMDUNITDIR)/pgfunnel.service
	sed -e 's|@LOGDIR@|$(LOGDIR)|g' conf/pgfunnel.logrotate > $(DESTDIR)$(SYSCONFDIR)/logrotate.d/pgfunnel
	chmod 644 $(DESTDIR)$(SYSCONFDIR)/logrotate.d/pgfunnel
	@# configuration: never overwrite what an administrator may have edited
	@if [ -e $(DESTDIR)$(CONFDIR)/pgfunnel.ini ]; then \
	    echo "keeping the existing $(DESTDIR)$(CONFDIR)/pgfunnel.ini"; \
	else \
	    echo "sed ... conf/pgfunnel.ini > $(DESTDIR)$(CONFDIR)/pgfunnel.ini"; \
	    sed $(INI_SERVICE_EDITS) conf/pgfunnel.ini > $(DESTDIR)$(CONFDIR)/pgfunnel.ini && \
	    chmod 640 $(DESTDIR)$(CONFDIR)/pgfunnel.ini; \
	fi
	@if [ -e $(DESTDIR)$(CONFDIR)/userlist.txt ]; then \
	    echo "keeping the existing $(DESTDIR)$(CONFDIR)/userlist.txt"; \
	else \
	    $(INSTALL) -m 640 conf/userlist.txt $(DESTDIR)$(CONFDIR)/userlist.txt; \
	fi

# Removes what install put there; the configuration only while it is unchanged.
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED_FILES))
	@if sed $(INI_SERVICE_EDITS) conf/pgfunnel.ini | cmp -s - $(DESTDIR)$(CONFDIR)/pgfunnel.ini; then \
	    rm -f $(DESTDIR)$(CONFDIR)/pgfunnel.ini; \
	elif [ -e $(DESTDIR)$(CONFDIR)/pgfunnel.ini ]; then \
	    echo "keeping the edited $(DESTDIR)$(CONFDIR)/pgfunnel.ini"; fi
	@if cmp -s conf/userlist.txt $(DESTDIR)$(CONFDIR)/userlist.txt; then \
	    rm -f $(DESTDIR)$(CONFDIR)/userlist.txt; \
	elif [ -e $(DESTDIR)$(CONFDIR)/userlist.txt ]; then \
	    echo "keeping the edited $(DESTDIR)$(CONFDIR)/userlist.txt"; fi
	-rmdir $(DESTDIR)$(CONFDIR) $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) \
	    $(DESTDIR)$(SQLDIR) $(DESTDIR)$(DATAROOTDIR)/pgfunnel 2>/dev/null

# ---- make deb: a Debian package (debian/), built from a copy of the sources in
# DEB_OUT so that dpkg-buildpackage leaves this tree alone; the .deb lands in DEB_OUT.
# The package build runs no tests (nocheck): make check runs them.
VERSION   := $(shell sed -n 's/^\#define PGFUNNEL_VERSION *"\(.*\)"/\1/p' proxy/version.h)
DEB_OUT   ?= build-deb
DEB_FILES := Makefile README.md proxy conf man sql docs debian tools/deps.sh tests/unit tests/run-unit.sh
deb:
	rm -rf $(DEB_OUT)/pgfunnel-$(VERSION)
	mkdir -p $(DEB_OUT)/pgfunnel-$(VERSION)
	tar -cf - $(DEB_FILES) | tar -xf - -C $(DEB_OUT)/pgfunnel-$(VERSION)
	@# a clean package build: no variables or flags of this make leak into it
	cd $(DEB_OUT)/pgfunnel-$(VERSION) && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
	    DEB_BUILD_OPTIONS="nocheck noddebs parallel=$$(nproc)" DEB_BUILD_PROFILES=nocheck \
	    dpkg-buildpackage -b -uc -us
	rm -rf $(DEB_OUT)/pgfunnel-$(VERSION)
	@ls $(DEB_OUT)/pgfunnel_$(VERSION)_*.deb

# man/pgfunnel.ini.5 is generated from the option table (test_man keeps it in sync).
man-page: $(BIN)
	./$(BIN) --man-ini > man/pgfunnel.ini.5

demo: all $(TOOL_BINS)
	@bash tools/demo.sh

bench: all $(TOOL_BINS)
	@bash tools/bench/run.sh

clean:
	rm -rf build build-asan build-tsan build-fuzz build-deb $(BIN)

-include $(OBJS:.o=.d) $(UNIT_BINS:=.d) $(ITEST_BINS:=.d) $(FUZZ_BINS:=.d)
