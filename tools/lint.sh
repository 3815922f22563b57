#!/bin/sh
# Lint: sources formatted per .clang-format, and none of the banned functions.
cd "$(dirname "$0")/.." || exit 1
status=0
files=$(ls common/*.[ch] server/*.[ch] server/*/*.[ch] api/*.[ch] api/*/*.[ch] storage/*.[ch] storage/*/*.[ch] tests/unit/*.h tests/unit/*/*.c tests/unit/*/*/*.c tests/fuzz/*.[ch] tools/bench/*.c tools/admin/*.[ch] 2>/dev/null)
[ "$1" = "--fix" ] && { clang-format -i $files; exit 0; }
if command -v clang-format >/dev/null 2>&1; then
    clang-format --dry-run --Werror $files 2>&1 | head -20 | grep . && status=1
else
    echo "lint: clang-format not installed, format check skipped"
fi
if grep -nE '\b(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|strtok)\s*\(' $files; then
    echo "lint: banned function used (see above)"
    status=1
fi
[ $status -eq 0 ] && echo "lint: ok"
exit $status
