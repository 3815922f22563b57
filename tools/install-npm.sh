#!/bin/sh
# npm packages for the JavaScript SDK tests and the benchmark's kinesalite, kept under build/npm.
# Node.js and npm come from Debian only when the machine has none (an existing Node.js, from
# another source, is used as it is: Debian's npm package would conflict with it).
cd "$(dirname "$0")/.." || exit 1
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    tools/install-deps.sh nodejs npm || exit 1
fi
if [ ! -d build/npm/node_modules/@aws-sdk/client-kinesis ] || [ ! -d build/npm/node_modules/kinesalite ]; then
    mkdir -p build/npm
    npm install --silent --no-audit --no-fund --prefix build/npm @aws-sdk/client-kinesis kinesalite >/dev/null 2>&1 ||
        { echo "npm install failed" >&2; exit 1; }
fi
