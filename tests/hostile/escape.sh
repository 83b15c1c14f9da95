#!/bin/bash
# Tries to write outside its own folder and to reach the network.
for target in __TARGETS__; do
    if echo escaped > "$target" 2>/dev/null; then echo "WROTE $target"; else echo "refused $target"; fi
done
if exec 3<>/dev/tcp/127.0.0.1/__PORT__; then echo CONNECTED; else echo NO-NETWORK; fi
echo inside > code/outputs/ok.txt
