#!/bin/bash
# Doubles one shell variable until memory runs out.
hog=x
while :; do hog=$hog$hog; done
echo "held ${#hog} bytes"
