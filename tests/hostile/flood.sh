#!/bin/bash
# Far more output than anyone should keep.
echo FIRST-LINE
yes "flood flood flood flood flood flood flood" | head -c __BYTES__
echo
echo LAST-LINE
echo stderr-start >&2
