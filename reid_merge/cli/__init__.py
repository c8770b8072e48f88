"""The command line (typer): commands built over the app layer."""
