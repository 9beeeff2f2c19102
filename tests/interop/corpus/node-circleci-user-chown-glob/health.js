// stand-in: the health endpoint
