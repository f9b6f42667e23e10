from dml.cli import main

main()
