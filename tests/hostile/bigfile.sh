#!/bin/bash
# Writes one file larger than allowed.
set -e
head -c __MEGABYTES__M /dev/zero > big.bin
echo "wrote it all"
