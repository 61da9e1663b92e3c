#!/bin/sh
# Open vSwitch: export sFlow of bridge br0 to monbus (flow samples 1-in-64, counters every
# 10 s).  The agent address is the IP of the interface named in `agent=`.
ovs-vsctl -- --id=@sflow create sflow agent=eth0 target="\"127.0.0.1:6343\"" \
    header=128 sampling=64 polling=10 -- set bridge br0 sflow=@sflow
# remove again:  ovs-vsctl -- clear bridge br0 sflow
