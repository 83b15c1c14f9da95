#!/bin/bash
# Reads another job's files and the app home while that job runs beside it.
sleep __WAIT__
for f in /proc/[0-9]*/cwd/run.sh /proc/[0-9]*/root/sandbox/job/run.sh __RUNS__/*/job/run.sh; do
    [ "$f" -ef run.sh ] || cat "$f" 2>/dev/null
done
for e in /proc/[0-9]*/environ; do
    tr '\0' '\n' < "$e" 2>/dev/null
done | grep SYFT_BG_RUN | grep -v "=$SYFT_BG_RUN\$"
ls __RUNS__ 2>&1
for path in __PATHS__; do
    cat "$path" 2>&1
done
echo "uid $(id -u)"
echo "== end"
