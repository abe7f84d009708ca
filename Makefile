# Wharf build. Two variants of everything: release (build/release) and
# ASan+UBSan (build/asan). `make run` and `make test` are the two commands
# the README promises; the rest are parts of them.

# Parallel by default: one job per core unless -j was given.
ifeq ($(filter -j%,$(MAKEFLAGS)),)
MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 2)
endif

CC      ?= cc
PKGS    := openssl sqlite3 jansson zlib libargon2 libcurl libqrencode libseccomp libpq
# Bounded snprintf truncation is deliberate everywhere (messages are cut,
# never overflowed), so -Wformat-truncation is off.
WARN    := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wformat=2 \
           -Wvla -Wno-format-nonliteral -Wno-format-truncation
CPPFLAGS_ALL := -Isrc -DWHARF_VERSION=\"$(shell cat VERSION)\" \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lssl -lcrypto -lsqlite3 -ljansson -lz -largon2 -lcurl -lqrencode -lseccomp -lpq) \
           -lhttp_parser -lpthread

FLAGS_release := -O2 -g -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE
LDFLAGS_release := -pie -Wl,-z,relro,-z,now
FLAGS_asan    := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
                 -fno-sanitize-recover=undefined
LDFLAGS_asan  := -fsanitize=address,undefined
# ThreadSanitizer: the unit tests and a short e2e subset (scripts/test.sh).
FLAGS_tsan    := -O1 -g -fno-omit-frame-pointer -fsanitize=thread
LDFLAGS_tsan  := -fsanitize=thread

SRC      := $(shell find src -name '*.c' | sort)
LIB_SRC  := $(filter-out src/main.c,$(SRC))
UNIT_SRC := $(wildcard tests/unit/test_*.c)
# The console's files, compiled into the binary (src/web/console.c).
WEB_FILES := $(shell find web -type f ! -name '.*' | sort)
WEB_GEN  := build/gen/web_assets.c
DATA     ?= ./wharf-data
FILES    ?= ./wharf-files
PYTEST   ?= /usr/bin/python3 -m pytest

.PHONY: all release asan tsan unit e2e test run deps deps-test fuzz fuzz-smoke bench lint clean install

all: release

define variant
build/$(1)/obj/%.o: src/%.c VERSION
	@mkdir -p $$(dir $$@)
	$$(CC) $$(WARN) $$(FLAGS_$(1)) $$(CPPFLAGS_ALL) -MMD -MP -c $$< -o $$@

build/$(1)/obj/gen/web_assets.o: $(WEB_GEN)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(WARN) $$(FLAGS_$(1)) $$(CPPFLAGS_ALL) -c $$< -o $$@

build/$(1)/libwharf.a: $$(patsubst src/%.c,build/$(1)/obj/%.o,$$(LIB_SRC)) \
    build/$(1)/obj/gen/web_assets.o
	@rm -f $$@
	ar rcs $$@ $$^

build/$(1)/wharf: build/$(1)/obj/main.o build/$(1)/libwharf.a
	$$(CC) $$(FLAGS_$(1)) $$(LDFLAGS_$(1)) -o $$@ $$^ $$(LIBS)

build/$(1)/tests/%: tests/unit/%.c tests/unit/testutil.h tests/unit/as2_testkit.h tests/unit/store_fixture.h \
    build/$(1)/libwharf.a
	@mkdir -p $$(dir $$@)
	$$(CC) $$(WARN) $$(FLAGS_$(1)) $$(CPPFLAGS_ALL) -Itests/unit $$(LDFLAGS_$(1)) \
	    -o $$@ $$< build/$(1)/libwharf.a $$(LIBS) -lcmocka

# The sandbox probe of tests/e2e/test_r22_sandbox.py (not a cmocka test).
build/$(1)/tests/sandbox_probe: tests/unit/sandbox_probe.c build/$(1)/libwharf.a
	@mkdir -p $$(dir $$@)
	$$(CC) $$(WARN) $$(FLAGS_$(1)) $$(CPPFLAGS_ALL) $$(LDFLAGS_$(1)) \
	    -o $$@ $$< build/$(1)/libwharf.a $$(LIBS)

build/$(1)/bench/%: bench/%.c build/$(1)/libwharf.a
	@mkdir -p $$(dir $$@)
	$$(CC) $$(WARN) $$(FLAGS_$(1)) $$(CPPFLAGS_ALL) $$(LDFLAGS_$(1)) \
	    -o $$@ $$< build/$(1)/libwharf.a $$(LIBS)
endef
$(eval $(call variant,release))
$(eval $(call variant,asan))
$(eval $(call variant,tsan))

# Header dependencies recorded by -MMD.
-include $(shell find build -name '*.d' 2>/dev/null)

# Written to a temp file and renamed: a failed run leaves no half file.
$(WEB_GEN): $(WEB_FILES) scripts/embed-web.pl
	@mkdir -p $(dir $@)
	perl scripts/embed-web.pl web > $@.tmp
	@mv $@.tmp $@

