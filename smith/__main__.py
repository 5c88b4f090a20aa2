from smith.cli import main

main()
