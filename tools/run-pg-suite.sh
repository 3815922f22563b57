#!/bin/sh
# The integration suite against two kinesd front-ends sharing one PostgreSQL, each request
# sent to one of them at random (tests/integration/frontends.py). Tests that start servers
# of their own are skipped there (they run in the ordinary suite). Extra arguments go to pytest.
cd "$(dirname "$0")/.." || exit 1
exec tools/with-postgres.sh /usr/bin/python3 tests/integration/frontends.py --count 2 -- \
    /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration "$@"
