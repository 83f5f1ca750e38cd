# outbox: PGXS build
EXTENSION = outbox
EXTVERSION = $(shell grep default_version $(EXTENSION).control | sed -e "s/default_version[[:space:]]*=[[:space:]]*'\([^']*\)'/\1/")
MODULE_big = outbox
OBJS = \
	src/api.o \
	src/config.o \
	src/decoder.o \
	src/dispatcher.o \
	src/http.o \
	src/message.o \
	src/ordering.o \
	src/outcomes.o \
	src/outbox.o \
	src/plugin.o \
	src/policy.o \
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
PG_CFLAGS = -Wall -Werror

# pg_regress: the SQL surface, on a throwaway instance of its own
REGRESS = api errors privileges upgrade
REGRESS_OPTS = --temp-instance=tmp_check_regress --temp-config=test/regress.conf

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Every file includes the shared header, some the dispatcher's own
$(OBJS): $(wildcard src/*.h)
