"""Command-line interface: click commands by group, each a client of the admin socket."""
