from streamcolor.cli import main

main()
