#!/bin/bash
# Burns CPU until something stops it.
while :; do :; done
