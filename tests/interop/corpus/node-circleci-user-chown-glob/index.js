// stand-in: the backup loop
