"""felixd's kernel side: netlink (bulk and pyroute2), devices, nftables, sysctls, each in a chosen netns."""
