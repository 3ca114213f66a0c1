"""The command-line layer: parses, validates and calls library functions. One module per command."""
