#!/bin/sh
# The integration suite against two kinesd front-ends sharing one PostgreSQL, each client
# request sent to one of them at random (tests/integration/frontends.py). Tests that start
# servers of their own are skipped there (they run in the ordinary suite). The front-ends run
# without throughput limits: those hold across front-ends by sharing each bucket between them
# (test_pg_frontends.py checks that), so a burst that one front-end's whole bucket admits, which
# the suite's tests are paced for, may be turned away by the share a front-end holds at that
# moment. Arguments go to pytest (test files or -k selections); none: the whole suite.
cd "$(dirname "$0")/.." || exit 1
[ $# -gt 0 ] || set -- tests/integration
exec tools/with-postgres.sh /usr/bin/python3 tests/integration/frontends.py --count 2 --flag=--no-limits -- \
    /usr/bin/python3 -m pytest -q -p no:cacheprovider --tb=short "$@"
