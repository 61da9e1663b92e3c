"""monbus bridge for nagios (see its issue and README section)."""
