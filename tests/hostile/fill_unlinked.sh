#!/bin/bash
# Fills a file it deleted but keeps open: no folder shows it, the disk does.
exec 3> hidden.bin
rm hidden.bin
for i in $(seq 1 __COUNT__); do
    head -c 1M /dev/zero >&3 || { echo "write $i failed"; exit 1; }
    sleep 0.02
done
echo "wrote everything"
