// stand-in: a test COPY *.js must not take (a subdirectory)
