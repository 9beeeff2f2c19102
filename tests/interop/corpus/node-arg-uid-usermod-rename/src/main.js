// stand-in: the app's entry module
