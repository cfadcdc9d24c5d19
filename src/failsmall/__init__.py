"""failsmall: an edge platform that fails small."""
