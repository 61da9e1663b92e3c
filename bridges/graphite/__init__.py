"""monbus bridge for graphite (see its issue and README section)."""
