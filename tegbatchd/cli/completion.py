"""`tegbatchd completion bash|zsh|fish`: a shell completion script, generated from this argparse parser
(nothing to install; commands, actions and flags stay in step with the code).

    eval "$(tegbatchd completion bash)"          # in ~/.bashrc
    eval "$(tegbatchd completion zsh)"           # in ~/.zshrc
    tegbatchd completion fish > ~/.config/fish/completions/tegbatchd.fish
"""

from __future__ import annotations

import argparse
import shlex

SHELLS = ("bash", "zsh", "fish")


def register(sub) -> None:
    p = sub.add_parser("completion", help="print a shell completion script (bash, zsh or fish)",
                       description="Print a completion script. bash: eval \"$(tegbatchd completion bash)\" in "
                                   "~/.bashrc; zsh: the same in ~/.zshrc; fish: tegbatchd completion fish > "
                                   "~/.config/fish/completions/tegbatchd.fish")
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(func=cmd_completion)


def cmd_completion(args, ctx) -> int:
    from tegbatchd.cli import build_parser

    tree = command_tree(build_parser())
    print({"bash": bash_script, "zsh": zsh_script, "fish": fish_script}[args.shell](tree), end="")
    return 0


def command_tree(parser: argparse.ArgumentParser, path: str = "") -> dict[str, tuple[list[str], list[str]]]:
    """command path ("" for the top, "submit round-reports"...) → (its subcommands, its flags)."""
    subs: list[str] = []
    flags: list[str] = []
    tree: dict[str, tuple[list[str], list[str]]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                subs.append(name)
                tree.update(command_tree(child, f"{path} {name}".strip()))
        elif action.help != argparse.SUPPRESS:
            flags += [o for o in action.option_strings if o.startswith("--") or o == "-v"]
            if not action.option_strings and action.choices:  # a positional with fixed values (SHELL)
                subs += [str(c) for c in action.choices]
    tree[path] = (subs, flags)
    return tree


def _case(tree: dict, pick: int) -> str:
    lines = [f'        {shlex.quote(path) if path else chr(34) * 2}) echo {shlex.quote(" ".join(entry[pick]))} ;;'
             for path, entry in sorted(tree.items()) if entry[pick]]
    return "\n".join(lines)


def bash_script(tree: dict) -> str:
    return f'''# tegbatchd completion (bash): eval "$(tegbatchd completion bash)"
_tegbatchd_subcommands() {{
    case "$1" in
{_case(tree, 0)}
    esac
}}
_tegbatchd_flags() {{
    case "$1" in
{_case(tree, 1)}
    esac
}}
_tegbatchd() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" path="" word i
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        [[ $word == -* ]] && continue
        case " $(_tegbatchd_subcommands "$path") " in
            *" $word "*) path="${{path:+$path }}$word" ;;
        esac
    done
    local words
    if [[ $cur == -* ]]; then words="$(_tegbatchd_flags "$path")"; else words="$(_tegbatchd_subcommands "$path")"; fi
    COMPREPLY=()
    for word in $words; do  # the prefix match done here, the same in bash and zsh's bashcompinit
        [[ $word == "$cur"* ]] && COMPREPLY+=("$word")
    done
    return 0
}}
complete -o default -F _tegbatchd tegbatchd
'''


def zsh_script(tree: dict) -> str:
    return ('# tegbatchd completion (zsh): eval "$(tegbatchd completion zsh)"\n'
            "autoload -U +X compinit && compinit\nautoload -U +X bashcompinit && bashcompinit\n"
            + bash_script(tree).split("\n", 1)[1])


def fish_script(tree: dict) -> str:
    lines = ["# tegbatchd completion (fish): tegbatchd completion fish > ~/.config/fish/completions/tegbatchd.fish",
             ]
    for path, (subs, flags) in sorted(tree.items()):
        words = path.split()
        if words:
            seen = " ".join(f"; and __fish_seen_subcommand_from {w}" for w in words)[6:]
        else:
            seen = "__fish_use_subcommand"
        if subs:
            done = f"; and not __fish_seen_subcommand_from {' '.join(subs)}"
            lines.append(f"complete -c tegbatchd -n {shlex.quote(seen + done)} -f -a {shlex.quote(' '.join(subs))}")
        for flag in flags:
            option = f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}"
            lines.append(f"complete -c tegbatchd -n {shlex.quote(seen)} {option}")
    return "\n".join(lines) + "\n"
