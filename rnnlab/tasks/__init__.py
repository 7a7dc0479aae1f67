"""Command-line tasks: each module trains and uses one kind of model (see rnnlab.cli)."""
