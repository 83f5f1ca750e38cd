# outbox: PGXS build
EXTENSION = outbox
EXTVERSION = $(shell grep default_version $(EXTENSION).control | sed -e "s/default_version[[:space:]]*=[[:space:]]*'\([^']*\)'/\1/")
MODULE_big = outbox
OBJS = \
	src/api.o \
	src/config.o \
	src/databases.o \
	src/decoder.o \
	src/dispatcher.o \
	src/http.o \
	src/message.o \
	src/ordering.o \
	src/outcomes.o \
	src/outbox.o \
	src/plugin.o \
	src/policy.o \
	src/policy_test.o \
	src/request.o \
	src/shmem.o \
	src/signature.o \
	src/sql.o \
	src/store.o \
	src/tracking.o \
	src/views.o
DATA = $(wildcard sql/$(EXTENSION)--*.sql)
PGFILEDESC = "outbox - transactional outbox delivering webhooks"

SHLIB_LINK = -lcurl
PG_CPPFLAGS = -DOUTBOX_VERSION=\"$(EXTVERSION)\"
PG_CFLAGS = -Wall -Werror -MMD -MP
EXTRA_CLEAN = $(OBJS:.o=.d)

# pg_regress: the SQL surface, on a throwaway instance of its own
REGRESS = api errors key_head policy privileges upgrade
REGRESS_OPTS = --temp-instance=tmp_check_regress --temp-config=test/regress.conf

# isolation tests: producers racing one another (specs/), on an instance of
# their own as well
ISOLATION = concurrent_enqueue
ISOLATION_OPTS = --temp-instance=tmp_check_isolation --temp-config=test/regress.conf

# TAP tests: test/t/*.pl with the helpers of test/lib, run by PGXS's
# prove_installcheck (test/run-tests.sh runs the two kinds apart)
TAP_TESTS = 1
PROVE_TESTS ?= test/t/*.pl

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# After PGXS, which sets it: where prove finds OutboxTest.pm
PG_PROVE_FLAGS += -I $(srcdir)/test/lib

# Each object's header dependencies, as the compiler found them (-MMD);
# the files that use OUTBOX_VERSION are rebuilt when it changes
-include $(OBJS:.o=.d)
src/dispatcher.o src/http.o: $(EXTENSION).control
