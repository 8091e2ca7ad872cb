from swimctl.cli.app import main

main()
