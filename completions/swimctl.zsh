#compdef swimctl

_swimctl_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _SWIMCTL_COMPLETE=complete_zsh swimctl)
}

compdef _swimctl_completion swimctl
