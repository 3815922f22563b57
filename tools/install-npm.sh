#!/bin/sh
# npm packages for the JavaScript SDK tests and the benchmark's kinesalite, kept under build/npm.
cd "$(dirname "$0")/.." || exit 1
if [ ! -d build/npm/node_modules/@aws-sdk/client-kinesis ] || [ ! -d build/npm/node_modules/kinesalite ]; then
    mkdir -p build/npm
    npm install --silent --no-audit --no-fund --prefix build/npm @aws-sdk/client-kinesis kinesalite >/dev/null 2>&1 ||
        { echo "npm install failed" >&2; exit 1; }
fi
