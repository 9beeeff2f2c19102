// stand-in webpack bundle
