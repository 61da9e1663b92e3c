"""monbus bridge for ganglia (see its issue and README section)."""
