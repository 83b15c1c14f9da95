#!/bin/bash
# Leaves processes everywhere a careless runner would miss them, then outlives its timeout.
M=__MARKER__
(exec -a "$M-child" sleep 300) &
( (exec -a "$M-grandchild" sleep 300) & wait ) &
setsid bash -c "exec -a $M-setsid sleep 300" &
nohup bash -c "exec -a $M-nohup sleep 300" >/dev/null 2>&1 &
( setsid bash -c "(exec -a $M-orphan sleep 300) & exit 0" & )
bash -c "trap '' TERM HUP INT; exec -a $M-ignores-term sleep 300" &
echo "tree started"
exec -a "$M-main" sleep 60
