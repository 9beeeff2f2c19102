ignored by test/
