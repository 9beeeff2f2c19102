# stand-in for the preprocessing
