#!/bin/sh
# npm packages for the JavaScript SDK tests and the benchmark's peers (kinesalite, and kinesis-mock
# from the package kinesis-local: a Scala.js build that runs on Node.js, no JVM), kept under
# build/npm. Node.js and npm come from Debian only when the machine has none (an existing Node.js,
# from another source, is used as it is: Debian's npm package would conflict with it).
cd "$(dirname "$0")/.." || exit 1
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    tools/install-deps.sh nodejs npm || exit 1
fi
PACKAGES="@aws-sdk/client-kinesis @aws-crypto/client-node kinesalite kinesis-local"
missing=0
for p in $PACKAGES; do
    [ -d "build/npm/node_modules/$p" ] || missing=1
done
if [ $missing = 1 ]; then
    mkdir -p build/npm
    # shellcheck disable=SC2086
    npm install --silent --no-audit --no-fund --prefix build/npm $PACKAGES >/dev/null 2>&1 ||
        { echo "npm install failed" >&2; exit 1; }
fi
