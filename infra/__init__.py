"""The Pulumi program's components; __main__.py wires them together."""
