"""monbus bridge for snmp (see its issue and README section)."""
