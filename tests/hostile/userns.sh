#!/bin/bash
# Tries to make user namespaces (where it would be root and could mount).
if unshare --user true 2>/dev/null; then echo "MADE userns"; else echo "refused userns"; fi
if unshare --user --map-root-user true 2>/dev/null; then echo "MADE root userns"; else echo "refused root userns"; fi
if bwrap --unshare-user --ro-bind / / true 2>/dev/null; then echo "MADE bwrap userns"; else echo "refused bwrap userns"; fi
echo "== end"
