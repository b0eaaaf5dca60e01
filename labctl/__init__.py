"""labctl: builds practical exam labs from topology files and grades them over SSH."""

__version__ = "0.1.0"
