"""Hosts that join by themselves, as calico-node's start-up does: find this host's address, create or
update its Node, optionally claim a block, and keep the address current.

bgpd calls `join_cluster` once at start (`startup.join`); everything else lives here.
"""
