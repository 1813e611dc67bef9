# bash completion for piston (pistond's CLI): source it, or copy it to
# /usr/share/bash-completion/completions/piston.
_piston() {
    local cur prev words cword
    _init_completion || return
    local commands="ping status runtimes run execute ppman pkg"
    local ppman_actions="list l install i uninstall u spec s pack"
    case "${words[1]}" in
        run|execute)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "--json -l --language-version -i --stdin -f --files
                    --main -t --interactive -s --status -r --run-timeout -c --compile-timeout
                    --run-cpu-time --compile-cpu-time --run-memory-limit
                    --compile-memory-limit --output-max-size" -- "$cur"))
            elif [[ $cword -eq 2 ]]; then
                # A language, or the file itself (its extension then names the language).
                local languages
                languages=$(piston runtimes 2>/dev/null | sed -E 's/-[0-9].*//' | sort -u)
                _filedir
                COMPREPLY+=($(compgen -W "$languages" -- "$cur"))
            else
                _filedir
            fi
            return ;;
        ppman|pkg)
            if [[ $cword -eq 2 ]]; then
                COMPREPLY=($(compgen -W "$ppman_actions" -- "$cur"))
            elif [[ ${words[2]} == spec || ${words[2]} == s ]]; then
                _filedir
            fi
            return ;;
    esac
    if [[ $cword -eq 1 ]]; then
        COMPREPLY=($(compgen -W "$commands --json --socket --version --help" -- "$cur"))
    fi
}
complete -F _piston piston
