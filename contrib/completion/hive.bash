# bash completion for hive(1) and hive-worker(1): subcommands, options, and
# bot ids read from the roster (`hive check` lists them), so `hive logs B<Tab>`
# offers the bots of ./hive.yaml, or of the file given with -f/--file.
# Installed as share/bash-completion/completions/hive (and hive-worker).

# The roster named on the command line so far (default hive.yaml).
_hive_roster()
{
    local i file=hive.yaml
    for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
        case ${COMP_WORDS[i]} in
            --file=*) file=${COMP_WORDS[i]#--file=} ;;
            --file) file=${COMP_WORDS[i + 1]} ;;
            -f) [[ ${COMP_WORDS[1]} != logs ]] && file=${COMP_WORDS[i + 1]} ;;
        esac
    done
    printf '%s\n' "$file"
}

# The bot ids of the roster: `hive check` prints one indented line per bot.
_hive_bots()
{
    hive check -f "$(_hive_roster)" 2>/dev/null | awk 'NR > 1 && /^  / { print $1 }'
}

# How many arguments (not options, nor the value of --file/-f) come before
# the word being completed, after the subcommand.
_hive_positionals()
{
    local i n=0
    for ((i = 2; i < COMP_CWORD; i++)); do
        [[ ${COMP_WORDS[i]} != -* && ${COMP_WORDS[i - 1]} != --file &&
            ! (${COMP_WORDS[i - 1]} == -f && ${COMP_WORDS[1]} != logs) ]] && ((n++))
    done
    echo $n
}

_hive()
{
    local cur prev cmd words
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}
    local commands="up down status send restart stop start pause resume interrupt cancel reload
        logs events top check export reset prune"
    if ((COMP_CWORD == 1)); then
        COMPREPLY=($(compgen -W "$commands --help --version" -- "$cur"))
        return
    fi
    cmd=${COMP_WORDS[1]}
    case $prev in
        --file | -f)
            if [[ $cmd != logs || $prev == --file ]]; then
                COMPREPLY=($(compgen -f -X '!*.y*ml' -- "$cur") $(compgen -d -- "$cur"))
                return
            fi
            ;;
        --tail | -n) COMPREPLY=($(compgen -W "10 100 all" -- "$cur")); return ;;
        --since) [[ $cmd == events ]] && words="0" || words="10m 1h 1d"
            COMPREPLY=($(compgen -W "$words" -- "$cur"))
            return ;;
        --output | -o) COMPREPLY=($(compgen -d -- "$cur")); return ;;
    esac
    local opts="--file --help"
    case $cmd in
        up) opts+=" --detach -d" ;;
        status) opts+=" --json --watch" ;;
        send) opts+=" --wait" ;;
        prune) opts+=" --force" ;;
        logs) opts+=" --follow --tail --since --no-prefix -n" ;;
        events) opts+=" --since --count" ;;
        export) opts+=" --user --output -o" ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi
    case $cmd in
        status | logs | events | prune) words=$(_hive_bots) ;;
        restart | stop | start | pause | resume | interrupt) words="all $(_hive_bots)" ;;
        reset) words=$(_hive_bots) ;;
        export) (($(_hive_positionals) == 0)) && words=systemd ;;
        cancel) (($(_hive_positionals) == 0)) && words=$(_hive_bots) ;; # then task ids
        send) (($(_hive_positionals) == 0)) && words=$(_hive_bots) || words=- ;; # bot, text|-
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -F _hive hive

_hive_worker()
{
    local cur prev
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}
    case $prev in
        --mode) COMPREPLY=($(compgen -W "cli-only websocket-only hybrid" -- "$cur")); return ;;
        --adapter-type) COMPREPLY=($(compgen -W "mock cli" -- "$cur")); return ;;
        --log-level) COMPREPLY=($(compgen -W "debug info warn error" -- "$cur")); return ;;
        --work-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
    esac
    if [[ $cur == -* ]]; then
        # every option hive-worker's --help lists
        local opts
        opts=$(hive-worker --help 2>/dev/null | grep -oE '^  --[a-z-]+|, --[a-z-]+' | grep -oE -- '--[a-z-]+')
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    fi
}
complete -F _hive_worker hive-worker
