"""monbus bridge for collectd (see its issue and README section)."""
