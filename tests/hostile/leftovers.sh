#!/bin/bash
# Exits at once with success but leaves detached processes behind.
M=__MARKER__
setsid bash -c "exec -a $M-daemon sleep 300" </dev/null >/dev/null 2>&1 &
nohup bash -c "exec -a $M-nohup sleep 300" >/dev/null 2>&1 &
echo "left some processes behind"
