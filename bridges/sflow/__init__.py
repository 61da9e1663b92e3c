"""monbus bridge for sflow (see its issue and README section)."""
