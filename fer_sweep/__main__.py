from fer_sweep.cli import main

main()
