#!/bin/sh
# Integration suites: pytest (boto3 and the AWS CLI), then node's test runner (JavaScript SDK).
cd "$(dirname "$0")/.." || exit 1
status=0
/usr/bin/python3 -m pytest -q -p no:cacheprovider --tb=short tests/integration "$@" || status=1
if ls tests/integration/*.test.mjs >/dev/null 2>&1; then
    NODE_PATH="$PWD/build/npm/node_modules" node --test tests/integration/*.test.mjs || status=1
fi
exit $status
