#!/bin/bash
# Writes 1 MB files into a folder until a write fails (each file stays below
# the file size limit, so only a disk limit can stop it).
dir=__DIR__
mkdir -p "$dir"
for i in $(seq 1 __COUNT__); do
    head -c 1M /dev/zero > "$dir/fill-$i" || { echo "write $i failed"; exit 1; }
    sleep 0.02
done
echo "wrote everything"
