# agent_journal: PGXS build of the PostgreSQL module.
#   make && sudo make install && make installcheck
# The whole test run (unit, regression, isolation, scripts) against a
# throwaway cluster: ./scripts/test   (see README)

EXTENSION  = agent_journal
MODULE_big = agent_journal
CORE_SRCS := $(sort $(wildcard src/core/*.cpp))
PG_SRCS   := $(sort $(wildcard src/pg/*.cpp))
OBJS       = $(CORE_SRCS:.cpp=.o) $(PG_SRCS:.cpp=.o)
# Install and upgrade scripts live in extension/ (not tests).
DATA       = $(sort $(wildcard extension/agent_journal--*.sql))

REGRESS      = $(basename $(notdir $(sort $(wildcard sql/*.sql))))
REGRESS_OUT ?= .
REGRESS_OPTS = --inputdir=. --outputdir=$(REGRESS_OUT) --load-extension=agent_journal
ISOLATION      = $(basename $(notdir $(sort $(wildcard tests/isolation/specs/*.spec))))
ISOLATION_OUT ?= output_iso
ISOLATION_OPTS = --inputdir=tests/isolation --outputdir=$(ISOLATION_OUT) --load-extension=agent_journal

PG_CONFIG ?= pg_config
PG_CPPFLAGS = -Isrc
PG_CXXFLAGS = -std=c++17 -Wno-register -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
# Header dependencies (PGXS tracks none unless the server was configured
# with --enable-depend): a changed header rebuilds every object using it.
PG_CXXFLAGS += -MMD -MP
EXTRA_CLEAN = $(OBJS:.o=.d)
SHLIB_LINK += -lstdc++ -lcurl

# No LLVM bitcode for the C++ module: JIT inlining of these functions buys
# nothing and PGXS would compile them with clang without our flags.
override with_llvm = no

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

-include $(OBJS:.o=.d)
