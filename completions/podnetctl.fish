# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_podnetctl_global_optspecs
    string join \n c/config-dir= netns= node-name= socket= direct state-dir= bpf-dir= modprobe-dir= h/help V/version
end

function __fish_podnetctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_podnetctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_podnetctl_using_subcommand
    set -l cmd (__fish_podnetctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c podnetctl -n "__fish_podnetctl_needs_command" -s c -l config-dir -d 'Directory of node files' -r -F
complete -c podnetctl -n "__fish_podnetctl_needs_command" -l netns -d 'Run inside the named network namespace (as made by `ip netns add NAME`)' -r
complete -c podnetctl -n "__fish_podnetctl_needs_command" -l node-name -d 'This node\'s name, which the node files\' `[match]` tables are held against (a file that names other nodes is skipped). Default: the host name' -r
complete -c podnetctl -n "__fish_podnetctl_needs_command" -l socket -d 'podnetd\'s socket: when a daemon answers there, status, apply and endpoints go through it, so two appliers never race. Default /run/podnet/podnet.sock, except with --netns (that namespace\'s daemon has its own socket: name it)' -r -F
complete -c podnetctl -n "__fish_podnetctl_needs_command" -l state-dir -d 'podnetd\'s state directory: the endpoint registry a direct apply plans the shaper\'s map entries against, and the shaping records' -r -F
complete -c podnetctl -n "__fish_podnetctl_needs_command" -l bpf-dir -d 'Where the shaper\'s map and links are pinned (bpffs), as podnetd\'s `--bpf-dir`' -r -F
complete -c podnetctl -n "__fish_podnetctl_needs_command" -l modprobe-dir -d 'Where podnet writes the module options that must hold from boot on (`podnet-rdma.conf`: the RDMA netns mode), as podnetd\'s `--modprobe-dir`' -r -F
complete -c podnetctl -n "__fish_podnetctl_needs_command" -l direct -d 'Work on the host directly even when podnetd runs'
complete -c podnetctl -n "__fish_podnetctl_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c podnetctl -n "__fish_podnetctl_needs_command" -s V -l version -d 'Print version'
complete -c podnetctl -n "__fish_podnetctl_needs_command" -f -a "validate" -d 'Check the node files and report every error; touches nothing'
complete -c podnetctl -n "__fish_podnetctl_needs_command" -f -a "apply" -d 'Converge the host to the node files (or, with --dry-run, show the plan)'
complete -c podnetctl -n "__fish_podnetctl_needs_command" -f -a "show" -d 'Print the host\'s current state in the node file format'
complete -c podnetctl -n "__fish_podnetctl_needs_command" -f -a "status" -d 'Compare the node files with the host, object by object'
complete -c podnetctl -n "__fish_podnetctl_needs_command" -f -a "endpoints" -d 'List the pod endpoints registered with podnetd'
complete -c podnetctl -n "__fish_podnetctl_needs_command" -f -a "try" -d 'Put the node files in force on trial; podnetd rolls back unless confirmed'
complete -c podnetctl -n "__fish_podnetctl_needs_command" -f -a "confirm" -d 'Keep the generation on trial'
complete -c podnetctl -n "__fish_podnetctl_needs_command" -f -a "bandwidth" -d 'Pod bandwidth: `bandwidth list`'
complete -c podnetctl -n "__fish_podnetctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand validate" -s o -l output -d 'Output format. With json the errors of invalid files are in the answer too (`valid: false`), each `file:line:col: key: message`' -r -f -a "text\t''
json\t''"
complete -c podnetctl -n "__fish_podnetctl_using_subcommand validate" -s c -l config-dir -d 'Directory of node files' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand validate" -l netns -d 'Run inside the named network namespace (as made by `ip netns add NAME`)' -r
complete -c podnetctl -n "__fish_podnetctl_using_subcommand validate" -l node-name -d 'This node\'s name, which the node files\' `[match]` tables are held against (a file that names other nodes is skipped). Default: the host name' -r
complete -c podnetctl -n "__fish_podnetctl_using_subcommand validate" -l socket -d 'podnetd\'s socket: when a daemon answers there, status, apply and endpoints go through it, so two appliers never race. Default /run/podnet/podnet.sock, except with --netns (that namespace\'s daemon has its own socket: name it)' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand validate" -l state-dir -d 'podnetd\'s state directory: the endpoint registry a direct apply plans the shaper\'s map entries against, and the shaping records' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand validate" -l bpf-dir -d 'Where the shaper\'s map and links are pinned (bpffs), as podnetd\'s `--bpf-dir`' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand validate" -l modprobe-dir -d 'Where podnet writes the module options that must hold from boot on (`podnet-rdma.conf`: the RDMA netns mode), as podnetd\'s `--modprobe-dir`' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand validate" -s q -l quiet -d 'Print nothing on success'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand validate" -l direct -d 'Work on the host directly even when podnetd runs'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand validate" -s h -l help -d 'Print help'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand validate" -s V -l version -d 'Print version'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand apply" -s o -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c podnetctl -n "__fish_podnetctl_using_subcommand apply" -l max-disruption -d 'Refuse a plan with a step more disruptive than this (hitless, link-flap, vf-reset, needs-reboot). podnetd applies edits as they land: to gate an edit, check its files first with `podnetctl -c STAGING apply --dry-run --max-disruption LEVEL`' -r
complete -c podnetctl -n "__fish_podnetctl_using_subcommand apply" -s c -l config-dir -d 'Directory of node files' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand apply" -l netns -d 'Run inside the named network namespace (as made by `ip netns add NAME`)' -r
complete -c podnetctl -n "__fish_podnetctl_using_subcommand apply" -l node-name -d 'This node\'s name, which the node files\' `[match]` tables are held against (a file that names other nodes is skipped). Default: the host name' -r
complete -c podnetctl -n "__fish_podnetctl_using_subcommand apply" -l socket -d 'podnetd\'s socket: when a daemon answers there, status, apply and endpoints go through it, so two appliers never race. Default /run/podnet/podnet.sock, except with --netns (that namespace\'s daemon has its own socket: name it)' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand apply" -l state-dir -d 'podnetd\'s state directory: the endpoint registry a direct apply plans the shaper\'s map entries against, and the shaping records' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand apply" -l bpf-dir -d 'Where the shaper\'s map and links are pinned (bpffs), as podnetd\'s `--bpf-dir`' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand apply" -l modprobe-dir -d 'Where podnet writes the module options that must hold from boot on (`podnet-rdma.conf`: the RDMA netns mode), as podnetd\'s `--modprobe-dir`' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand apply" -l dry-run -d 'Print the plan (exactly the steps apply would run) and change nothing'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand apply" -l force -d 'Apply even steps that interrupt the interface carrying the node\'s default route'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand apply" -l direct -d 'Work on the host directly even when podnetd runs'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand apply" -s h -l help -d 'Print help'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand apply" -s V -l version -d 'Print version'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand show" -s o -l output -d 'Output format' -r -f -a "toml\t''
json\t''"
complete -c podnetctl -n "__fish_podnetctl_using_subcommand show" -s c -l config-dir -d 'Directory of node files' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand show" -l netns -d 'Run inside the named network namespace (as made by `ip netns add NAME`)' -r
complete -c podnetctl -n "__fish_podnetctl_using_subcommand show" -l node-name -d 'This node\'s name, which the node files\' `[match]` tables are held against (a file that names other nodes is skipped). Default: the host name' -r
complete -c podnetctl -n "__fish_podnetctl_using_subcommand show" -l socket -d 'podnetd\'s socket: when a daemon answers there, status, apply and endpoints go through it, so two appliers never race. Default /run/podnet/podnet.sock, except with --netns (that namespace\'s daemon has its own socket: name it)' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand show" -l state-dir -d 'podnetd\'s state directory: the endpoint registry a direct apply plans the shaper\'s map entries against, and the shaping records' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand show" -l bpf-dir -d 'Where the shaper\'s map and links are pinned (bpffs), as podnetd\'s `--bpf-dir`' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand show" -l modprobe-dir -d 'Where podnet writes the module options that must hold from boot on (`podnet-rdma.conf`: the RDMA netns mode), as podnetd\'s `--modprobe-dir`' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand show" -l direct -d 'Work on the host directly even when podnetd runs'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand show" -s h -l help -d 'Print help'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand show" -s V -l version -d 'Print version'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand status" -s o -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c podnetctl -n "__fish_podnetctl_using_subcommand status" -s c -l config-dir -d 'Directory of node files' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand status" -l netns -d 'Run inside the named network namespace (as made by `ip netns add NAME`)' -r
complete -c podnetctl -n "__fish_podnetctl_using_subcommand status" -l node-name -d 'This node\'s name, which the node files\' `[match]` tables are held against (a file that names other nodes is skipped). Default: the host name' -r
complete -c podnetctl -n "__fish_podnetctl_using_subcommand status" -l socket -d 'podnetd\'s socket: when a daemon answers there, status, apply and endpoints go through it, so two appliers never race. Default /run/podnet/podnet.sock, except with --netns (that namespace\'s daemon has its own socket: name it)' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand status" -l state-dir -d 'podnetd\'s state directory: the endpoint registry a direct apply plans the shaper\'s map entries against, and the shaping records' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand status" -l bpf-dir -d 'Where the shaper\'s map and links are pinned (bpffs), as podnetd\'s `--bpf-dir`' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand status" -l modprobe-dir -d 'Where podnet writes the module options that must hold from boot on (`podnet-rdma.conf`: the RDMA netns mode), as podnetd\'s `--modprobe-dir`' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand status" -l direct -d 'Work on the host directly even when podnetd runs'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand status" -s h -l help -d 'Print help'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand status" -s V -l version -d 'Print version'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand endpoints" -s o -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c podnetctl -n "__fish_podnetctl_using_subcommand endpoints" -s c -l config-dir -d 'Directory of node files' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand endpoints" -l netns -d 'Run inside the named network namespace (as made by `ip netns add NAME`)' -r
complete -c podnetctl -n "__fish_podnetctl_using_subcommand endpoints" -l node-name -d 'This node\'s name, which the node files\' `[match]` tables are held against (a file that names other nodes is skipped). Default: the host name' -r
complete -c podnetctl -n "__fish_podnetctl_using_subcommand endpoints" -l socket -d 'podnetd\'s socket: when a daemon answers there, status, apply and endpoints go through it, so two appliers never race. Default /run/podnet/podnet.sock, except with --netns (that namespace\'s daemon has its own socket: name it)' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand endpoints" -l state-dir -d 'podnetd\'s state directory: the endpoint registry a direct apply plans the shaper\'s map entries against, and the shaping records' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand endpoints" -l bpf-dir -d 'Where the shaper\'s map and links are pinned (bpffs), as podnetd\'s `--bpf-dir`' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand endpoints" -l modprobe-dir -d 'Where podnet writes the module options that must hold from boot on (`podnet-rdma.conf`: the RDMA netns mode), as podnetd\'s `--modprobe-dir`' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand endpoints" -l direct -d 'Work on the host directly even when podnetd runs'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand endpoints" -s h -l help -d 'Print help'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand endpoints" -s V -l version -d 'Print version'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand try" -s o -l output -d 'Output format. With json, the trial is printed and podnetctl does not prompt: confirm with `podnetctl confirm`' -r -f -a "text\t''
json\t''"
complete -c podnetctl -n "__fish_podnetctl_using_subcommand try" -l timeout -d 'Time to confirm before the rollback: `120s`, `2m` or seconds' -r
complete -c podnetctl -n "__fish_podnetctl_using_subcommand try" -s c -l config-dir -d 'Directory of node files' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand try" -l netns -d 'Run inside the named network namespace (as made by `ip netns add NAME`)' -r
complete -c podnetctl -n "__fish_podnetctl_using_subcommand try" -l node-name -d 'This node\'s name, which the node files\' `[match]` tables are held against (a file that names other nodes is skipped). Default: the host name' -r
complete -c podnetctl -n "__fish_podnetctl_using_subcommand try" -l socket -d 'podnetd\'s socket: when a daemon answers there, status, apply and endpoints go through it, so two appliers never race. Default /run/podnet/podnet.sock, except with --netns (that namespace\'s daemon has its own socket: name it)' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand try" -l state-dir -d 'podnetd\'s state directory: the endpoint registry a direct apply plans the shaper\'s map entries against, and the shaping records' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand try" -l bpf-dir -d 'Where the shaper\'s map and links are pinned (bpffs), as podnetd\'s `--bpf-dir`' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand try" -l modprobe-dir -d 'Where podnet writes the module options that must hold from boot on (`podnet-rdma.conf`: the RDMA netns mode), as podnetd\'s `--modprobe-dir`' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand try" -l direct -d 'Work on the host directly even when podnetd runs'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand try" -s h -l help -d 'Print help'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand try" -s V -l version -d 'Print version'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand confirm" -s o -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c podnetctl -n "__fish_podnetctl_using_subcommand confirm" -s c -l config-dir -d 'Directory of node files' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand confirm" -l netns -d 'Run inside the named network namespace (as made by `ip netns add NAME`)' -r
complete -c podnetctl -n "__fish_podnetctl_using_subcommand confirm" -l node-name -d 'This node\'s name, which the node files\' `[match]` tables are held against (a file that names other nodes is skipped). Default: the host name' -r
complete -c podnetctl -n "__fish_podnetctl_using_subcommand confirm" -l socket -d 'podnetd\'s socket: when a daemon answers there, status, apply and endpoints go through it, so two appliers never race. Default /run/podnet/podnet.sock, except with --netns (that namespace\'s daemon has its own socket: name it)' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand confirm" -l state-dir -d 'podnetd\'s state directory: the endpoint registry a direct apply plans the shaper\'s map entries against, and the shaping records' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand confirm" -l bpf-dir -d 'Where the shaper\'s map and links are pinned (bpffs), as podnetd\'s `--bpf-dir`' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand confirm" -l modprobe-dir -d 'Where podnet writes the module options that must hold from boot on (`podnet-rdma.conf`: the RDMA netns mode), as podnetd\'s `--modprobe-dir`' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand confirm" -l direct -d 'Work on the host directly even when podnetd runs'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand confirm" -s h -l help -d 'Print help'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand confirm" -s V -l version -d 'Print version'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and not __fish_seen_subcommand_from list help" -s c -l config-dir -d 'Directory of node files' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and not __fish_seen_subcommand_from list help" -l netns -d 'Run inside the named network namespace (as made by `ip netns add NAME`)' -r
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and not __fish_seen_subcommand_from list help" -l node-name -d 'This node\'s name, which the node files\' `[match]` tables are held against (a file that names other nodes is skipped). Default: the host name' -r
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and not __fish_seen_subcommand_from list help" -l socket -d 'podnetd\'s socket: when a daemon answers there, status, apply and endpoints go through it, so two appliers never race. Default /run/podnet/podnet.sock, except with --netns (that namespace\'s daemon has its own socket: name it)' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and not __fish_seen_subcommand_from list help" -l state-dir -d 'podnetd\'s state directory: the endpoint registry a direct apply plans the shaper\'s map entries against, and the shaping records' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and not __fish_seen_subcommand_from list help" -l bpf-dir -d 'Where the shaper\'s map and links are pinned (bpffs), as podnetd\'s `--bpf-dir`' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and not __fish_seen_subcommand_from list help" -l modprobe-dir -d 'Where podnet writes the module options that must hold from boot on (`podnet-rdma.conf`: the RDMA netns mode), as podnetd\'s `--modprobe-dir`' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and not __fish_seen_subcommand_from list help" -l direct -d 'Work on the host directly even when podnetd runs'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and not __fish_seen_subcommand_from list help" -s h -l help -d 'Print help'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and not __fish_seen_subcommand_from list help" -s V -l version -d 'Print version'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and not __fish_seen_subcommand_from list help" -f -a "list" -d 'List endpoints with their limits, the rate each achieves, its queue delay or overlimits, marks and drops'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and not __fish_seen_subcommand_from list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and __fish_seen_subcommand_from list" -s c -l config-dir -d 'Directory of node files' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and __fish_seen_subcommand_from list" -l netns -d 'Run inside the named network namespace (as made by `ip netns add NAME`)' -r
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and __fish_seen_subcommand_from list" -l node-name -d 'This node\'s name, which the node files\' `[match]` tables are held against (a file that names other nodes is skipped). Default: the host name' -r
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and __fish_seen_subcommand_from list" -l socket -d 'podnetd\'s socket: when a daemon answers there, status, apply and endpoints go through it, so two appliers never race. Default /run/podnet/podnet.sock, except with --netns (that namespace\'s daemon has its own socket: name it)' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and __fish_seen_subcommand_from list" -l state-dir -d 'podnetd\'s state directory: the endpoint registry a direct apply plans the shaper\'s map entries against, and the shaping records' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and __fish_seen_subcommand_from list" -l bpf-dir -d 'Where the shaper\'s map and links are pinned (bpffs), as podnetd\'s `--bpf-dir`' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and __fish_seen_subcommand_from list" -l modprobe-dir -d 'Where podnet writes the module options that must hold from boot on (`podnet-rdma.conf`: the RDMA netns mode), as podnetd\'s `--modprobe-dir`' -r -F
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and __fish_seen_subcommand_from list" -l direct -d 'Work on the host directly even when podnetd runs'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and __fish_seen_subcommand_from help" -f -a "list" -d 'List endpoints with their limits, the rate each achieves, its queue delay or overlimits, marks and drops'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand bandwidth; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand help; and not __fish_seen_subcommand_from validate apply show status endpoints try confirm bandwidth help" -f -a "validate" -d 'Check the node files and report every error; touches nothing'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand help; and not __fish_seen_subcommand_from validate apply show status endpoints try confirm bandwidth help" -f -a "apply" -d 'Converge the host to the node files (or, with --dry-run, show the plan)'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand help; and not __fish_seen_subcommand_from validate apply show status endpoints try confirm bandwidth help" -f -a "show" -d 'Print the host\'s current state in the node file format'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand help; and not __fish_seen_subcommand_from validate apply show status endpoints try confirm bandwidth help" -f -a "status" -d 'Compare the node files with the host, object by object'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand help; and not __fish_seen_subcommand_from validate apply show status endpoints try confirm bandwidth help" -f -a "endpoints" -d 'List the pod endpoints registered with podnetd'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand help; and not __fish_seen_subcommand_from validate apply show status endpoints try confirm bandwidth help" -f -a "try" -d 'Put the node files in force on trial; podnetd rolls back unless confirmed'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand help; and not __fish_seen_subcommand_from validate apply show status endpoints try confirm bandwidth help" -f -a "confirm" -d 'Keep the generation on trial'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand help; and not __fish_seen_subcommand_from validate apply show status endpoints try confirm bandwidth help" -f -a "bandwidth" -d 'Pod bandwidth: `bandwidth list`'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand help; and not __fish_seen_subcommand_from validate apply show status endpoints try confirm bandwidth help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c podnetctl -n "__fish_podnetctl_using_subcommand help; and __fish_seen_subcommand_from bandwidth" -f -a "list" -d 'List endpoints with their limits, the rate each achieves, its queue delay or overlimits, marks and drops'
