# ml-connector build.
#
#   make            build build/ml-connector, the test fixtures and tools
#   make test       unit + integration tests, then the same under ASan+UBSan,
#                   then the threaded tests under TSan
#   make bench      benchmarks (prints figures and ratios to ceilings)
#   make demo       run the whole flow locally against the fake Dataverse
#
# Sources are found by folder: every .c in common/ (the bottom layer: log,
# metrics) server/ idoc/ queue/ config/ d365/ except server/main.c goes into
# $(BUILD)/libmlc.a; every tests/unit/test_*.c becomes a cmocka binary; every
# tests/tools/*.c, test-fixtures/*.c and bench/*.c a helper binary. Adding a
# module needs no edit here.

BUILD   ?= build
SAN     ?=
CC      ?= cc
PKGS    := libmicrohttpd libxml-2.0 libcurl libcjson lmdb zlib openssl gnutls

OPT     ?= -O2
CFLAGS_ALL := -std=c11 -D_DEFAULT_SOURCE -D_GNU_SOURCE -Wall -Wextra -Werror \
              -Wshadow -Wstrict-prototypes -Wformat=2 -g $(OPT) -I. -pthread
LDLIBS_ALL := -pthread -lm

ifeq ($(SAN),asan)
CFLAGS_ALL += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS_ALL += -fsanitize=address,undefined
endif
ifeq ($(SAN),tsan)
CFLAGS_ALL += -fsanitize=thread -fno-omit-frame-pointer
LDFLAGS_ALL += -fsanitize=thread
endif

# A fresh machine installs its packages on first use (root only). The
# container build installs its own and sets MLC_SKIP_DEPS=1.
ifneq ($(MLC_SKIP_DEPS),1)
DEPS_OK := $(shell scripts/install-deps.sh --check >/dev/null 2>&1 && echo yes)
endif
ifeq ($(MLC_SKIP_DEPS)$(DEPS_OK),)
$(info make: some packages are missing; running scripts/install-deps.sh)
$(shell scripts/install-deps.sh >&2)
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))
CMOCKA_CFLAGS := $(shell pkg-config --cflags cmocka 2>/dev/null)
CMOCKA_LIBS   := $(shell pkg-config --libs cmocka 2>/dev/null)

CFLAGS_ALL += $(PKG_CFLAGS) $(CFLAGS)
LDFLAGS_ALL += $(LDFLAGS)

# LIB_DIRS narrows the library to some modules (e.g. LIB_DIRS=idoc while the
# others are being written); the default is all of them.
LIB_DIRS  ?= common server idoc queue config d365
LIB_SRC   := $(filter-out server/main.c,$(sort $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_SRC  := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRC  := $(sort $(wildcard tests/tools/*.c test-fixtures/*.c))
TOOL_BIN  := $(patsubst %.c,$(BUILD)/tools/%,$(notdir $(TOOL_SRC)))
PRELOAD_SRC := $(sort $(wildcard tests/preload/*.c))
PRELOAD_SO  := $(PRELOAD_SRC:tests/preload/%.c=$(BUILD)/preload/%.so)
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
HDRS      := $(wildcard */*.h tests/*/*.h)

.PHONY: all test check bench demo clean deps
all: $(BUILD)/ml-connector $(TOOL_BIN) $(PRELOAD_SO)

deps:
	scripts/install-deps.sh

$(BUILD)/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/libmlc.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/ml-connector: $(BUILD)/obj/server/main.o $(BUILD)/libmlc.a
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) $(LDLIBS_ALL)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libmlc.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CMOCKA_CFLAGS) $(LDFLAGS_ALL) -o $@ $< $(BUILD)/libmlc.a $(CMOCKA_LIBS) $(PKG_LIBS) $(LDLIBS_ALL)

define tool_rule
$(BUILD)/tools/$(notdir $(basename $(1))): $(1) $(BUILD)/libmlc.a $(HDRS)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS_ALL) $$(LDFLAGS_ALL) -o $$@ $$< $(BUILD)/libmlc.a $$(PKG_LIBS) $$(LDLIBS_ALL)
endef
$(foreach s,$(TOOL_SRC),$(eval $(call tool_rule,$(s))))

# Fault-injection libraries for tests (LD_PRELOAD into the real binary):
# plain flags, never sanitizers, whatever the build.
$(BUILD)/preload/%.so: tests/preload/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -shared -fPIC -o $@ $< -ldl

$(BUILD)/bench/%: bench/%.c $(BUILD)/libmlc.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ $< $(BUILD)/libmlc.a $(PKG_LIBS) $(LDLIBS_ALL)

# One pass of every test against one build.
check: all $(UNIT_BIN)
	tests/run.sh $(BUILD)

# The full suite: plain build, then ASan+UBSan, then TSan on the threaded tests.
test:
	$(MAKE) --no-print-directory check BUILD=build
	$(MAKE) --no-print-directory check BUILD=build-asan SAN=asan OPT=-O1
	$(MAKE) --no-print-directory all BUILD=build-tsan SAN=tsan OPT=-O1 $(patsubst %,build-tsan/tests/%,$(filter test_%,$(TSAN_TESTS)))
	TESTS_ONLY="$(TSAN_TESTS)" tests/run.sh build-tsan

TSAN_TESTS ?= test_queue test_idoc test_d365 ingest_basic crash_kill9 delivery_e2e delivery_order

bench: all $(BENCH_BIN)
	bench/run.sh $(BUILD)
	bench/delivery.sh $(BUILD)

demo: all
	scripts/demo.sh $(BUILD)

clean:
	rm -rf build build-asan build-tsan
