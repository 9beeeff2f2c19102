// stand-in: the entry point the start script runs
