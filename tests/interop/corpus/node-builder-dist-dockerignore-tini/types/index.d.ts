ignored by types/
