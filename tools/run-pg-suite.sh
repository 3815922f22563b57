#!/bin/sh
# The integration suite against two kinesd front-ends sharing one PostgreSQL, each client
# connection sent to one of them at random (tests/integration/frontends.py). Tests that start
# servers of their own are skipped there (they run in the ordinary suite). Arguments go to
# pytest (test files or -k selections); none: the whole suite.
cd "$(dirname "$0")/.." || exit 1
[ $# -gt 0 ] || set -- tests/integration
exec tools/with-postgres.sh /usr/bin/python3 tests/integration/frontends.py --count 2 -- \
    /usr/bin/python3 -m pytest -q -p no:cacheprovider "$@"
