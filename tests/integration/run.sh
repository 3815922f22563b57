#!/bin/sh
# Run the integration suite from the repository root; extra arguments go to pytest.
#   tests/integration/run.sh                       start build/kinesd and test it
#   KINESD_ENDPOINT=http://127.0.0.1:4599 tests/integration/run.sh -k put_record
cd "$(dirname "$0")/../.." || exit 1
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration "$@"
