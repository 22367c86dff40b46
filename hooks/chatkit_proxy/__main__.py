from chatkit_proxy.cli import main

main()
