#!/bin/sh
# Every #include in src/ points down the layer order (tests/check_layers.py).
exec python3 "$2/tests/check_layers.py" "$2/src" --list
