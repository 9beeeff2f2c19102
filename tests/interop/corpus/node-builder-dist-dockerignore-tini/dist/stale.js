stale build output, ignored by dist/
