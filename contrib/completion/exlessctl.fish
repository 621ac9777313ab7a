# exlessctl fish shell completion

function __fish_exlessctl_no_subcommand --description 'Test if there has been any subcommand yet'
    for i in (commandline -opc)
        if contains -- $i token exec whoami status version
            return 1
        end
    end
    return 0
end

complete -c exlessctl -n '__fish_exlessctl_no_subcommand' -l socket -r -d 'exlessd socket PATH'
complete -c exlessctl -n '__fish_exlessctl_no_subcommand' -f -l help -s h -d 'show help'
complete -c exlessctl -n '__fish_exlessctl_no_subcommand' -f -l version -s v -d 'print the version'
complete -c exlessctl -n '__fish_seen_subcommand_from token' -f -l help -s h -d 'show help'
complete -r -c exlessctl -n '__fish_exlessctl_no_subcommand' -a 'token' -d 'print a token for use in $(...)'
complete -c exlessctl -n '__fish_seen_subcommand_from token' -f -l scope -r -d 'the token\'s SCOPE: user (the account\'s) or client (one project\'s)'
complete -c exlessctl -n '__fish_seen_subcommand_from token' -f -l project -r -d 'project ID, or ORGANIZATION/PROJECT-NAME (with --scope client)'
complete -c exlessctl -n '__fish_seen_subcommand_from token' -f -l format -r -d 'output FORMAT: raw (the token and a newline), json (the daemon\'s record) or env (a NAME=token line, for eval or an env file)'
complete -c exlessctl -n '__fish_seen_subcommand_from token' -f -l env-name -r -d 'environment variable NAME for the token'
complete -c exlessctl -n '__fish_seen_subcommand_from token' -l socket -r -d 'exlessd socket PATH (default: $EXLESS_SOCKET, else /run/exless/exlessd.sock)'
complete -c exlessctl -n '__fish_seen_subcommand_from exec' -f -l help -s h -d 'show help'
complete -r -c exlessctl -n '__fish_exlessctl_no_subcommand' -a 'exec' -d 'run a command with a token in its environment or on a file descriptor'
complete -c exlessctl -n '__fish_seen_subcommand_from exec' -f -l scope -r -d 'the token\'s SCOPE: user (the account\'s) or client (one project\'s)'
complete -c exlessctl -n '__fish_seen_subcommand_from exec' -f -l project -r -d 'project ID, or ORGANIZATION/PROJECT-NAME (with --scope client)'
complete -c exlessctl -n '__fish_seen_subcommand_from exec' -f -l env-name -r -d 'environment variable NAME for the token'
complete -c exlessctl -n '__fish_seen_subcommand_from exec' -f -l fd -d 'pass the token on a file descriptor named in $EXLESS_TOKEN_FD, not in the environment'
complete -c exlessctl -n '__fish_seen_subcommand_from exec' -f -l no-mask -d 'do not conceal the token in the command\'s output'
complete -c exlessctl -n '__fish_seen_subcommand_from exec' -l socket -r -d 'exlessd socket PATH (default: $EXLESS_SOCKET, else /run/exless/exlessd.sock)'
complete -c exlessctl -n '__fish_seen_subcommand_from whoami' -f -l help -s h -d 'show help'
complete -r -c exlessctl -n '__fish_exlessctl_no_subcommand' -a 'whoami' -d 'show who exlessd sees calling and what its policy grants'
complete -c exlessctl -n '__fish_seen_subcommand_from whoami' -f -l format -r -d 'output FORMAT: text (a table for people) or json (the daemon\'s reply, for scripts)'
complete -c exlessctl -n '__fish_seen_subcommand_from whoami' -l socket -r -d 'exlessd socket PATH (default: $EXLESS_SOCKET, else /run/exless/exlessd.sock)'
complete -c exlessctl -n '__fish_seen_subcommand_from status' -f -l help -s h -d 'show help'
complete -r -c exlessctl -n '__fish_exlessctl_no_subcommand' -a 'status' -d 'show whether exlessd is logged in, can reach Vault, and why it is degraded'
complete -c exlessctl -n '__fish_seen_subcommand_from status' -f -l format -r -d 'output FORMAT: text (a table for people) or json (the daemon\'s reply, for scripts)'
complete -c exlessctl -n '__fish_seen_subcommand_from status' -l socket -r -d 'exlessd socket PATH (default: $EXLESS_SOCKET, else /run/exless/exlessd.sock)'
complete -c exlessctl -n '__fish_seen_subcommand_from version' -f -l help -s h -d 'show help'
complete -r -c exlessctl -n '__fish_exlessctl_no_subcommand' -a 'version' -d 'print exlessctl\'s version'
complete -c exlessctl -n '__fish_seen_subcommand_from version' -l socket -r -d 'exlessd socket PATH (default: $EXLESS_SOCKET, else /run/exless/exlessd.sock)'

# Added by exlessctl's generator: no file names for a command name, and flag values.
complete -c exlessctl -n '__fish_exlessctl_no_subcommand' -f
complete -c exlessctl -n '__fish_seen_subcommand_from token' -l format -x -a 'raw json env'
complete -c exlessctl -n '__fish_seen_subcommand_from token' -l scope -x -a 'user client'
complete -c exlessctl -n '__fish_seen_subcommand_from exec' -l scope -x -a 'user client'
complete -c exlessctl -n '__fish_seen_subcommand_from whoami' -l format -x -a 'text json'
complete -c exlessctl -n '__fish_seen_subcommand_from status' -l format -x -a 'text json'
