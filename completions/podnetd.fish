complete -c podnetd -s c -l config-dir -d 'Directory of node files' -r -F
complete -c podnetd -l netns -d 'Run inside the named network namespace' -r
complete -c podnetd -l node-name -d 'This node\'s name, which the node files\' `[match]` tables are held against (a file that names other nodes is skipped). Default: the host name' -r
complete -c podnetd -l interval -d 'Seconds between two reconciles when nothing else wakes the daemon' -r
complete -c podnetd -l fight-backoff -d 'Seconds podnetd leaves alone an object that another agent changed back three times within a minute (doubling while the fight lasts, up to 300). An edit of the node files applies at once regardless' -r
complete -c podnetd -l state-dir -d 'Directory of the daemon\'s state (the endpoint registry)' -r -F
complete -c podnetd -l bpf-dir -d 'Where the shaper\'s map and links are pinned (bpffs)' -r -F
complete -c podnetd -l modprobe-dir -d 'Where podnet writes the module options that must hold from boot on (`podnet-rdma.conf`: the RDMA netns mode ib_core loads with)' -r -F
complete -c podnetd -l socket -d 'The API socket' -r -F
complete -c podnetd -l device-plugin-dir -d 'kubelet\'s device plugin directory: where podnetd serves the HCAs `[rdma] devices` offers (`rdma/hca`) and registers them with kubelet\'s socket' -r -F
complete -c podnetd -l metrics-listen -d 'Also serve `GET /metrics` (and nothing else) over TCP on ADDR, for a Prometheus on the node, e.g. 127.0.0.1:9464. Off by default. Under the systemd unit this needs a drop-in allowing AF_INET/AF_INET6' -r
complete -c podnetd -l socket-group -d 'Group whose members may use the socket (besides root)' -r
complete -c podnetd -l log-level -d 'Log level: error, warn, info, debug, trace (or a tracing filter)' -r
complete -c podnetd -l once -d 'Reconcile once and exit (status 0 converged, 1 failed, 2 invalid files)'
complete -c podnetd -s h -l help -d 'Print help'
complete -c podnetd -s V -l version -d 'Print version'
