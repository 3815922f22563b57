#!/bin/sh
# Run each unit test binary; each prints its own "N passed, M failed" line.
status=0
for t in "$@"; do
    "$t" || status=1
done
exit $status
