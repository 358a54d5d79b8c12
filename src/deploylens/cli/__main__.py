from deploylens.cli import main

main()