UNIT_BINS = $(patsubst tests/unit/%.c,build/asan/tests/%,$(UNIT_SRC))
TSAN_BINS = $(patsubst tests/unit/%.c,build/tsan/tests/%,$(UNIT_SRC))

release: build/release/wharf build/release/tests/sandbox_probe
asan: build/asan/wharf $(UNIT_BINS) build/asan/tests/sandbox_probe
tsan: build/tsan/wharf $(TSAN_BINS)

# Unit tests (cmocka) under ASan+UBSan; each binary prints its summary.
unit: asan
	@scripts/run-unit.sh $(UNIT_BINS)

# End-to-end tests drive the ASan binary as a black box.
e2e: asan release
	WHARF_BIN=$(CURDIR)/build/asan/wharf $(PYTEST) -q -ra tests/e2e

fuzz-smoke:
	@scripts/fuzz.sh smoke

fuzz:
	@scripts/fuzz.sh long

# Builds both variants, then lint, unit tests, a short fuzz run and the
# end-to-end tests; scripts/test.sh prints every runner's summary.
test: deps-test
	@$(MAKE) --no-print-directory -j2 release asan tsan
	@scripts/test.sh $(UNIT_BINS)

deps:
	@scripts/deps.sh

deps-test:
	@scripts/deps.sh test

run: deps
	@$(MAKE) --no-print-directory release
	@mkdir -p "$(FILES)/in" "$(FILES)/out"
	@if [ ! -d "$(DATA)" ]; then build/release/wharf init --data "$(DATA)" \
	    --allowed-paths "$(abspath $(FILES))" && \
	    if [ "$$(id -u)" -eq 0 ]; then echo "allow_root = yes" >>"$(DATA)/wharf.conf"; \
	    echo "make run as root: $(DATA)/wharf.conf allows serve to stay root"; fi; fi
	build/release/wharf serve --data "$(DATA)"

bench: release
	@bench/run.sh

lint:
	@scripts/lint.sh

# ---- make install (PREFIX, DESTDIR): the binary, the hardened systemd unit,
# the logrotate snippet, wharf(8), the docs (SECURITY.md) and wharf-setup,
# which makes the system user, /etc/wharf and the data directory. It runs
# by itself only as root without DESTDIR; a package runs it as postinst.
PREFIX        ?= /usr/local
BINDIR        ?= $(PREFIX)/bin
SBINDIR       ?= $(PREFIX)/sbin
MANDIR        ?= $(PREFIX)/share/man
DOCDIR        ?= $(PREFIX)/share/doc/wharf
UNITDIR       ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR    ?= /etc
WHARF_DATADIR ?= /var/lib/wharf
WHARF_USER    ?= wharf
WHARF_RELOAD  ?= systemctl reload wharf.service
INSTALL_BIN   ?= build/release/wharf

SUBST = sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SBINDIR@|$(SBINDIR)|g' \
            -e 's|@DOCDIR@|$(DOCDIR)|g' -e 's|@UNITDIR@|$(UNITDIR)|g' \
            -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
            -e 's|@DATADIR@|$(WHARF_DATADIR)|g' -e 's|@USER@|$(WHARF_USER)|g' \
            -e 's|@RELOAD@|$(WHARF_RELOAD)|g' \
            -e 's|@VERSION@|$(shell cat VERSION)|g' \
            -e 's|@DATE@|$(shell date -u -r VERSION +%Y-%m-%d)|g'

install: $(INSTALL_BIN)
	install -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) \
	    $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR) $(DESTDIR)$(UNITDIR) \
	    $(DESTDIR)$(SYSCONFDIR)/logrotate.d
	install -d -m 0750 $(DESTDIR)$(SYSCONFDIR)/wharf
	install -m 0755 $(INSTALL_BIN) $(DESTDIR)$(BINDIR)/wharf
	$(SUBST) dist/wharf.service.in > $(DESTDIR)$(UNITDIR)/wharf.service
	$(SUBST) dist/wharf.logrotate.in > $(DESTDIR)$(SYSCONFDIR)/logrotate.d/wharf
	$(SUBST) dist/wharf.8.in > $(DESTDIR)$(MANDIR)/man8/wharf.8
	$(SUBST) dist/wharf-setup.in > $(DESTDIR)$(SBINDIR)/wharf-setup
	chmod 0644 $(DESTDIR)$(UNITDIR)/wharf.service \
	    $(DESTDIR)$(SYSCONFDIR)/logrotate.d/wharf $(DESTDIR)$(MANDIR)/man8/wharf.8
	chmod 0755 $(DESTDIR)$(SBINDIR)/wharf-setup
	install -m 0644 SECURITY.md README.md docs/operations.md $(DESTDIR)$(DOCDIR)
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
	    $(SBINDIR)/wharf-setup; \
	else \
	    echo "install: as root, run $(SBINDIR)/wharf-setup (the $(WHARF_USER) user, $(SYSCONFDIR)/wharf, $(WHARF_DATADIR))"; \
	fi

clean:
	rm -rf build
